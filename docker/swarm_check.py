"""Load and checks for docker/swarm-e2e.sh: continuous /generate requests through the balancer,
a record of which replica answered each, and the checks made on that record. Standard library
only (plus the ``docker`` CLI for ``replicas``).

Subcommands:
  load      send /generate requests until a stop file appears; one TSV line per request
  replicas  append the running replicas of a service (address, task, image version) to a TSV
  window    check the requests of a time window: none failed, which replicas served them
  prom      wait until Prometheus scrapes exactly N replicas of the condgen job
  summary   totals over the whole run: sent, failed, per-replica split, same bytes everywhere

A failed request is anything but a 200 with a PNG that reached the client (a 503 the balancer
retried on another replica and that ended in a 200 is a success; the retry is counted).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e_check import PNG_MAGIC, Checks, finish, http

# One line per request: epoch seconds, status, replica address (the last one the balancer
# tried), tries, body index, first 16 hex digits of the body's sha256, latency ms.
FIELDS = ("t", "status", "upstream", "tries", "body", "sha", "ms")


@dataclass(frozen=True)
class Record:
    t: float
    status: int
    upstream: str
    tries: int
    body: int
    sha: str
    ms: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.sha != "-"


@dataclass(frozen=True)
class Replica:
    address: str
    task: str
    version: str
    image: str


# ---- load ----------------------------------------------------------------------------------------


def request_bodies(models: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` fixed requests spread over the models; each is sent many times."""
    bodies = []
    for i in range(count):
        card = models[i % len(models)]
        body: dict[str, Any] = {"model": card["name"], "seed": 1000 + i, "n": 1 + i % 2}
        if card.get("labels"):
            body["label"] = i % len(card["labels"])
        bodies.append(body)
    return bodies


def ready_models(lb: str) -> list[dict[str, Any]]:
    status, _, body = http("GET", f"{lb}/models", accept="application/json", timeout=5.0)
    if status != 200:
        return []
    doc = json.loads(body)
    entries = doc.get("models", doc) if isinstance(doc, dict) else doc
    return [e.get("card", e) for e in entries if e.get("status", "ready") == "ready"]


