"""How `make bench` reports what bench/measure.py measured: bench/results/<date>.json, a chart
of throughput per target (<date>.svg) and the results section of docs/performance.md. Nothing
here measures: the doc shows the report's figures, and a few read off them (the median and
maximum of the replica's catch-ups), so a JSON file alone can be rendered again."""

import json
import re
import statistics
from pathlib import Path

import yaml

from support.tools import ROOT

RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def write_results(report: dict) -> Path:
    """The report as bench/results/<date>.json, and its chart beside it (returned)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{report['date']}.json").write_text(json.dumps(report, indent=2) + "\n")
    chart = RESULTS / f"{report['date']}.svg"
    rows = [(label, s["requests_per_s"]) for label, s in report["summary"].items()]
    chart.write_text(chart_svg(rows))
    return chart


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
        "- the same, a new connection for each request:"
        f" {facts['ratio_counting_to_no_database_new_connections']}",
        f"- synchronous=FULL / NORMAL throughput: {facts['ratio_full_to_normal']}",
        *granian_lines(report),
        *scrape_lines(report),
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
        *latency_lines(facts.get("latency")),
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


def granian_lines(report: dict) -> list[str]:
    """Ours against granian on the same app (results written before that target had none)."""
    summary, facts = report["summary"], report["facts"]
    if "ratio_counting_to_granian" not in facts:
        return []
    ours = summary["GET /healthz (no database)"]["server_cpu_us_per_request"]
    theirs = summary["GET /healthz, granian"]["server_cpu_us_per_request"]
    return [
        "- against granian (the same app, the same worker count, its access log on):"
        f" counting **{facts['ratio_counting_to_granian']}** of its throughput, `/healthz`"
        f" {facts['ratio_no_database_to_granian']}; server CPU per `/healthz` request {ours}"
        f" against {theirs} us"
    ]


def scrape_lines(report: dict) -> list[str]:
    """What a Prometheus scrape costs the pod, at the chart's ServiceMonitor interval
    (docs/metrics.md links here)."""
    scrape = report["summary"].get("GET /metrics (a scrape)")
    if scrape is None:
        return []
    values = yaml.safe_load((ROOT / "k8s" / "chart" / "values.yaml").read_text())
    interval = values["metrics"]["serviceMonitor"]["interval"]
    seconds = int(re.fullmatch(r"(\d+)s", interval)[1])
    share = scrape["server_cpu_us_per_request"] / (seconds * 1e6) * 100
    return [
        f"- a scrape of `/metrics` under wrk: {scrape['server_cpu_us_per_request']:,} us of the"
        f" server's CPU; at one every {interval} (the chart's `metrics.serviceMonitor.interval`),"
        f" {share:.3f} % of a core"
    ]


def latency_lines(latency: dict | None) -> list[str]:
    """bench/latency.py's round: this server beside gunicorn's sync workers on the same app."""
    if latency is None:  # results written before the round existed
        return []
    lines = ["- beside gunicorn's sync workers, same app, same worker count (bench/latency.py):"]
    for count in (1, 2):
        for path in ("/", "/healthz"):
            if f"gevent-{count} {path}" not in latency["summary"]:
                continue  # results written when the round ran 2 workers only
            ours = latency["summary"][f"gevent-{count} {path}"]
            sync = latency["summary"][f"sync-{count} {path}"]
            against = latency["against_sync"][f"{count} workers {path}"]
            load = ours.get("load_average")
            lines.append(
                f"  {count} worker{'s' if count > 1 else ''}, `{path}`:"
                f" {ours['requests_per_s']:,} against {sync['requests_per_s']:,} req/s"
                f" ({against['throughput']}), p50 {ours['p50_ms']} against {sync['p50_ms']} ms,"
                f" p99 {ours['p99_ms']} against {sync['p99_ms']} ms ({against['p99']});"
                f" at half the saturating rate ({ours['moderate_rate']:,}/s, open loop) p99"
                f" {ours['moderate_p99_ms']} against {sync['moderate_p99_ms']} ms, the server"
                f" keeping {ours['moderate_server_cores']} against"
                f" {sync['moderate_server_cores']} cores busy;"
                f" {ours['errors'] + ours['moderate_errors']} errors, {ours['lost']} lost"
                + (f"; load average {load[0]} to {load[1]}" if load else "")
            )
    return lines
