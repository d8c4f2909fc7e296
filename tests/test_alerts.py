"""The chart's alert rules (metrics.prometheusRule), proven with promtool: `promtool check
rules` on their render, and `promtool test rules` (tests/alerts/app-python.test.yaml) with series
that fire each alert and series that do not. Each alert has its runbook line in
docs/runbooks.md, "When an alert fires"."""

import re
import shutil
import subprocess

import pytest
import yaml

from support.manifests import CHART, helm, parse
from support.tools import ROOT, helm_binary

pytestmark = pytest.mark.manifests

TESTS = ROOT / "tests" / "alerts" / "app-python.test.yaml"
# Backup and its verification on: every rule the chart can render.
EVERY_RULE = [
    "--set", "metrics.prometheusRule.enabled=true",
    "--set", "backup.enabled=true",
    "--set", "backup.s3.bucket=backups",
    "--set", "backup.credentials.secretName=backup-credentials",
    "--set", "backup.verify.enabled=true",
]  # fmt: skip


def rendered(*values: str) -> dict[tuple[str, str], dict]:
    if helm_binary() is None:
        pytest.skip("helm is not installed: `make helm` builds it (scripts/helm.sh)")
    return parse(helm("template", "app-python", str(CHART), *values).stdout)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed: apt-get install prometheus (Debian) has it")
    return found


def rules(*values: str) -> dict:
    """The rules file Prometheus would load: the PrometheusRule's spec."""
    return rendered(*values)[("PrometheusRule", "app-python")]["spec"]


def alert_names(spec: dict) -> list[str]:
    return [rule["alert"] for group in spec["groups"] for rule in group["rules"]]


def test_the_rules_are_off_by_default_and_backups_only_with_backup():
    assert not [kind for kind, _ in rendered() if kind == "PrometheusRule"]
    without_backup = alert_names(rules("--set", "metrics.prometheusRule.enabled=true"))
    assert not [name for name in without_backup if "Backup" in name]
    every = alert_names(rules(*EVERY_RULE))
    assert len(every) == len(set(every))
    assert {"AppPythonBackupBehind", "AppPythonBackupVerificationFailed"} <= set(every)


def test_promtool_check_rules_accepts_the_render(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules(*EVERY_RULE)))
    result = subprocess.run([promtool(), "check", "rules", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names(rules(*EVERY_RULE)))} rules found" in result.stdout


def test_every_alert_fires_on_its_series_and_not_on_others(tmp_path):
    """promtool compares annotations too: the tests leave them out (they are templates of the
    labels checked here), and compare the rules' expressions, durations and labels as rendered."""
    spec = rules(*EVERY_RULE)
    for group in spec["groups"]:
        for rule in group["rules"]:
            del rule["annotations"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = subprocess.run(
        [promtool(), "test", "rules", TESTS.name], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr

    cases = [case for test in yaml.safe_load(TESTS.read_text())["tests"]
             for case in test["alert_rule_test"]]  # fmt: skip
    for name in alert_names(spec):
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name} never fires"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), (
            f"{name} has no series that must not fire it"
        )


def test_every_alert_has_a_runbook_line():
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    section = runbooks.split("\n## When an alert fires\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(AppPython\w+)` \|", section, re.M))
    assert documented == set(alert_names(rules(*EVERY_RULE)))