def load(args: argparse.Namespace) -> int:
    lb = args.lb.rstrip("/")
    stop = Path(args.stop)
    # The stack is being deployed: requests start once the balancer lists a ready model.
    models: list[dict[str, Any]] = []
    while not models and not stop.exists():
        try:
            models = ready_models(lb)
        except ValueError:
            models = []
        if not models:
            time.sleep(0.25)
    if not models:
        return 0
    bodies = request_bodies(models, args.bodies)
    out = open(args.out, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - shared by the threads
    lock = threading.Lock()
    print(f"swarm-load: {lb}: {len(bodies)} requests over {len(models)} models, {args.rate}/s", flush=True)

    # Each worker paces itself to its share of --rate: a steady load, not a CPU-bound flood.
    interval = args.concurrency / args.rate if args.rate > 0 else 0.0

    def worker(k: int) -> None:
        i = k
        next_t = time.monotonic()
        while not stop.exists():
            # After a slow answer the schedule restarts from now rather than catching up in a burst.
            next_t = max(next_t + interval, time.monotonic() - interval)
            time.sleep(max(0.0, next_t - time.monotonic()))
            index = i % len(bodies)
            i += args.concurrency
            t0 = time.time()
            status, headers, data = http("POST", f"{lb}/generate", bodies[index], timeout=60.0)
            ms = (time.time() - t0) * 1000.0
            tried = [a.strip() for a in headers.get("X-Upstream-Addr", "").split(",") if a.strip()]
            png = status == 200 and data.startswith(PNG_MAGIC)
            sha = hashlib.sha256(data).hexdigest()[:16] if png else "-"
            fields = (f"{t0:.3f}", status, tried[-1] if tried else "-", len(tried), index, sha, f"{ms:.1f}")
            with lock:
                out.write("\t".join(map(str, fields)) + "\n")

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(args.concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out.close()
    return 0


def read_records(path: Path) -> list[Record]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != len(FIELDS):
            continue  # a line being written when the file was read
        t, status, upstream, tries, body, sha, ms = parts
        records.append(Record(float(t), int(status), upstream, int(tries), int(body), sha, float(ms)))
    return records


# ---- replicas ------------------------------------------------------------------------------------


def docker_json(*args: str) -> Any:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def running_replicas(service: str) -> list[Replica]:
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not ids:
        return []
    out = []
    for c in docker_json("inspect", *ids):
        labels = c["Config"]["Labels"]
        # <stack>_<service>.<slot>.<task id>: named here <service>.<slot>@<first digits of the id>.
        service_slot_id = labels.get("com.docker.swarm.task.name", c["Name"].lstrip("/")).split(".")
        task = service_slot_id[0].split("_", 1)[-1] + "." + ".".join(service_slot_id[1:2])
        task += "@" + labels.get("com.docker.swarm.task.id", "?")[:6]
        version = labels.get("org.opencontainers.image.version", "?")
        for net in c["NetworkSettings"]["Networks"].values():
            if net.get("IPAddress"):
                out.append(Replica(f"{net['IPAddress']}:8000", task, version, c["Config"]["Image"]))
    return out


def read_replicas(path: Path) -> dict[str, Replica]:
    known: dict[str, Replica] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            address, task, version, image = line.split("\t")
            known[address] = Replica(address, task, version, image)
    return known


def replicas(args: argparse.Namespace) -> int:
    now = running_replicas(args.service)
    lines = "".join(f"{r.address}\t{r.task}\t{r.version}\t{r.image}\n" for r in now)
    with open(args.append, "a", encoding="utf-8") as f:
        f.write(lines)
    Path(args.current).write_text(lines, encoding="utf-8")
    for r in now:
        print(f"  replica {r.task} {r.address} version={r.version} image={r.image}")
    return 0


# ---- checks --------------------------------------------------------------------------------------


def describe(records: list[Record], known: dict[str, Replica]) -> tuple[str, dict[str, int]]:
    ok = sum(r.ok for r in records)
    codes = collections.Counter(r.status for r in records if not r.ok)
    retried = sum(r.tries > 1 for r in records if r.ok)
    split: dict[str, int] = collections.Counter()
    for r in records:
        if r.ok:
            rep = known.get(r.upstream)
            split[f"{rep.task} ({rep.version})" if rep else r.upstream] += 1
    text = (
        f"{len(records)} sent, {ok} ok, {len(records) - ok} failed"
        + (f" {dict(codes)}" if codes else "")
        + f", {retried} retried by the balancer to a 200"
    )
    return text, dict(sorted(split.items()))


def window(args: argparse.Namespace) -> int:
    checks = Checks()
    until = args.until if args.until else time.time()
    records = [r for r in read_records(Path(args.log)) if args.since <= r.t < until]
    known = read_replicas(Path(args.known))
    text, split = describe(records, known)
    failed = [r for r in records if not r.ok]
    checks.report(
        bool(records) and not failed,
        f"{args.name}: no failed request over {until - args.since:.1f} s",
        text,
    )
    print("  per replica: " + ", ".join(f"{k}={v}" for k, v in split.items()), flush=True)
    if failed:
        for r in failed[:5]:
            print(f"  failed: t={r.t:.3f} status={r.status} upstream={r.upstream} ms={r.ms:.0f}")
    if args.current:
        # Who serves once the change is done: the requests since --serving-since.
        current = read_replicas(Path(args.current))
        served = {r.upstream for r in records if r.ok and r.t >= args.serving_since}
        versions = sorted({rep.version for rep in current.values()})
        checks.report(
            len(current) == args.replicas and served == set(current),
            f"{args.name}: every one of the {args.replicas} running replicas served, and only they",
            f"running {sorted(rep.task for rep in current.values())}, served {len(served)}",
        )
        if args.version:
            checks.report(
                versions == [args.version],
                f"{args.name}: every replica runs version {args.version}",
                f"versions {versions}",
            )
    return finish(checks)


def scraped_replicas(prometheus: str) -> list[str]:
    """The condgen targets that Prometheus discovers now and last scraped successfully."""
    status, _, body = http("GET", f"{prometheus}/api/v1/targets?state=active", accept="application/json")
    if status != 200:
        return []
    targets = json.loads(body)["data"]["activeTargets"]
    return sorted(
        t["labels"]["instance"]
        for t in targets
        if t["labels"].get("job") == "condgen" and t["health"] == "up"
    )


def prom(args: argparse.Namespace) -> int:
    checks = Checks()
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    while True:
        try:
            seen = scraped_replicas(args.prometheus.rstrip("/"))
        except (ValueError, KeyError):  # Prometheus still starting
            seen = []
        if len(seen) == args.want or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    checks.report(
        len(seen) == args.want,
        f"Prometheus discovers and scrapes {args.want} condgen replicas (DNS, tasks.condgen)",
        f"{len(seen)} up after {time.monotonic() - t0:.1f} s: {', '.join(seen)}",
    )
    return finish(checks)


def summary(args: argparse.Namespace) -> int:
    checks = Checks()
    records = read_records(Path(args.log))
    known = read_replicas(Path(args.known))
    text, split = describe(records, known)
    span = records[-1].t - records[0].t if records else 0.0
    checks.report(
        bool(records) and all(r.ok for r in records),
        f"whole run: no failed request over {span:.0f} s of continuous load",
        text,
    )
    print("  per replica: " + ", ".join(f"{k}={v}" for k, v in split.items()), flush=True)
    # The same request gives the same bytes whichever replica, and whichever version, served it.
    by_body: dict[int, set[str]] = collections.defaultdict(set)
    servers: dict[int, set[str]] = collections.defaultdict(set)
    for r in records:
        if r.ok:
            by_body[r.body].add(r.sha)
            servers[r.body].add(r.upstream)
    distinct = {b: len(s) for b, s in by_body.items() if len(s) != 1}
    multi = sum(len(s) > 1 for s in servers.values())
    checks.report(
        bool(by_body) and not distinct and multi == len(by_body),
        "same request, same bytes from every replica",
        f"{len(by_body)} requests each served by {min((len(s) for s in servers.values()), default=0)}"
        f"-{max((len(s) for s in servers.values()), default=0)} replicas"
        + (f"; differing: {distinct}" if distinct else ""),
    )
    return finish(checks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("--lb", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stop", required=True, help="The load stops once this file exists.")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--rate", type=float, default=50.0, help="Requests per second in all (0: no pacing).")
    p.add_argument("--bodies", type=int, default=8)
    p = sub.add_parser("replicas")
    p.add_argument("--service", required=True)
    p.add_argument("--append", required=True, help="Every replica seen so far (address, task, version).")
    p.add_argument("--current", required=True, help="Rewritten with the replicas running now.")
    p = sub.add_parser("window")
    p.add_argument("--name", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--known", required=True)
    p.add_argument("--since", type=float, required=True)
    p.add_argument("--until", type=float, default=0.0)
    p.add_argument("--current", default="", help="The replicas that should serve (replicas --current).")
    p.add_argument("--serving-since", type=float, default=0.0)
    p.add_argument("--replicas", type=int, default=0)
    p.add_argument("--version", default="")
    p = sub.add_parser("prom")
    p.add_argument("--prometheus", required=True)
    p.add_argument("--want", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60.0)
    p = sub.add_parser("summary")
    p.add_argument("--log", required=True)
    p.add_argument("--known", required=True)
    args = ap.parse_args()
    handler = {"load": load, "replicas": replicas, "window": window, "prom": prom, "summary": summary}
    return handler[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
