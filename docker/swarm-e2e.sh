#!/usr/bin/env bash
# End-to-end check of the Swarm stack (docker/stack.yaml) under continuous load: deploy, rolling
# update, an update that never turns ready and rolls back by itself, scale 2 -> 4 -> 2. From the
# start of the deploy to the end, /generate requests go through the load balancer without pause
# (docker/swarm_check.py load), and every check counts the failed ones: any answer but a 200.
# Tears everything down again: the stack, the swarm if it created one, a Docker engine it started.
#
#   sudo bash docker/swarm-e2e.sh      # from anywhere; needs root only to install or start Docker
#
# Images: the compose stack's (docker/e2e-lib.sh builds them as docker/e2e.sh does), then three
# tags of the service image that differ only in what the test needs: condgen:swarm-v1 and
# condgen:swarm-v2 (the same service, labelled by version) and condgen:swarm-bad, whose models
# directory is empty so its readiness (/readyz) never turns green.
#
# Env: SWARM_E2E_TIMEOUT (s, default 480)  SWARM_E2E_STACK (condgen-e2e)
#      SWARM_E2E_LB_PORT (18081)  SWARM_E2E_PROM_PORT (19091)  SWARM_E2E_CONCURRENCY (2)
#      SWARM_E2E_KEEP=1 leaves the stack, the swarm and a Docker engine it started running.
#      PYTHON: interpreter with numpy + onnx for the tiny zoo (default .venv/bin/python, python3)
# Prints PASS/FAIL lines and the figures, and closes with "swarm-e2e: N passed, M failed"; exits
# non-zero on any FAIL.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
E2E_NAME=swarm-e2e
E2E_SELF="$ROOT/docker/swarm-e2e.sh"
SWARM_E2E_TIMEOUT="${SWARM_E2E_TIMEOUT:-480}"
E2E_BOUND_S="$SWARM_E2E_TIMEOUT"
# shellcheck source=docker/e2e-lib.sh
source docker/e2e-lib.sh

STACK="${SWARM_E2E_STACK:-condgen-e2e}"
SERVICE="${STACK}_condgen"
LB_PORT="${SWARM_E2E_LB_PORT:-18081}"
PROM_PORT="${SWARM_E2E_PROM_PORT:-19091}"
LB="http://127.0.0.1:$LB_PORT"
PROM="http://127.0.0.1:$PROM_PORT"
KEEP="${SWARM_E2E_KEEP:-0}"
SWARM_CREATED=0
STACK_UP=0
LOAD_PID=""
CHECK=(python3 docker/swarm_check.py)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 1>&3 2>&4
    if [[ -n "$LOAD_PID" ]]; then
        touch "$WORK/stop"
        wait "$LOAD_PID" 2>/dev/null || true
    fi
    if [[ $STACK_UP -eq 1 ]]; then
        if [[ $FAILED -gt 0 || $rc -ne 0 ]]; then
            log "tasks and logs of the stack (last lines):"
            docker stack ps "$STACK" --no-trunc --format '{{.Name}} {{.Image}} {{.CurrentState}} {{.Error}}' 2>&1 | head -n 30
            for s in condgen lb; do
                docker service logs --raw --tail 20 "${STACK}_$s" 2>&1 | tail -n 30
            done
        fi
        if [[ "$KEEP" == "1" ]]; then
            log "SWARM_E2E_KEEP=1: stack $STACK left running (lb :$LB_PORT, prometheus :$PROM_PORT)"
        else
            log "removing the stack"
            remove_stack
        fi
    fi
    if [[ $SWARM_CREATED -eq 1 && "$KEEP" != "1" ]]; then
        log "leaving the swarm this run created"
        docker swarm leave --force >/dev/null 2>&1 || true
    fi
    [[ "$KEEP" == "1" ]] || e2e_engine_stop
    rm -rf "$WORK"
    e2e_exit "$rc" SWARM_E2E_TIMEOUT "$SWARM_E2E_TIMEOUT"
}
trap cleanup EXIT
trap 'exit 124' TERM
trap 'exit 130' INT

