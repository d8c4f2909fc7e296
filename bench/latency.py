"""Latency beside a reference: the production server (gevent workers, gunicorn.conf.py) and the
same app on gunicorn's sync workers, with the same worker count, in alternating rounds.

- Saturated: wrk at a fixed concurrency (closed loop), throughput and p50/p99 per round.
- Moderate: an open-loop client at half the gevent server's saturating rate. Requests leave on
  a fixed schedule whatever the answers, and each latency counts from when its request was
  due, so a server that stalls is charged for every request it delayed (wrk, closed loop,
  sends nothing while its connections wait).

`python -m bench.latency` runs it alone and prints JSON; `latency_round()` returns the same
dict for `make bench`. `--cpu-limit 1` puts each server in a cgroup with a CFS quota, as a
Kubernetes CPU limit does (root, cgroup v1 or v2): how many workers suit a one-core pod.
"""

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import Load, cpu_seconds, load_average, wrk, wrk_round
from support.servers import Server, collectstatic, cpu_limited

SYNC_WORKERS = "--worker-class sync"  # gunicorn.conf.py otherwise: the same app and settings
PATHS = ("/", "/healthz")


async def _open_loop(port: int, path: str, rate: float, seconds: float) -> dict:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0

    async def one(due: float) -> None:
        nonlocal errors
        connection = idle.pop() if idle else None
        try:
            if connection is None:  # none free: open loop, so one more connection
                connection = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = connection
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - due)
            status = head[9:12].decode()
            statuses[status] = statuses.get(status, 0) + 1
            if b"connection: close" in head:  # sync workers answer one request a connection
                writer.close()
            else:
                idle.append(connection)
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            errors += 1
            if connection is not None:
                connection[1].close()

    pending: set[asyncio.Task] = set()
    start = time.perf_counter() + 0.05
    for number in range(int(rate * seconds)):
        due = start + number / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        task = asyncio.create_task(one(due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=10)
    for _, writer in idle:
        writer.close()
    latencies.sort()

    def ms(quantile: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * quantile))] * 1e3, 2)

    return {
        "sent": int(rate * seconds),
        "answered": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "p50_ms": ms(0.5) if latencies else None,
        "p99_ms": ms(0.99) if latencies else None,
        "max_ms": round(latencies[-1] * 1e3, 2) if latencies else None,
    }


def open_loop(port: int, path: str, *, rate: float, seconds: float) -> dict:
    """`rate` requests a second for `seconds` on keep-alive connections, a new one whenever
    none is free; latency from each request's due time."""
    return asyncio.run(_open_loop(port, path, rate, seconds))


