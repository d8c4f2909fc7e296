"""`make bench` (`python -m bench.run`): the production server under wrk on 127.0.0.1, with
A B A B rounds.

Targets, each on a server started as the image starts it (`manage.py serve`, gunicorn.conf.py):
counting `GET /`, the no-database `GET /healthz` of the same server, the same counting page with
VISITS_SQLITE_SYNCHRONOUS=FULL, the counting page with Litestream replicating its database to a
file replica (when scripts/litestream.sh has built it), and a naive file counter
(bench/naive_app.py) under the same gunicorn settings. Writes bench/results/<date>.json,
bench/results/<date>.svg and the results section of docs/performance.md.
"""

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from support import hostile
from support.litestream import Replicator
from support.login_flood import login_flood
from support.servers import Server, collectstatic
from support.tools import APP_VERSION, ROOT, VERSIONS, litestream_binary

RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
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


def counted(server: Server) -> int:
    if "naive" in server.data_dir.name:  # the naive file may be mid-write: read until it parses
        for _ in range(100):
            with contextlib.suppress(ValueError, FileNotFoundError):
                return int((server.data_dir / "visits").read_text())
            time.sleep(0.01)
        return 0
    return server.visits()


def wrk(url: str, *, duration: int, connections: int, threads: int) -> dict:
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
         "-s", str(ROOT / "bench" / "summary.lua"), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def _step(created_by: str) -> str:
    """`RUN ...` / `COPY /venv` from an engine's history line, without build args and hashes."""
    step = re.sub(r"^.*?/bin/sh -c (#\(nop\) )?", "", created_by)
    step = re.sub(r"(file|dir):[0-9a-f]+ in ", "", step)
    return re.sub(r"\s+", " ", step)[:80]


def image_layers(engine: str | None, image: str, base: str = "python:3.13-slim") -> list | None:
    """Layers the image adds on top of its base (the newest entries of its history)."""
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


def hostile_round(server: Server, args: argparse.Namespace) -> dict:
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

    before = counted(server)
    alone = attack(3 * args.duration)
    visits_alone = counted(server) - before
    seen: dict = {}
    background = threading.Thread(
        target=lambda: seen.update(attack(args.duration + 6, probe=False))
    )
    background.start()
    time.sleep(3)  # every attacker connected
    before = counted(server)
    result = wrk(
        server.url("/"), duration=args.duration, connections=args.connections, threads=args.threads
    )
    counted_now = counted(server) - before
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


# The chart's sidecar: Litestream's defaults, a sync (WAL -> LTX) and a shipment every second.
REPLICATION_INTERVAL = "1s"
REPLICATED = "GET / (counting, Litestream replicating)"


def replica_catch_up(server: Server, replicator: Replicator, since: float, out: Path) -> float:
    """Seconds from `since` (the load stopped) until a restore of the replica holds the
    server's exact count (re-read each time: visits in flight when wrk stopped still land)."""
    while replicator.restored_total(out) != counted(server):
        if time.monotonic() - since > 120:
            raise RuntimeError(
                f"the replica has not caught up in 120 s:\n{replicator.log()[-2000:]}"
            )
    return round(time.monotonic() - since, 2)


def replication_lag_round(
    server: Server, replicator: Replicator, args: argparse.Namespace, out: Path
) -> dict:
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
            timeline.append((time.monotonic(), counted(server)))
            with contextlib.suppress(FileNotFoundError):
                peak_wal = max(peak_wal, (server.data_dir / "db.sqlite3-wal").stat().st_size)
            if time.monotonic() - last_restore >= 1:
                last_restore = time.monotonic()
                restored = replicator.restored_total(out)
                if restored is not None:
                    missing = [at for at, count in timeline if count > restored]
                    lags.append(last_restore - missing[0] if missing else 0.0)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    wrk(server.url("/"), duration=args.duration, connections=args.connections, threads=args.threads)
    done.set()
    sampler.join()
    return {
        "lag_samples": len(lags),
        "lag_p50_s": round(statistics.median(lags), 2),
        "lag_max_s": round(max(lags), 2),
        "lag_round_catch_up_s": replica_catch_up(server, replicator, time.monotonic(), out),
        "peak_wal_mb": round(peak_wal / 2**20, 2),
    }