# Remove the stack and its Prometheus volume (a later run must not see this run's series).
remove_stack() {
    docker stack rm "$STACK" >/dev/null 2>&1 || true
    # The network and volume go once the tasks' containers are gone; the swarm cannot be left before.
    local ids
    for _ in $(seq 1 30); do
        [[ -z "$(docker ps -q --filter "label=com.docker.stack.namespace=$STACK")" &&
            -z "$(docker network ls -q --filter "label=com.docker.stack.namespace=$STACK")" ]] && break
        sleep 1
    done
    # Stopped task containers are kept as the tasks' history; they would hold the volume.
    mapfile -t ids < <(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")
    [[ ${#ids[@]} -eq 0 ]] || docker rm -f "${ids[@]}" >/dev/null 2>&1 || true
    docker volume rm "${STACK}_prometheus-data" >/dev/null 2>&1 || true
}

# Run a docker/swarm_check.py check, show its output and count its PASS/FAIL lines.
check() {
    "${CHECK[@]}" "$@" >"$WORK/check.log" 2>&1
    cat "$WORK/check.log"
    count_checks "$WORK/check.log"
    grep -q '^e2e-check: ' "$WORK/check.log" || fail "docker/swarm_check.py $1 did not finish"
}

# Record the running replicas (address, task, version) for the checks that follow.
snapshot() {
    "${CHECK[@]}" replicas --service "$SERVICE" --append "$WORK/known.tsv" --current "$WORK/current.tsv"
}

# Wait until the service runs exactly $1 tasks, every one of them healthy (its readiness).
wait_healthy() {
    local want="$1" deadline=$(($(date +%s) + $2)) ids healthy
    while [[ $(date +%s) -lt $deadline ]]; do
        mapfile -t ids < <(docker ps -q --filter "label=com.docker.swarm.service.name=$SERVICE")
        healthy=0
        if [[ ${#ids[@]} -gt 0 ]]; then
            healthy=$(docker inspect -f '{{.State.Health.Status}}' "${ids[@]}" | grep -c '^healthy$')
        fi
        if [[ ${#ids[@]} -eq $want && $healthy -eq $want ]]; then
            return 0
        fi
        sleep 0.5
    done
    echo "${#ids[@]} running, $healthy healthy"
    return 1
}

# Poll the service's update status until it is one of the given states, noting meanwhile when
# every running task first ran version $2 (T_ALL_ON) and when a rollback began (T_ROLLBACK).
# Prints the final state.
wait_update() {
    local deadline=$(($(date +%s) + $1)) version="$2" state
    shift 2
    T_ALL_ON=""
    T_ROLLBACK=""
    while [[ $(date +%s) -lt $deadline ]]; do
        state=$(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$SERVICE")
        [[ -z "$T_ROLLBACK" && "$state" == rollback_* ]] && T_ROLLBACK=$(now)
        [[ -z "$T_ALL_ON" && "$(running_versions)" == "$version x2" ]] && T_ALL_ON=$(now)
        for want in "$@"; do
            if [[ "$state" == "$want" ]]; then
                echo "$state"
                return 0
            fi
        done
        sleep 0.5
    done
    echo "${state:-none}"
    return 1
}

running_versions() {
    local ids
    mapfile -t ids < <(docker ps -q --filter "label=com.docker.swarm.service.name=$SERVICE")
    [[ ${#ids[@]} -gt 0 ]] || return 0
    docker inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "${ids[@]}" | sort | uniq -c |
        awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}'
}

now() { date +%s.%N | cut -c1-14; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# ---- 1. tools, engine, swarm ---------------------------------------------------------------------
e2e_tools
e2e_engine_start
state=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [[ "$state" == "inactive" ]]; then
    log "creating a single-node swarm"
    must "docker swarm init" docker swarm init --advertise-addr 127.0.0.1
    SWARM_CREATED=1
elif [[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" != "true" ]]; then
    fail "this engine is in a swarm ($state) but not a manager: run on a manager node"
    exit 1
else
    log "using the swarm this engine is already in"
fi

# ---- 2. images ----------------------------------------------------------------------------------
e2e_build_images
e2e_zoo
# The tags of the test: the same service, labelled v1 and v2 (a rolling update replaces every
# task), and a "bad" one whose models directory is empty (readiness stays 503).
mkdir -p "$WORK/ctx"
[[ -n "$ZOO_DIR" ]] && cp -a "$ZOO_DIR/." "$WORK/ctx/"
zoo_copy=""
[[ -n "$ZOO_DIR" ]] && zoo_copy="COPY . /models/"
build_tag() {
    printf 'FROM %s\n%s\n' "$2" "$3" | docker build -q -t "$1" -f - "$WORK/ctx"
}
must "image condgen:swarm-v1" build_tag condgen:swarm-v1 condgen:e2e \
    "$zoo_copy
LABEL org.opencontainers.image.version=v1"
must "image condgen:swarm-v2" build_tag condgen:swarm-v2 condgen:swarm-v1 \
    "LABEL org.opencontainers.image.version=v2"
must "image condgen:swarm-bad (an empty models directory)" build_tag condgen:swarm-bad condgen:swarm-v1 \
    "ENV CONDGEN_MODELS_DIR=/tmp
LABEL org.opencontainers.image.version=bad"

# ---- 3. deploy under load -----------------------------------------------------------------------
log "deploying stack $STACK (lb :$LB_PORT, prometheus :$PROM_PORT) with the load running"
STACK_UP=1
# A leftover of a killed earlier run goes first.
remove_stack
"${CHECK[@]}" load --lb "$LB" --out "$WORK/requests.tsv" --stop "$WORK/stop" \
    --concurrency "${SWARM_E2E_CONCURRENCY:-2}" >"$WORK/load.log" 2>&1 &
LOAD_PID=$!
t_deploy=$(now)
must "docker stack deploy" env CONDGEN_IMAGE=condgen:swarm-v1 CONDGEN_LB_IMAGE=condgen-lb:e2e \
    CONDGEN_PROMETHEUS_IMAGE=condgen-prometheus:e2e CONDGEN_LB_PORT="$LB_PORT" \
    CONDGEN_PROMETHEUS_PORT="$PROM_PORT" CONDGEN_REPLICAS=2 \
    docker stack deploy --resolve-image never -c docker/stack.yaml "$STACK"
if out=$(wait_healthy 2 120); then
    t_up=$(now)
    pass "stack up: 2 replicas healthy (ready) $(elapsed "$t_deploy" "$t_up") s after the deploy"
else
    fail "stack up: $out"
    exit 1
fi
for _ in $(seq 1 60); do [[ -s "$WORK/requests.tsv" ]] && break; sleep 0.5; done
ro=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' $(docker ps -q --filter "label=com.docker.swarm.service.name=$SERVICE") | sort -u | tr '\n' ' ')
if [[ "$ro" == "true " ]]; then
    pass "replicas run on a read-only root filesystem"
else
    fail "replicas' ReadonlyRootfs: $ro"
fi
snapshot
settled=$(now)
sleep 5
check window --name deploy --log "$WORK/requests.tsv" --known "$WORK/known.tsv" --since "$t_deploy" \
    --current "$WORK/current.tsv" --serving-since "$settled" --replicas 2 --version v1
check prom --prometheus "$PROM" --want 2 --timeout 60

# ---- 4. rolling update --------------------------------------------------------------------------
log "rolling update to condgen:swarm-v2"
t0=$(now)
docker service update --detach --no-resolve-image --image condgen:swarm-v2 "$SERVICE" >/dev/null
wait_update 180 v2 completed paused rollback_completed rollback_paused >"$WORK/state"
state=$(cat "$WORK/state")
t1=$(now)
versions=$(running_versions)
if [[ "$state" == completed && -n "$T_ALL_ON" ]]; then
    pass "rolling update: every task on v2 after $(elapsed "$t0" "$T_ALL_ON") s, completed after" \
        "$(elapsed "$t0" "$t1") s (the 30 s monitor window included): $versions"
else
    fail "rolling update ended '$state' after $(elapsed "$t0" "$t1") s: $versions"
fi
snapshot
settled=$(now)
sleep 4
check window --name "rolling update" --log "$WORK/requests.tsv" --known "$WORK/known.tsv" --since "$t0" \
    --current "$WORK/current.tsv" --serving-since "$settled" --replicas 2 --version v2

# ---- 5. an update that never turns ready rolls back ----------------------------------------------
log "update to condgen:swarm-bad (readiness never green)"
t0=$(now)
docker service update --detach --no-resolve-image --image condgen:swarm-bad "$SERVICE" >/dev/null
wait_update 180 v2 rollback_completed rollback_paused completed paused >"$WORK/state"
state=$(cat "$WORK/state")
t1=$(now)
wait_healthy 2 60 >/dev/null
versions=$(running_versions)
if [[ "$state" == rollback_completed && "$versions" == "v2 x2" && -n "$T_ROLLBACK" ]]; then
    pass "bad update rolled back by itself: rollback began after $(elapsed "$t0" "$T_ROLLBACK") s," \
        "completed after $(elapsed "$t0" "$t1") s: $versions"
else
    fail "bad update ended '$state' after $(elapsed "$t0" "$t1") s: $versions"
fi
docker service inspect -f '  update status: {{.UpdateStatus.Message}}' "$SERVICE"
snapshot
settled=$(now)
sleep 4
check window --name rollback --log "$WORK/requests.tsv" --known "$WORK/known.tsv" --since "$t0" \
    --current "$WORK/current.tsv" --serving-since "$settled" --replicas 2 --version v2

# ---- 6. scale 2 -> 4 -> 2 -----------------------------------------------------------------------
for n in 4 2; do
    log "scaling to $n replicas"
    t0=$(now)
    docker service scale --detach "$SERVICE=$n" >/dev/null 2>&1
    if out=$(wait_healthy "$n" 120); then
        pass "scaled to $n healthy replicas in $(elapsed "$t0" "$(now)") s"
    else
        fail "scale to $n: $out"
    fi
    snapshot
    settled=$(now)
    check prom --prometheus "$PROM" --want "$n" --timeout 60
    sleep 3
    check window --name "scale to $n" --log "$WORK/requests.tsv" --known "$WORK/known.tsv" --since "$t0" \
        --current "$WORK/current.tsv" --serving-since "$settled" --replicas "$n" --version v2
done

# ---- 7. the whole run ---------------------------------------------------------------------------
touch "$WORK/stop"
wait "$LOAD_PID"
LOAD_PID=""
check summary --log "$WORK/requests.tsv" --known "$WORK/known.tsv"
exit 0
