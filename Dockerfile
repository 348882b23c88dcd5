# The condgen inference service: FastAPI + ONNX Runtime, no torch.
#
#   docker build -t condgen .                       # from the repository root
#   docker run -p 8000:8000 --read-only --tmpfs /tmp condgen
#   docker run ... -v "$PWD/my-zoo:/models:ro" condgen   # serve another model zoo
#
# One uvicorn worker per container: the dynamic batcher lives in the process, so more workers
# would split batches. Scale out with replicas (docker/compose.yaml, k8s/).
ARG BASE_IMAGE=python:3.11-slim

# ---- build: install the service and its dependencies into a self-contained venv ----------------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120
# The venv has no pip of its own (not needed at run time); the base image's pip installs into it.
RUN python -m venv --without-pip /opt/venv
WORKDIR /src
# Dependencies first, so code edits do not re-download wheels: the serving lock (exact versions,
# sha256 hashes; `make lock` writes it), the same set `make run` installs. Its setuptools builds
# condgen below without reaching for an unpinned one.
COPY requirements/serve.txt ./
RUN pip --python /opt/venv/bin/python install --require-hashes -r serve.txt
COPY pyproject.toml README.md ./
COPY service ./service
# Byte-code is compiled here, because the runtime root filesystem may be read-only.
RUN pip --python /opt/venv/bin/python install --no-deps --no-build-isolation . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/python -c "import service, onnxruntime, fastapi, uvicorn"
# The model zoo, readable by the unprivileged runtime user whatever modes the build context has
# (a checkout's umask, or model directories written as 0700).
COPY exported/ /models/
RUN chmod -R a+rX,go-w /models

# ---- runtime -----------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="condgen" \
      org.opencontainers.image.description="Conditional image generators (ONNX) served over HTTP"
RUN groupadd --system --gid 10001 condgen \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin condgen
COPY --from=build /opt/venv /opt/venv
# The model zoo is baked in (owned by root, read-only to the service); mount another directory
# over /models (or set CONDGEN_MODELS_DIR) to serve different models without rebuilding.
COPY --from=build /models /models
# Logs are JSON lines even under `docker run -t` (text is for a person at a terminal).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    CONDGEN_MODELS_DIR=/models \
    CONDGEN_HOST=0.0.0.0 \
    CONDGEN_PORT=8000 \
    CONDGEN_LOG_FORMAT=json
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
# Liveness only (the process answers); readiness (/readyz) is for load balancers and k8s.
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CONDGEN_PORT', '8000'), timeout=3)"]
# exec: python replaces the shell, so it receives SIGTERM directly and can drain gracefully.
CMD ["sh", "-c", "exec python -m service --host \"$CONDGEN_HOST\" --port \"$CONDGEN_PORT\" --models \"$CONDGEN_MODELS_DIR\""]
