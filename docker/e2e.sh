#!/usr/bin/env bash
# End-to-end check of the deployment: build the images, run the compose stack (service replicas
# behind nginx, Prometheus), generate through the load balancer, and prove that Prometheus scrapes
# every replica, that every Grafana dashboard panel's PromQL returns data, and that the alert
# rules load. Tears everything down again, including a Docker engine it had to start.
#
#   sudo bash docker/e2e.sh            # from anywhere; needs root only to install or start Docker
#
# Installs what is missing from Debian packages (docker.io, docker-compose, prometheus for
# promtool, debootstrap), builds the python:3.11-slim stand-in (docker/base-image.sh) if that tag
# is absent, and serves exported/ — or, while exported/ holds no model, a tiny untrained zoo
# (tests/deploy/tiny_zoo.py, needs numpy + onnx: the project's venv).
#
# Env: E2E_TIMEOUT (s, default 600)  E2E_REPLICAS (default: compose.yaml's deploy.replicas = 2)
#      E2E_LB_PORT (18080)  E2E_PROM_PORT (19090)  E2E_PROJECT (condgen-e2e)
#      E2E_KEEP=1 leaves the stack (and a Docker engine it started) running for inspection.
#      PYTHON: interpreter with numpy + onnx for the tiny zoo (default .venv/bin/python, python3)
# Prints PASS/FAIL lines and closes with "e2e: N passed, M failed"; exits non-zero on any FAIL.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
E2E_NAME=e2e
E2E_SELF="$ROOT/docker/e2e.sh"
E2E_TIMEOUT="${E2E_TIMEOUT:-600}"
E2E_BOUND_S="$E2E_TIMEOUT"
# shellcheck source=docker/e2e-lib.sh
source docker/e2e-lib.sh

PROJECT="${E2E_PROJECT:-condgen-e2e}"
LB_PORT="${E2E_LB_PORT:-18080}"
PROM_PORT="${E2E_PROM_PORT:-19090}"
STACK_UP=0

compose() { e2e_compose "$@"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 1>&3 2>&4
    if [[ $STACK_UP -eq 1 ]]; then
        if [[ $FAILED -gt 0 || $rc -ne 0 ]]; then
            log "logs of the stack (last lines):"
            compose logs --no-color --tail=40 2>&1 | tail -n 150 || true
        fi
        if [[ "${E2E_KEEP:-0}" == "1" ]]; then
            log "E2E_KEEP=1: stack left running (project $PROJECT; lb :$LB_PORT, prometheus :$PROM_PORT)"
        else
            log "tearing down the stack"
            compose down -v --remove-orphans >"$WORK/down.log" 2>&1 || tail -n 20 "$WORK/down.log"
        fi
    fi
    [[ "${E2E_KEEP:-0}" == "1" ]] || e2e_engine_stop
    rm -rf "$WORK"
    e2e_exit "$rc" E2E_TIMEOUT "$E2E_TIMEOUT"
}
trap cleanup EXIT
trap 'exit 124' TERM
trap 'exit 130' INT

# ---- 1. tools -----------------------------------------------------------------------------------
e2e_tools promtool:prometheus

# ---- 2. Docker engine ---------------------------------------------------------------------------
e2e_engine_start

# ---- 3. images ----------------------------------------------------------------------------------
e2e_build_images
size_bytes=$(docker image inspect condgen:e2e --format '{{.Size}}')
log "service image condgen:e2e: $((size_bytes / 1000000)) MB"
user=$(docker image inspect condgen:e2e --format '{{.Config.User}}')
if [[ -n "$user" && "$user" != "0" && "$user" != root && "$user" != 0:* ]]; then
    pass "service image runs as non-root user ($user)"
else
    fail "service image runs as root (User='$user')"
fi
if docker run --rm --entrypoint python condgen:e2e -c "import torch" >/dev/null 2>&1; then
    fail "service image contains torch"
else
    pass "service image has no torch"
