"""How `make bench` measures: wrk runs, the server's CPU and memory read from /proc, and the
rounds beyond throughput (hostile clients, Litestream's lag, a restart). Each function returns
plain data; bench/report.py formats it."""

import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.targets import Target
from support import hostile
from support.litestream import Replicator
from support.servers import Server
from support.tools import ROOT

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """pid and its descendants (gunicorn's master and workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def rss_bytes(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{member}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024
    return total


@contextlib.contextmanager
def peak_rss(pid: int) -> Iterator[dict[str, int]]:
    """The largest RSS of a process tree while the block runs, sampled every 0.1 s: the dict
    it yields holds it under "bytes" once the block is over."""
    peak = {"bytes": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["bytes"] = max(peak["bytes"], rss_bytes(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


@dataclass(frozen=True)
class Load:
    """What every wrk run of the benchmark asks for."""

    duration: int  # seconds
    connections: int
    threads: int


def wrk(url: str, load: Load, *, new_connections: bool = False) -> dict:
    """wrk's figures (bench/summary.lua); with `new_connections`, one request per connection."""
    close = ["-H", "Connection: close"] if new_connections else []
    output = subprocess.run(
        ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{load.duration}s",
         "--timeout", "5s", *close, "-s", str(ROOT / "bench" / "summary.lua"), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wrk_round(server: Server, path: str, load: Load) -> dict:
    """One wrk run on `path` in the figures of the side-by-side rounds (bench/latency.py,
    bench/compare.py): throughput, p50, p99, errors, the server's CPU per request, the load
    average as it began, and for `/` the visits lost."""
    before = server.visits() if path == "/" else 0
    cpu = cpu_seconds(server.process.pid)
    began = load_average()
    result = wrk(server.url(path), load)
    run = {
        "load_average": began,
        "requests_per_s": round(result["requests"] / (result["duration_us"] / 1e6)),
        "p50_ms": round(result["p50_us"] / 1e3, 2),
        "p99_ms": round(result["p99_us"] / 1e3, 2),
        "errors": result["non_2xx"] + result["socket_errors"],
        "server_cpu_us_per_request": round(
            (cpu_seconds(server.process.pid) - cpu) / max(1, result["requests"]) * 1e6
        ),
    }
    if path == "/":
        completed = result["requests"] - result["non_2xx"]
        run["lost"] = max(0, completed - (server.visits() - before))
    return run


@dataclass(frozen=True)
class Replica:
    """Litestream replicating a server's database, and the file its replica is restored into."""

    replicator: Replicator
    restore_to: Path


def throughput_run(
    target: Target, server: Server, load: Load, replica: Replica | None = None
) -> dict:
    """One wrk run on the target: wrk's figures, the server's CPU per request, the visits lost
    if the target counts, and Litestream's CPU and catch-up if the server is replicated."""
    before = server.visits() if target.counts else 0
    cpu_before = cpu_seconds(server.process.pid)
    if replica:
        replicator_cpu_before = cpu_seconds(replica.replicator.process.pid)
    result = wrk(server.url(target.path), load, new_connections=target.new_connections)
    stopped = time.monotonic()
    result["server_cpu_us_per_request"] = round(
        (cpu_seconds(server.process.pid) - cpu_before) / result["requests"] * 1e6
    )
    if replica:
        # Millicores, like a container's CPU request and limit.
        result["replicator_cpu_millicores"] = round(
            (cpu_seconds(replica.replicator.process.pid) - replicator_cpu_before)
            / (result["duration_us"] / 1e6)
            * 1000
        )
        result["replica_catch_up_s"] = replica_catch_up(server, replica, stopped)
    if target.counts:
        completed = result["requests"] - result["non_2xx"]
        # The naive counter can go back to 0 (a torn read parses as no count).
        visits = max(0, server.visits() - before)
        result["lost"] = max(0, completed - visits)
    return result


def summarise(results: list[dict], *, counts: bool) -> dict:
    """A target's runs in one line: medians, and the sums of errors and lost visits."""
    rps = [r["requests"] / (r["duration_us"] / 1e6) for r in results]
    return {
        "requests_per_s": round(statistics.median(rps)),
        "p50_ms": round(statistics.median(r["p50_us"] for r in results) / 1000, 2),
        "p99_ms": round(statistics.median(r["p99_us"] for r in results) / 1000, 2),
        "errors": sum(r["non_2xx"] + r["socket_errors"] for r in results),
        "lost_visits": sum(r["lost"] for r in results) if counts else None,
        "server_cpu_us_per_request": round(
            statistics.median(r["server_cpu_us_per_request"] for r in results)
        ),
    }


def hostile_round(server: Server, load: Load) -> dict:
    """200 slowloris, 200 idle and 20 slow-POST connections held (support/hostile.py): first
    alone, for three wrk runs' time, with /healthz and /readyz probed every 0.25 s and a visit
    every second, as the kubelet and a visitor would; then under wrk, counting."""

    def attack(seconds: float, **probes: object) -> dict:
        return asyncio.run(
            hostile.attack(
                "127.0.0.1", server.port, seconds=seconds, slow=200, idle=200, slow_posts=20,
                **probes,
            )
        )  # fmt: skip

    before = server.visits()
    alone = attack(3 * load.duration)
    visits_alone = server.visits() - before
    seen: dict = {}
    background = threading.Thread(
        target=lambda: seen.update(attack(load.duration + 6, probe=False))
    )
    background.start()
    time.sleep(3)  # every attacker connected
    before = server.visits()
    result = wrk(server.url("/"), load)
    counted_now = server.visits() - before
    background.join()
    return {
        "alone": {path: alone[path] for path in ("/healthz", "/readyz", "/")},
        "alone_visits_counted": visits_alone,
        "requests_per_s": round(result["requests"] / (result["duration_us"] / 1e6)),
        "errors": result["non_2xx"] + result["socket_errors"],
        "lost_visits": max(0, result["requests"] - result["non_2xx"] - counted_now),
        "p99_ms": round(result["p99_us"] / 1000, 2),
        "attacker_connections_opened": alone["attacker_connections_opened"]
        + seen["attacker_connections_opened"],
    }


def replica_catch_up(server: Server, replica: Replica, since: float) -> float:
    """Seconds from `since` (the load stopped) until a restore of the replica holds the
    server's exact count (re-read each time: visits in flight when wrk stopped still land)."""
    while replica.replicator.restored_total(replica.restore_to) != server.visits():
        if time.monotonic() - since > 120:
            raise RuntimeError(
                f"the replica has not caught up in 120 s:\n{replica.replicator.log()[-2000:]}"
            )
    return round(time.monotonic() - since, 2)


def replication_lag_round(server: Server, replica: Replica, load: Load) -> dict:
    """A counting run with the replica restored about once a second meanwhile (not in the
    throughput rounds: a restore costs CPU). Lag: how long the first visit missing from a
    restore had been counted when that restore began (0 if none was missing)."""
    timeline: list[tuple[float, int]] = []  # (time, the server's count)
    lags: list[float] = []
    peak_wal = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_wal
        last_restore = 0.0
        while not done.is_set():
            timeline.append((time.monotonic(), server.visits()))
            with contextlib.suppress(FileNotFoundError):
                peak_wal = max(peak_wal, (server.data_dir / "db.sqlite3-wal").stat().st_size)
            if time.monotonic() - last_restore >= 1:
                last_restore = time.monotonic()
                restored = replica.replicator.restored_total(replica.restore_to)
                if restored is not None:
                    missing = [at for at, count in timeline if count > restored]
                    lags.append(last_restore - missing[0] if missing else 0.0)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    wrk(server.url("/"), load)
    done.set()
    sampler.join()
    return {
        "lag_samples": len(lags),
        "lag_p50_s": round(statistics.median(lags), 2),
        "lag_max_s": round(max(lags), 2),
        "lag_round_catch_up_s": replica_catch_up(server, replica, time.monotonic()),
        "peak_wal_mb": round(peak_wal / 2**20, 2),
        "resnapshots": replica.replicator.resnapshots(),
        "errors_logged": replica.replicator.log().count("level=ERROR"),
    }


def restart_round(server: Server) -> dict:
    """Stop the server and start it again on its data: how long until ready, and what it kept."""
    total = server.visits()
    server.stop()
    ready_after = server.start().wait_ready().ready_after
    with contextlib.closing(sqlite3.connect(server.data_dir / "db.sqlite3")) as database:
        integrity = database.execute("PRAGMA integrity_check").fetchone()[0]
    return {
        "restart_with_data_s": ready_after,
        "integrity": integrity,
        "visits_after_restart": server.visits(),
        "visits_before_restart": total,
    }


def _step(created_by: str) -> str:
    """`RUN ...` / `COPY /venv` from an engine's history line, without build args and hashes."""
    step = re.sub(r"^.*?/bin/sh -c (#\(nop\) )?", "", created_by)
    step = re.sub(r"(file|dir):[0-9a-f]+ in ", "", step)
    return re.sub(r"\s+", " ", step)[:80]


def image_layers(image: str, base: str = "python:3.13-slim") -> list | None:
    """Layers the image adds on top of its base (the newest entries of its history); None
    without a container engine or without the image."""
    engine = next((e for e in ("podman", "docker") if shutil.which(e)), None)
    if engine is None or subprocess.run([engine, "image", "inspect", image],
                                        capture_output=True).returncode != 0:  # fmt: skip
        return None

    def history(name: str) -> list[dict]:
        command = [engine, "history", "--format", "json", name]
        return json.loads(subprocess.run(command, capture_output=True, text=True).stdout)

    own = history(image)[: -len(history(base))]
    return [
        {"step": _step(entry["CreatedBy"]), "bytes": int(entry["size"])}
        for entry in own
        if int(entry["size"])
    ]


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "cpu": re.search(r"model name\s*: (.+)", Path("/proc/cpuinfo").read_text())[1],
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
    }


