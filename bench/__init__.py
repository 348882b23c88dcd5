"""Benchmarks: the HTTP service against the raw ONNX Runtime limit and two peer servers.

``python -m bench.run`` (``make bench``) runs everything and writes ``bench/results/``.
"""