fi

# ---- 4. model zoo -------------------------------------------------------------------------------
e2e_zoo
if [[ -n "$ZOO_DIR" ]]; then
    cat >"$WORK/compose.zoo.yaml" <<EOF
services:
  condgen:
    volumes:
      - $ZOO_DIR:/models:ro
EOF
    COMPOSE_FILES+=(-f "$WORK/compose.zoo.yaml")
fi

# ---- 5. stack -----------------------------------------------------------------------------------
scale=()
[[ -n "${E2E_REPLICAS:-}" ]] && scale=(--scale "condgen=$E2E_REPLICAS")
log "starting the stack (project $PROJECT)"
STACK_UP=1
# Whatever a killed earlier run may have left under the same project name goes first.
compose down -v --remove-orphans >/dev/null 2>&1 || true
must "compose up" compose up -d --no-build "${scale[@]}"
mapfile -t replicas < <(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=condgen")
want="${E2E_REPLICAS:-2}"
if [[ ${#replicas[@]} -eq $want ]]; then
    pass "compose runs $want condgen replicas"
else
    fail "compose runs ${#replicas[@]} condgen replicas, expected $want"
fi
# The image's HEALTHCHECK (python urllib against /healthz) reports healthy on every replica.
healthy=0
for _ in $(seq 1 45); do
    healthy=0
    for c in "${replicas[@]}"; do
        [[ "$(docker inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null)" == healthy ]] && healthy=$((healthy + 1))
    done
    [[ $healthy -eq ${#replicas[@]} ]] && break
    sleep 2
done
if [[ ${#replicas[@]} -gt 0 && $healthy -eq ${#replicas[@]} ]]; then
    pass "HEALTHCHECK reports every replica healthy"
else
    fail "HEALTHCHECK: $healthy of ${#replicas[@]} replicas healthy"
fi
ro=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "${replicas[@]}" | sort -u | tr '\n' ' ')
if [[ "$ro" == "true " ]]; then
    pass "replicas run on a read-only root filesystem"
else
    fail "replicas' ReadonlyRootfs: $ro"
fi

# ---- 6. requests, scrapes, dashboard queries, alert rules ---------------------------------------
log "checking the running stack"
budget=$((E2E_TIMEOUT - ($(date +%s) - START_S) - 60))
[[ $budget -lt 60 ]] && budget=60
if python3 docker/e2e_check.py --lb "http://127.0.0.1:$LB_PORT" \
    --prometheus "http://127.0.0.1:$PROM_PORT" --replicas "$want" \
    --dashboard docker/grafana/dashboards/condgen.json \
    --timeout "$budget" | tee "$WORK/check.log"; then
    :
fi
count_checks "$WORK/check.log"
grep -q '^e2e-check: ' "$WORK/check.log" || fail "docker/e2e_check.py did not finish"

# ---- 7. rule and config files -------------------------------------------------------------------
if promtool check rules docker/prometheus/alerts.yml >"$WORK/promtool.log" 2>&1; then
    pass "promtool check rules docker/prometheus/alerts.yml"
else
    fail "promtool check rules"; cat "$WORK/promtool.log"
fi
if (cd docker/prometheus && promtool test rules alerts.test.yml) >"$WORK/promtool.log" 2>&1; then
    pass "promtool test rules docker/prometheus/alerts.test.yml"
else
    fail "promtool test rules"; cat "$WORK/promtool.log"
fi
# The config names the rule file by its in-container path; check a copy that points at the repo's.
sed "s#/etc/prometheus/alerts.yml#$ROOT/docker/prometheus/alerts.yml#" docker/prometheus/prometheus.yml \
    >"$WORK/prometheus.yml"
if promtool check config "$WORK/prometheus.yml" >"$WORK/promtool.log" 2>&1; then
    pass "promtool check config docker/prometheus/prometheus.yml"
else
    fail "promtool check config"; cat "$WORK/promtool.log"
fi
exit 0
