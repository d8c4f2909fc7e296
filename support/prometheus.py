"""A real Prometheus (Debian's `prometheus` package) beside the servers or the cluster, loading
the chart's alert rules, scraping targets from a file the caller rewrites as pods come and go,
and what it says: query results and firing alerts."""

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from support.clients import wait_for_text
from support.manifests import CHART, helm, parse
from support.servers import free_port


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def chart_rules(*values: str, namespace: str = "default") -> dict:
    """The chart's rules for release app-python, as Prometheus loads them (the PrometheusRule's
    spec)."""
    objs = parse(helm("template", "app-python", str(CHART), "-n", namespace,
                      "--set", "metrics.prometheusRule.enabled=true", *values).stdout)  # fmt: skip
    return objs[("PrometheusRule", "app-python")]["spec"]


class Prometheus:
    """One Prometheus process in `folder`, scraping every `interval` seconds and evaluating the
    rules as often."""

    def __init__(self, folder: Path, rules: dict, *, interval: int) -> None:
        self.folder = folder
        self.targets = folder / "targets.json"
        (folder / "rules.yaml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": f"{interval}s", "evaluation_interval": f"{interval}s"},
            "rule_files": [str(folder / "rules.yaml")],
            "scrape_configs": [{
                "job_name": "app-python",
                "file_sd_configs": [{"files": [str(self.targets)],
                                     "refresh_interval": f"{interval}s"}],
            }],
        }  # fmt: skip
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.targets_write({})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def targets_write(self, targets: dict[str, dict[str, str]]) -> None:
        """Scrape each `host:port` of `targets` with its labels (namespace, pod: what the
        ServiceMonitor's targets carry)."""
        groups = [{"targets": [address], "labels": labels} for address, labels in targets.items()]
        self.targets.write_text(json.dumps(groups))

    def start(self, binary: str) -> "Prometheus":
        with (self.folder / "prometheus.log").open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={self.folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for_text(self._ready, "ready", "Prometheus' /-/ready", timeout=60)
        return self

    def _ready(self) -> str:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                return "ready" if answer.status == 200 else str(answer.status)
        except OSError as error:
            return repr(error)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def _api(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}", timeout=10) as answer:
            return json.loads(answer.read())["data"]

    def query(self, promql: str) -> list[dict]:
        return self._api(f"query?{urllib.parse.urlencode({'query': promql})}")["result"]

    def firing(self, alert: str) -> list[dict[str, str]]:
        """The labels of each firing instance of `alert`."""
        return [
            found["labels"]
            for found in self._api("alerts")["alerts"]
            if found["labels"]["alertname"] == alert and found["state"] == "firing"
        ]

    def log(self) -> str:
        return (self.folder / "prometheus.log").read_text(errors="replace")
