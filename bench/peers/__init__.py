"""Peer servers for the benchmark: BentoML with adaptive batching, Ray Serve with ``@serve.batch``, and
naive FastAPI + PyTorch eager."""