def chart_svg(rows: list[tuple[str, float]]) -> str:
    width, bar_height, label_width = 640, 26, 230
    peak = max(value for _, value in rows) or 1
    height = len(rows) * (bar_height + 10) + 10
    bars = []
    for index, (label, value) in enumerate(rows):
        y = 10 + index * (bar_height + 10)
        length = (width - label_width - 80) * value / peak
        bars.append(
            f'<text x="{label_width - 8}" y="{y + 18}" text-anchor="end">{label}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}"'
            f' fill="#2f6fdf"/><text x="{label_width + length + 6:.1f}" y="{y + 18}">'
            f"{value:,.0f} req/s</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' font-family="sans-serif" font-size="13">{"".join(bars)}</svg>\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="A B A B rounds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/performance.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    collectstatic()
    naive = [sys.executable, "-m", "gunicorn", "--config", "bench/naive.gunicorn.conf.py",
             "bench.naive_app:application"]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="app-python-bench-"))
    (work / "naive").mkdir()
    servers = {
        "site": Server(work / "site", work / "site.log", {}),
        "site-full": Server(
            work / "site-full", work / "site-full.log", {"VISITS_SQLITE_SYNCHRONOUS": "FULL"}
        ),
        "naive": Server(
            work / "naive", work / "naive.log", {}, command=naive, ready_path="/healthz"
        ),
    }
    targets = [  # (label, server, path, counts visits)
        ("GET / (counting)", "site", "/", True),
        ("GET /healthz (no database)", "site", "/healthz", False),
        ("GET / naive file counter", "naive", "/", True),
        ("GET / synchronous=FULL", "site-full", "/", True),
    ]
    facts: dict = {}
    litestream = litestream_binary()
    replicator = facts["replication"] = None
    if litestream is None:
        print("litestream is not built (bash scripts/litestream.sh): no replication round")
    else:
        servers["site-replicated"] = Server(work / "site-replicated", work / "site-r.log", {})
        targets.insert(1, (REPLICATED, "site-replicated", "/", True))
        replicator = Replicator(
            litestream,
            work / "site-replicated" / "db.sqlite3",
            work / "replica",
            work / "litestream.log",
            interval=REPLICATION_INTERVAL,
        )
    restored = work / "restored.sqlite3"
    runs: dict[str, list[dict]] = {label: [] for label, *_ in targets}
    try:
        facts["cold_start_s"] = servers["site"].start().wait_ready().ready_after
        servers["site-full"].start().wait_ready()
        servers["naive"].start().wait_ready()
        if replicator:
            servers["site-replicated"].start().wait_ready()
            replicator.start()
        for _label, name, path, _ in targets:  # warm up: imports, connections, page cache
            wrk(servers[name].url(path), duration=1, connections=args.connections, threads=1)
        peak = {"rss": 0}
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak["rss"] = max(peak["rss"], rss_bytes(servers["site"].process.pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        for round_number in range(args.rounds):
            for label, name, path, counts in targets:
                server = servers[name]
                before = counted(server) if counts else 0
                cpu_before = cpu_seconds(server.process.pid)
                if label == REPLICATED:
                    replicator_cpu_before = cpu_seconds(replicator.process.pid)
                result = wrk(
                    server.url(path),
                    duration=args.duration,
                    connections=args.connections,
                    threads=args.threads,
                )
                stopped = time.monotonic()
                result["server_cpu_us_per_request"] = round(
                    (cpu_seconds(server.process.pid) - cpu_before) / result["requests"] * 1e6
                )
                if label == REPLICATED:
                    # Millicores, like a container's CPU request and limit.
                    result["replicator_cpu_millicores"] = round(
                        (cpu_seconds(replicator.process.pid) - replicator_cpu_before)
                        / (result["duration_us"] / 1e6)
                        * 1000
                    )
                    result["replica_catch_up_s"] = replica_catch_up(
                        server, replicator, stopped, restored
                    )
                if counts:
                    completed = result["requests"] - result["non_2xx"]
                    # The naive counter can go back to 0 (a torn read parses as no count).
                    visits = max(0, counted(server) - before)
                    result["lost"] = max(0, completed - visits)
                result["round"] = round_number
                runs[label].append(result)
                print(f"round {round_number + 1}: {label}: {json.dumps(result)}", flush=True)
        sampling.set()
        sampler.join()
        if replicator:
            facts["replication"] = replication_lag_round(
                servers["site-replicated"], replicator, args, restored
            )
            facts["replication"]["resnapshots"] = replicator.resnapshots()
            facts["replication"]["errors_logged"] = replicator.log().count("level=ERROR")
            facts["replication"]["interval"] = REPLICATION_INTERVAL
            facts["replication"]["litestream"] = VERSIONS["LITESTREAM_VERSION"]
        facts["hostile"] = hostile_round(servers["site"], args)
        facts["login_flood"] = login_flood(servers["site"].url(""), loops=30, seconds=args.duration)
        facts["login_flood_new_usernames"] = login_flood(
            servers["site"].url(""), loops=30, seconds=args.duration, new_usernames=True
        )
        facts["peak_rss_mb"] = round(peak["rss"] / 2**20, 1)
        total = counted(servers["site"])
        servers["site"].stop()
        facts["restart_with_data_s"] = servers["site"].start().wait_ready().ready_after
        with contextlib.closing(
            sqlite3.connect(servers["site"].data_dir / "db.sqlite3")
        ) as database:
            facts["integrity"] = database.execute("PRAGMA integrity_check").fetchone()[0]
        facts["visits_after_restart"] = counted(servers["site"])
        facts["visits_before_restart"] = total
    finally:
        if replicator:
            replicator.stop()
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    summary = {}
    for label, results in runs.items():
        rps = [r["requests"] / (r["duration_us"] / 1e6) for r in results]
        summary[label] = {
            "requests_per_s": round(statistics.median(rps)),
            "p50_ms": round(statistics.median(r["p50_us"] for r in results) / 1000, 2),
            "p99_ms": round(statistics.median(r["p99_us"] for r in results) / 1000, 2),
            "errors": sum(r["non_2xx"] + r["socket_errors"] for r in results),
            "lost_visits": sum(r.get("lost", 0) for r in results) if "lost" in results[0] else None,
            "server_cpu_us_per_request": round(
                statistics.median(r["server_cpu_us_per_request"] for r in results)
            ),
        }
    counting = summary["GET / (counting)"]["requests_per_s"]
    facts["ratio_counting_to_no_database"] = round(
        counting / summary["GET /healthz (no database)"]["requests_per_s"], 3
    )
    facts["ratio_hostile_to_clean_counting"] = round(
        facts["hostile"]["requests_per_s"] / counting, 3
    )
    facts["ratio_full_to_normal"] = round(
        summary["GET / synchronous=FULL"]["requests_per_s"] / counting, 3
    )
    if REPLICATED in runs:
        replicated = runs[REPLICATED]
        facts["replication"] |= {
            "ratio_to_counting": round(summary[REPLICATED]["requests_per_s"] / counting, 3),
            "replicator_cpu_millicores": round(
                statistics.median(r["replicator_cpu_millicores"] for r in replicated)
            ),
            "catch_up_s": [r["replica_catch_up_s"] for r in replicated],
        }
    engine = next((e for e in ("podman", "docker") if shutil.which(e)), None)
    facts["image_layers"] = image_layers(engine, f"app-python:{APP_VERSION}")
    machine = {
        "cores": os.cpu_count(),
        "cpu": re.search(r"model name\s*: (.+)", Path("/proc/cpuinfo").read_text())[1],
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1],
    }
    command = (
        f"make bench  (python -m bench.run --duration {args.duration} --rounds {args.rounds}"
        f" --connections {args.connections} --threads {args.threads})"
    )
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"date": stamp, "command": command, "machine": machine, "summary": summary,
              "facts": facts, "runs": runs}  # fmt: skip
    (RESULTS / f"{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    chart = RESULTS / f"{stamp}.svg"
    chart.write_text(chart_svg([(label, s["requests_per_s"]) for label, s in summary.items()]))
    print(json.dumps({"summary": summary, "facts": facts}, indent=2))
    if not args.no_doc:
        write_doc(report, chart)


def replication_line(replication: dict | None) -> str:
    if replication is None:
        return "- Litestream replication: not measured (not built: `bash scripts/litestream.sh`)"
    catch_up = replication["catch_up_s"] + [replication["lag_round_catch_up_s"]]
    catch_up_median = round(statistics.median(catch_up), 2)
    return (
        f"- Litestream {replication['litestream']} replicating to a file replica (sync and ship"
        f" every {replication['interval']}, as the chart's sidecar): counting"
        f" **{replication['ratio_to_counting']}** of counting without it; Litestream's own CPU"
        f" {replication['replicator_cpu_millicores']} millicores; after the load stopped, a"
        f" restore of the replica held the exact count within {max(catch_up)} s (median"
        f" {catch_up_median} s, {len(catch_up)} runs); during load the oldest visit"
        f" missing from a restore was {replication['lag_p50_s']} s old (median of"
        f" {replication['lag_samples']} restores), {replication['lag_max_s']} s at most; WAL at"
        f" most {replication['peak_wal_mb']} MB; {replication['resnapshots']} full snapshots"
        f" forced by a WAL changed behind Litestream's back, {replication['errors_logged']}"
        " errors logged"
    )


def write_doc(report: dict, chart: Path) -> None:
    machine, facts = report["machine"], report["facts"]
    hostile = facts["hostile"]
    duration = int(re.search(r"--duration (\d+)", report["command"])[1])
    lines = [
        START,
        f"Run {report['date']}, command: `{report['command']}`.",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), Linux {machine['kernel']},"
        f" Python {machine['python']}, SQLite {machine['sqlite']}, {machine['wrk']};"
        " server and load on the same cores.",
        "",
        "| endpoint | req/s (median) | p50 ms | p99 ms | errors | lost visits |"
        " server CPU us/request |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, s in report["summary"].items():
        lost = "n/a" if s["lost_visits"] is None else s["lost_visits"]
        lines.append(
            f"| {label} | {s['requests_per_s']:,} | {s['p50_ms']} | {s['p99_ms']} |"
            f" {s['errors']} | {lost} | {s['server_cpu_us_per_request']} |"
        )
    layers = facts.get("image_layers")
    layer_text = (
        "; ".join(f"{layer['bytes'] / 1e6:.1f} MB: `{layer['step']}`" for layer in layers)
        if layers
        else "not measured (no image built)"
    )
    lines += [
        "",
        f"- counting / no-database throughput: **{facts['ratio_counting_to_no_database']}**",
        f"- synchronous=FULL / NORMAL throughput: {facts['ratio_full_to_normal']}",
        f"- cold start to ready on an empty volume: {facts['cold_start_s']:.2f} s;"
        f" restart with data: {facts['restart_with_data_s']:.2f} s"
        f" ({facts['visits_before_restart']} visits before, {facts['visits_after_restart']}"
        f" after, integrity {facts['integrity']})",
        f"- 200 slowloris, 200 idle and 20 slow-POST connections held for {3 * duration} s:"
        + "".join(
            f" `{path}` {seen['ok']} of {seen['asked']} answered 200 (2 s timeout), p50"
            f" {seen['p50_ms']} ms, p99 {seen['p99_ms']} ms, max {seen['max_ms']} ms;"
            for path, seen in hostile["alone"].items()
        )
        + f" {hostile['alone_visits_counted']} visits counted",
        f"- counting under wrk while those connections are held: {hostile['requests_per_s']:,}"
        f" req/s, **{facts['ratio_hostile_to_clean_counting']}** of clean counting;"
        f" {hostile['errors']} errors, {hostile['lost_visits']} lost",
        *(
            f"- 30 parallel wrong-password loops{label}: `/healthz` {flood['healthz']['p50_ms']}"
            f" ms p50, {flood['healthz']['p99_ms']} ms p99, {flood['healthz']['failed']}"
            f" failed; login answers {flood['logins']}"
            for label, flood in (
                ("", facts["login_flood"]),
                (", a new username each try", facts["login_flood_new_usernames"]),
            )
        ),
        replication_line(facts["replication"]),
        f"- peak RSS of the whole server (master + workers) under load: {facts['peak_rss_mb']} MB",
        f"- image layers on top of the base: {layer_text}",
        "",
        f"![throughput per endpoint](../bench/results/{chart.name})",
        END,
    ]
    text = DOC.read_text()
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    DOC.write_text(before + "\n".join(lines) + after)


if __name__ == "__main__":
    main()
