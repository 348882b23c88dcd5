# Helpers shared by the end-to-end scripts (docker/e2e.sh: compose, docker/swarm-e2e.sh: Swarm).
# Sourced, not run, from the repository root, with E2E_NAME (log prefix) and E2E_BOUND_S (the
# whole run's time limit, seconds) and E2E_SELF (the script's absolute path) set: sourcing it
# first re-runs the script under timeout(1).
#
# State it keeps: START_S, WORK (a temporary folder), PASSED, FAILED, DOCKERD_PID (set when it
# started a Docker engine), COMPOSE (the compose command), COMPOSE_FILES (its -f arguments),
# ZOO_DIR (set when a tiny zoo is served).
# shellcheck shell=bash

E2E_NAME="${E2E_NAME:-e2e}"
BASE_IMAGE="${BASE_IMAGE:-python:3.11-slim}"

# Bound the whole run: re-run the calling script under timeout(1) once. On expiry the script gets
# TERM and its EXIT trap still tears everything down; --kill-after is the last resort.
if [[ -z "${_CONDGEN_E2E_BOUNDED:-}" ]]; then
    export _CONDGEN_E2E_BOUNDED=1
    exec timeout --kill-after=90 "${E2E_BOUND_S:-600}" bash "${E2E_SELF:-$0}" "$@"
fi

START_S=$(date +%s)
# The original stdout/stderr: a trap may fire inside a step whose output is redirected to a file.
exec 3>&1 4>&2
WORK="$(mktemp -d "${TMPDIR:-/tmp}/condgen-$E2E_NAME.XXXXXX")"
chmod 755 "$WORK"
PASSED=0
FAILED=0
DOCKERD_PID=""
ZOO_DIR=""
COMPOSE=(docker-compose)
COMPOSE_FILES=(-f docker/compose.yaml)

pass() { PASSED=$((PASSED + 1)); echo "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
log() { echo "$E2E_NAME: [$(($(date +%s) - START_S))s] $*"; }

summary() {
    echo "$E2E_NAME: wall time $(($(date +%s) - START_S)) s"
    echo "$E2E_NAME: $PASSED passed, $FAILED failed"
}

# Count the PASS/FAIL lines of a checker's output file into this script's totals.
# The end of a script's EXIT trap: an abort or a timeout counts as a failure, then the summary and
# the exit status. e2e_exit RC TIMEOUT_VARIABLE SECONDS
e2e_exit() {
    local rc=$1
    if [[ $rc -ne 0 && $FAILED -eq 0 ]]; then
        if [[ $rc -eq 124 ]]; then
            fail "$E2E_NAME ran past $2=${3}s"
        else
            fail "$E2E_NAME aborted (exit $rc)"
        fi
    fi
    summary
    if [[ $FAILED -gt 0 ]]; then exit 1; fi
    exit "$rc"
}

count_checks() {
    PASSED=$((PASSED + $(grep -c '^PASS:' "$1")))
    FAILED=$((FAILED + $(grep -c '^FAIL:' "$1")))
}

# Stop at the first failure of a step that later steps depend on.
must() {
    local what="$1"
    shift
    if "$@" >"$WORK/step.log" 2>&1; then
        pass "$what"
    else
        fail "$what"
        tail -n 40 "$WORK/step.log"
        exit 1
    fi
}

# Install from Debian what is missing: Docker, compose, debootstrap (the base image), and any
# extra "command:package" pairs given.
e2e_tools() {
    local missing=() pair
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap debian-archive-keyring)
    if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
        missing+=(docker-compose)
    fi
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing ${missing[*]} from Debian"
        if [[ $(id -u) -ne 0 ]]; then
            fail "missing ${missing[*]} and not root: install them (apt-get install ${missing[*]})"
            exit 1
        fi
        must "apt-get install ${missing[*]}" bash -c \
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${missing[*]}"
    fi
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    else
        COMPOSE=(docker-compose)
    fi
    log "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -n1))"
}

# A reachable Docker engine: the running one, or one started here (stopped by e2e_engine_stop).
e2e_engine_start() {
    if ! docker info >/dev/null 2>&1; then
        if [[ $(id -u) -ne 0 ]]; then
            fail "no Docker engine reachable and not root to start one"
            exit 1
        fi
        log "starting dockerd"
        # Own session: a timeout of this script must not kill the engine before the teardown ran.
        setsid dockerd >"${TMPDIR:-/tmp}/condgen-$E2E_NAME-dockerd.log" 2>&1 </dev/null 3>&- 4>&- &
        DOCKERD_PID=$!
        for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    fi
    must "Docker engine reachable ($(docker version --format '{{.Server.Version}}' 2>/dev/null))" docker info
}

e2e_engine_stop() {
    [[ -n "$DOCKERD_PID" ]] || return 0
    log "stopping the Docker engine this run started (pid $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
}

# The stack's images, tagged condgen:e2e, condgen-lb:e2e, condgen-prometheus:e2e, built from
# the compose file's build sections (the repository's Dockerfiles) on the local base image.
e2e_compose() {
    CONDGEN_LB_PORT="${LB_PORT:-18080}" CONDGEN_PROMETHEUS_PORT="${PROM_PORT:-19090}" \
        BASE_IMAGE="$BASE_IMAGE" CONDGEN_IMAGE=condgen:e2e CONDGEN_LB_IMAGE=condgen-lb:e2e \
        CONDGEN_PROMETHEUS_IMAGE=condgen-prometheus:e2e \
        "${COMPOSE[@]}" -p "${PROJECT:-condgen-e2e}" "${COMPOSE_FILES[@]}" "$@"
}

e2e_build_images() {
    log "base image $BASE_IMAGE"
    must "base image $BASE_IMAGE present (docker/base-image.sh builds it offline)" \
        env BASE_IMAGE="$BASE_IMAGE" bash docker/base-image.sh
    log "building condgen, lb and prometheus images"
    # The image bakes exported/ in; git keeps no empty directory, so a clone without models lacks it.
    mkdir -p exported
    must "compose build (service image, nginx, prometheus)" e2e_compose build condgen lb prometheus
}

# exported/ when it holds models (baked into the image); otherwise a tiny untrained zoo is built
# into $WORK/zoo and ZOO_DIR names it. PYTHON: an interpreter with numpy + onnx.
e2e_zoo() {
    if compgen -G "exported/*/model.onnx" >/dev/null; then
        log "serving the baked-in zoo: $(ls -d exported/*/ | xargs -n1 basename | tr '\n' ' ')"
        return 0
    fi
    local py="${PYTHON:-}"
    if [[ -z "$py" ]]; then
        if [[ -x .venv/bin/python ]]; then py=.venv/bin/python; else py=python3; fi
    fi
    log "exported/ holds no model: serving a tiny untrained zoo built with $py"
    must "tiny zoo built (tests/deploy/tiny_zoo.py)" "$py" tests/deploy/tiny_zoo.py "$WORK/zoo"
    chmod -R a+rX "$WORK/zoo"
    ZOO_DIR="$WORK/zoo"
}
