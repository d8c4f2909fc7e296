"""The Dockerfile against hadolint and checkov: no engine needed."""

import json
import subprocess

from tests.conftest import ROOT


def test_dockerfile_passes_hadolint_and_checkov(checker):
    subprocess.run([checker("hadolint"), "Dockerfile"], cwd=ROOT, check=True)
    result = subprocess.run(
        [checker("checkov"), "-f", "Dockerfile", "--framework", "dockerfile", "--skip-download",
         "--compact", "--quiet", "--output", "json"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    summary = json.loads(result.stdout)["summary"]
    assert summary["failed"] == 0, result.stdout
    assert summary["passed"] > 50
