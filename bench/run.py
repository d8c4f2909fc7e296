"""`make bench` (`python -m bench.run`): the production server under wrk on 127.0.0.1, with
A B A B rounds.

The targets (bench/targets.py), each on a server started as the image starts it (`manage.py
serve`, gunicorn.conf.py): counting `GET /`, the no-database `GET /healthz` of the same server,
the same counting page with VISITS_SQLITE_SYNCHRONOUS=FULL, the counting page with Litestream
replicating its database to a file replica (when scripts/litestream.sh has built it), a
naive file counter (bench/naive_app.py) under the same gunicorn settings, and the same app on
granian, the reference (bench/targets.py). bench/measure.py
measures; bench/report.py writes bench/results/<date>.json, bench/results/<date>.svg and the
results section of docs/performance.md.
"""

import argparse
import contextlib
import dataclasses
import datetime
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench.latency import latency_round
from bench.measure import (
    Load,
    Replica,
    hostile_round,
    image_layers,
    machine,
    peak_rss,
    ratios,
    replication_lag_round,
    replication_summary,
    restart_round,
    summarise,
    throughput_run,
    wrk,
)
from bench.report import write_doc, write_results
from bench.targets import SITE, TARGETS, Site, Target
from support.litestream import Replicator
from support.login_flood import login_flood
from support.servers import Server, collectstatic
from support.tools import APP_VERSION, VERSIONS, litestream_binary

# The chart's sidecar: Litestream's defaults, a sync (WAL -> LTX) and a shipment every second.
REPLICATION_INTERVAL = "1s"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="A B A B rounds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/performance.md")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    collectstatic()
    targets = available(TARGETS)
    load = Load(duration=args.duration, connections=args.connections, threads=args.threads)
    with tempfile.TemporaryDirectory(
        prefix="app-python-bench-", ignore_cleanup_errors=True
    ) as work:
        runs, facts = measure(targets, load, rounds=args.rounds, work=Path(work))
    summary = {
        target.name: summarise(runs[target.name], counts=target.counts) for target in targets
    }
    if facts["replication"] is not None:
        facts["replication"] |= replication_summary(summary, runs)
    facts |= ratios(summary, facts["hostile"])
    facts["image_layers"] = image_layers(f"app-python:{APP_VERSION}")
    report = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ"),
        "command": f"make bench  (python -m bench.run --duration {args.duration} --rounds"
        f" {args.rounds} --connections {args.connections} --threads {args.threads})",
        "machine": machine(),
        "summary": {target.label: summary[target.name] for target in targets},
        "facts": facts,
        "runs": {target.label: runs[target.name] for target in targets},
    }
    chart = write_results(report)
    print(json.dumps({"summary": report["summary"], "facts": facts}, indent=2))
    if not args.no_doc:
        write_doc(report, chart)


def available(targets: list[Target]) -> list[Target]:
    """The targets this machine can run: a replicated site needs Litestream built."""
    if litestream_binary() is not None:
        return targets
    print("litestream is not built (bash scripts/litestream.sh): no replication round")
    return [target for target in targets if not target.site.replicated]


def measure(
    targets: list[Target], load: Load, *, rounds: int, work: Path
) -> tuple[dict[str, list[dict]], dict]:
    """Start every target's server, run the throughput rounds, then the rounds beyond throughput
    (Litestream's lag, hostile clients, login floods, a restart); stop the servers; then the
    latency round beside gunicorn's sync workers (bench/latency.py). Returns each target's runs
    and the facts, keyed by name."""
    with contextlib.ExitStack() as stack:
        # SITE first: its start, on an empty volume before any other server, is the cold start.
        sites = {SITE.name: SITE} | {target.site.name: target.site for target in targets}
        servers = {name: start(site, work, stack) for name, site in sites.items()}
        replicas = {
            name: replicate(servers[name], work, stack)
            for name, site in sites.items()
            if site.replicated
        }
        site = servers[SITE.name]
        facts: dict = {"replication": None, "cold_start_s": site.ready_after}
        for target in targets:  # warm up: imports, connections, page cache
            wrk(
                servers[target.site.name].url(target.path),
                dataclasses.replace(load, duration=1, threads=1),
            )
        runs: dict[str, list[dict]] = {target.name: [] for target in targets}
        with peak_rss(site.process.pid) as peak:
            for number in range(rounds):
                for target in targets:
                    server, replica = servers[target.site.name], replicas.get(target.site.name)
                    result = throughput_run(target, server, load, replica) | {"round": number}
                    runs[target.name].append(result)
                    print(f"round {number + 1}: {target.label}: {json.dumps(result)}", flush=True)
        for name, replica in replicas.items():  # one at most: the report has one such fact
            facts["replication"] = replication_lag_round(servers[name], replica, load) | {
                "interval": REPLICATION_INTERVAL,
                "litestream": VERSIONS["LITESTREAM_VERSION"],
            }
        facts["hostile"] = hostile_round(site, load)
        facts["login_flood"] = login_flood(site.url(""), loops=30, seconds=load.duration)
        facts["login_flood_new_usernames"] = login_flood(
            site.url(""), loops=30, seconds=load.duration, new_usernames=True
        )
        facts["peak_rss_mb"] = round(peak["bytes"] / 2**20, 1)
        facts |= restart_round(site)
    # Apart, once the servers above are stopped: gevent beside sync workers, each alone, with
    # one worker (the chart's, per core of a pod's limit) and two (the image's on two cores).
    latency = latency_round(work / "latency", workers=(1, 2), rounds=rounds,
                            duration=load.duration, connections=load.connections,
                            threads=load.threads)  # fmt: skip
    facts["latency"] = {key: latency[key] for key in ("summary", "against_sync")}
    return runs, facts


def start(site: Site, work: Path, stack: contextlib.ExitStack) -> Server:
    """The site's server in `work`, ready; stopped when `stack` closes."""
    server = site.kind(work / site.name, work / f"{site.name}.log", site.env)
    stack.callback(server.stop)
    return server.start().wait_ready()


def replicate(server: Server, work: Path, stack: contextlib.ExitStack) -> Replica:
    """Litestream replicating the server's database to a file replica in `work`; stopped when
    `stack` closes, before the server."""
    name = server.data_dir.name
    replicator = Replicator(
        litestream_binary(),
        server.data_dir / "db.sqlite3",
        work / f"{name}-replica",
        work / f"{name}-litestream.log",
        interval=REPLICATION_INTERVAL,
    )
    stack.callback(replicator.stop)
    replicator.start()
    return Replica(replicator, work / f"{name}-restored.sqlite3")


if __name__ == "__main__":
    main()