def ratios(summary: dict[str, dict], hostile: dict) -> dict:
    """Throughput of one target to another's (by name), and of counting under hostile clients."""
    counting = summary["counting"]["requests_per_s"]
    return {
        "ratio_counting_to_no_database": round(
            counting / summary["no_database"]["requests_per_s"], 3
        ),
        "ratio_counting_to_no_database_new_connections": round(
            summary["counting_new"]["requests_per_s"]
            / summary["no_database_new"]["requests_per_s"],
            3,
        ),
        "ratio_hostile_to_clean_counting": round(hostile["requests_per_s"] / counting, 3),
        "ratio_full_to_normal": round(summary["full"]["requests_per_s"] / counting, 3),
        "ratio_counting_to_granian": round(counting / summary["granian"]["requests_per_s"], 3),
        "ratio_no_database_to_granian": round(
            summary["no_database"]["requests_per_s"]
            / summary["granian_no_database"]["requests_per_s"],
            3,
        ),
    }


def replication_summary(summary: dict[str, dict], runs: dict[str, list[dict]]) -> dict:
    """The replicated target's throughput to counting's, Litestream's CPU and its catch-ups."""
    replicated = runs["replicated"]
    return {
        "ratio_to_counting": round(
            summary["replicated"]["requests_per_s"] / summary["counting"]["requests_per_s"], 3
        ),
        "replicator_cpu_millicores": round(
            statistics.median(r["replicator_cpu_millicores"] for r in replicated)
        ),
        "catch_up_s": [r["replica_catch_up_s"] for r in replicated],
    }