def latency_round(
    work: Path,
    *,
    workers: tuple[int, ...] = (2,),
    rounds: int = 3,
    duration: int = 5,
    connections: int = 32,
    threads: int = 2,
    cpu_limit: float | None = None,
) -> dict:
    """gevent and sync servers for each worker count, each target under wrk `rounds` times
    (order reversed every other round), then open-loop at half the saturating rate of the
    gevent server of the same worker count. Returns per target the rounds and their medians;
    `lost` is completed 2xx answers minus the visits the server counted in that run."""
    servers: dict[str, Server] = {}
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for count in workers:
            for model, args in (("gevent", ""), ("sync", SYNC_WORKERS)):
                name = f"{model}-{count}"
                prefix = stack.enter_context(cpu_limited(name, cpu_limit))
                command = [*prefix, sys.executable, "manage.py", "serve"]
                env = {"WEB_CONCURRENCY": str(count), "GUNICORN_CMD_ARGS": args}
                servers[name] = Server(work / name, work / f"{name}.log", env, command=command)
                stack.callback(servers[name].stop)
                servers[name].start().wait_ready()
        for server in servers.values():  # warm up: imports, connections, page cache
            for path in PATHS:
                wrk(server.url(path), Load(duration=1, connections=connections, threads=1))
        runs: dict[str, list[dict]] = {f"{name} {path}": [] for path in PATHS for name in servers}
        for number in range(rounds):
            for path in PATHS:
                order = list(servers) if number % 2 == 0 else list(servers)[::-1]
                for name in order:
                    run = wrk_round(servers[name], path, Load(duration, connections, threads))
                    runs[f"{name} {path}"].append(run)
                    print(f"round {number + 1}: {name} {path}: {json.dumps(run)}", flush=True)
        moderate: dict[str, list[dict]] = {
            f"{name} {path}": [] for path in PATHS for name in servers
        }
        rates = {  # half the gevent server's saturating rate, for both models of that count
            f"{model}-{count} {path}": round(
                statistics.median(r["requests_per_s"] for r in runs[f"gevent-{count} {path}"]) / 2
            )
            for count in workers
            for model in ("gevent", "sync")
            for path in PATHS
        }
        for path in PATHS:
            for number in range(rounds):
                order = list(servers) if number % 2 == 0 else list(servers)[::-1]
                for name in order:
                    load = load_average()
                    rate = rates[f"{name} {path}"]
                    cpu = cpu_seconds(servers[name].process.pid)
                    started = time.monotonic()
                    result = open_loop(servers[name].port, path, rate=rate, seconds=duration)
                    # Cores the server kept busy: at a low rate a request costs more CPU here
                    # than under wrk (docs/performance-history.md), so half the rate is not
                    # half a load.
                    result["server_cores"] = round(
                        (cpu_seconds(servers[name].process.pid) - cpu)
                        / (time.monotonic() - started),
                        2,
                    )
                    result["load_average"] = load
                    moderate[f"{name} {path}"].append(result)
                    print(f"moderate {number + 1}: {name} {path}: {json.dumps(result)}", flush=True)
    summary = {}
    for target, results in runs.items():
        summary[target] = {
            key: round(statistics.median(r[key] for r in results), 2)
            for key in ("requests_per_s", "p50_ms", "p99_ms")
        } | {
            "p99_ms_range": [min(r["p99_ms"] for r in results), max(r["p99_ms"] for r in results)],
            "errors": sum(r["errors"] for r in results),
            "lost": sum(r.get("lost", 0) for r in results),
            "load_average": [  # at the start of each round, wrk's and open-loop's
                min(r["load_average"] for r in results + moderate[target]),
                max(r["load_average"] for r in results + moderate[target]),
            ],
            "moderate_rate": rates[target],
            "moderate_p99_ms": statistics.median(r["p99_ms"] for r in moderate[target]),
            "moderate_p99_ms_range": [
                min(r["p99_ms"] for r in moderate[target]),
                max(r["p99_ms"] for r in moderate[target]),
            ],
            "moderate_errors": sum(r["errors"] for r in moderate[target]),
            "moderate_server_cores": statistics.median(r["server_cores"] for r in moderate[target]),
        }
    against_sync = {}  # the bar: throughput at least 1, p99 at most 1.5
    for count in workers:
        for path in PATHS:
            ours, sync = summary[f"gevent-{count} {path}"], summary[f"sync-{count} {path}"]
            against_sync[f"{count} workers {path}"] = {
                "throughput": round(ours["requests_per_s"] / sync["requests_per_s"], 2),
                "p99": round(ours["p99_ms"] / sync["p99_ms"], 2),
            }
    return {"summary": summary, "against_sync": against_sync, "runs": runs, "moderate": moderate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="2", help="worker counts, e.g. 1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--cpu-limit", type=float, help="cores per server (a cgroup's quota)")
    parser.add_argument("--out", type=Path, help="write the whole report (every round) here")
    args = parser.parse_args()
    collectstatic()
    work = Path(tempfile.mkdtemp(prefix="app-python-latency-"))
    try:
        report = latency_round(
            work,
            workers=tuple(int(count) for count in args.workers.split(",")),
            rounds=args.rounds,
            duration=args.duration,
            connections=args.connections,
            threads=args.threads,
            cpu_limit=args.cpu_limit,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["command"] = " ".join(["python -m bench.latency", *sys.argv[1:]])
    report["cores"] = os.cpu_count()
    print(json.dumps({key: report[key] for key in ("summary", "against_sync")}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
