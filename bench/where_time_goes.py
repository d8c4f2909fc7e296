"""Where a `/healthz` request's CPU goes, ours against granian's, on the same app with two workers
each (docs/performance-history.md, "granian, the reference"): wrk `-t2 -c32` on `/healthz` while
py-spy samples every worker. py-spy sees only the thread holding the interpreter (`--gil`): what
runs without it (granian's Rust threads parse and write there, the kernel sends and receives) is the
difference between the whole process tree's CPU per request, read from /proc, and the sum of the
parts. Each sample goes to the part named by the first frame, from the leaf up, that names one
(PARTS).

    python -m bench.where_time_goes [--runs 2] [--duration 8]

Needs py-spy (`pip install py-spy`, or PY_SPY=/path/to/py-spy), and root to attach to the
workers; writes bench/results/<date>-where-time-goes.json.
"""

import argparse
import collections
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import Load, cpu_seconds, machine, wrk
from bench.targets import Granian
from support.servers import Server, collectstatic
from support.tools import ROOT

RATE = 250  # samples per second and thread
PARTS = [  # (part, substrings of a frame that put a sample in it)
    ("the access log", ("gunicorn/glogging.py", "logging/")),
    ("our middleware and views, the body guard", ("counter/", "visits_site/body_guard.py")),
    ("Django, whitenoise", ("django/", "whitenoise/")),
    ("parsing the request", ("gunicorn/http/",)),
    ("the worker, its event loop, its sockets", ("gunicorn/", "gevent/", "visits_site/worker")),
    ("granian's WSGI glue, in Python", ("granian/",)),
]
SERVERS = {"ours (gunicorn, gevent)": Server, "granian": Granian}


def part_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for part, keys in PARTS:
            if any(key in frame for key in keys):
                return part
    return "other"


def samples_by_part(raw: Path) -> collections.Counter:
    """py-spy's raw output: one line per stack, its frames joined by `;`, then its count."""
    counts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            counts[part_of(stack.split(";"))] += int(count)
    return counts


def profile_run(kind: type[Server], work: Path, load: Load, py_spy: str) -> dict:
    server = kind(work / "data", work / "server.log", {})
    server.start().wait_ready()
    try:
        wrk(server.url("/healthz"), Load(2, load.connections, 1))  # warm up
        raw = work / "py-spy.txt"
        # py-spy's window encloses wrk's: idle workers hold the interpreter for next to nothing.
        spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(server.process.pid), "--subprocesses", "--gil",
             "--nonblocking", "--rate", str(RATE), "--duration", str(load.duration + 2),
             "--format", "raw", "-o", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1)  # py-spy attaches to every worker
        cpu = cpu_seconds(server.process.pid)
        result = wrk(server.url("/healthz"), load)
        cpu = cpu_seconds(server.process.pid) - cpu
        spy.wait()
    finally:
        server.stop()
    requests = result["requests"]
    us_per_sample = 1e6 / RATE / requests
    parts = samples_by_part(raw)
    return {
        "requests_per_s": round(requests / (result["duration_us"] / 1e6)),
        "cpu_us_per_request": round(cpu / requests * 1e6),
        "sampled_us_per_request": round(sum(parts.values()) * us_per_sample),
        "parts_us_per_request": {
            part: round(count * us_per_sample) for part, count in parts.most_common()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per server, alternating")
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per run")
    args = parser.parse_args()
    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy", path=Path(sys.executable).parent)
    py_spy = py_spy or shutil.which("py-spy")
    if py_spy is None:
        sys.exit("py-spy not found: `pip install py-spy`, or PY_SPY=/path/to/py-spy")
    collectstatic()
    load = Load(duration=args.duration, connections=32, threads=2)
    runs: dict[str, list[dict]] = {name: [] for name in SERVERS}
    for number in range(args.runs):
        for name, kind in SERVERS.items():
            with tempfile.TemporaryDirectory(prefix="app-python-profile-") as work:
                run = profile_run(kind, Path(work), load, py_spy)
            runs[name].append(run)
            print(f"run {number + 1}: {name}: {json.dumps(run)}", flush=True)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    report = {
        "date": date,
        "command": " ".join(["python -m bench.where_time_goes", *sys.argv[1:]]),
        "machine": machine(),
        "load": vars(load) | {"path": "/healthz", "workers": 2, "py_spy_rate": RATE},
        "runs": runs,
    }
    out = ROOT / "bench" / "results" / f"{date}-where-time-goes.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
