"""Peer servers for the benchmark: BentoML with adaptive batching, and naive FastAPI + PyTorch eager."""
