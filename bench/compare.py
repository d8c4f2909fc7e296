"""Variants of the production server side by side, for a server change that `make bench`'s
targets cannot show: each variant is `manage.py serve` of this checkout or of another copy of
the app, with gunicorn arguments of its own. In alternating rounds (the order reversed every
other round, so the machine's noise hits every variant alike): wrk on `/` and on `/healthz`
(throughput, p50, p99, the server's CPU per request), then the hostile round of `make bench`
(bench/measure.py: slow, idle and slow-POST clients; the probes and visits answered meanwhile;
counting under wrk while they are held).

    python -m bench.compare --variant "shared accept" . "" \\
        --variant "gunicorn's accept" /tmp/app-without-it "" --out bench/results/X.json

prints the medians (and every round with --out) as JSON.
"""

import argparse
import json
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.measure import Load, hostile_round, machine, wrk, wrk_round
from support.servers import Server, collectstatic
from support.tools import ROOT

PATHS = ("/", "/healthz")


def hostile_summary(result: dict) -> dict:
    """The hostile round in a few numbers: the worst probe, and counting under the attack."""
    alone = result["alone"]
    return {
        "probes_ok": sum(alone[path]["ok"] for path in ("/healthz", "/readyz")),
        "probes_asked": sum(alone[path]["asked"] for path in ("/healthz", "/readyz")),
        "healthz_p99_ms": alone["/healthz"]["p99_ms"],
        "readyz_p99_ms": alone["/readyz"]["p99_ms"],
        "visit_p99_ms": alone["/"]["p99_ms"],
        "visits_ok": alone["/"]["ok"],
        "under_attack_requests_per_s": result["requests_per_s"],
        "under_attack_p99_ms": result["p99_ms"],
        "under_attack_errors": result["errors"],
        "under_attack_lost": result["lost_visits"],
    }


def median_of(runs: list[dict], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 2)


def compare(variants: list[tuple[str, Path, str]], *, rounds: int, load: Load, work: Path) -> dict:
    runs: dict[str, dict[str, list[dict]]] = {label: {} for label, _, _ in variants}
    with ExitStack() as stack:
        servers = {}
        for label, app, arguments in variants:
            name = f"v{len(servers)}"
            env = {"GUNICORN_CMD_ARGS": arguments}
            server = Server(work / name, work / f"{name}.log", env, app=app)
            stack.callback(server.stop)
            servers[label] = server.start().wait_ready()
        for server in servers.values():  # warm up: imports, connections, page cache
            for path in PATHS:
                wrk(server.url(path), Load(duration=1, connections=load.connections, threads=1))
        for number in range(rounds):
            order = list(servers) if number % 2 == 0 else list(servers)[::-1]
            for path in PATHS:
                for label in order:
                    run = wrk_round(servers[label], path, load) | {"round": number}
                    runs[label].setdefault(path, []).append(run)
                    print(f"round {number + 1}: {label} {path}: {json.dumps(run)}", flush=True)
            for label in order:
                run = hostile_summary(hostile_round(servers[label], load)) | {"round": number}
                runs[label].setdefault("hostile", []).append(run)
                print(f"round {number + 1}: {label} hostile: {json.dumps(run)}", flush=True)
    summary = {}
    for label, by_kind in runs.items():
        summary[label] = {
            path: {
                key: median_of(by_kind[path], key)
                for key in ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_request")
            }
            | {
                "requests_per_s_range": [r["requests_per_s"] for r in by_kind[path]],
                "p99_ms_range": [r["p99_ms"] for r in by_kind[path]],
                "errors": sum(r["errors"] for r in by_kind[path]),
                "lost": sum(r.get("lost", 0) for r in by_kind[path]),
            }
            for path in PATHS
        } | {
            "hostile": {
                key: median_of(by_kind["hostile"], key)
                for key in by_kind["hostile"][0]
                if key != "round"
            }
            | {"healthz_p99_ms_range": [r["healthz_p99_ms"] for r in by_kind["hostile"]]},
            "load_average": [
                min(r["load_average"] for path in PATHS for r in by_kind[path]),
                max(r["load_average"] for path in PATHS for r in by_kind[path]),
            ],
        }
    return {"summary": summary, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant",
        nargs=3,
        action="append",
        required=True,
        metavar=("LABEL", "APP", "GUNICORN_ARGS"),
        help="a variant: its label, the app's directory (. for this checkout), gunicorn args",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--out", type=Path, help="write the whole report (every round) here")
    args = parser.parse_args()
    collectstatic()
    variants = [(label, (ROOT / app).resolve(), extra) for label, app, extra in args.variant]
    for _, app, _ in variants:
        if app != ROOT and not (app / "staticfiles").exists():
            (app / "staticfiles").symlink_to(ROOT / "staticfiles")  # this checkout's, collected
    load = Load(duration=args.duration, connections=args.connections, threads=args.threads)
    with tempfile.TemporaryDirectory(prefix="app-python-compare-") as work:
        report = compare(variants, rounds=args.rounds, load=load, work=Path(work))
    report["command"] = " ".join(["python -m bench.compare", *sys.argv[1:]])
    report["machine"] = machine()
    report["variants"] = {label: [str(app), extra] for label, app, extra in variants}
    print(json.dumps(report["summary"], indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
