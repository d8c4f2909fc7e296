"""The Dockerfiles against hadolint and checkov: no engine needed."""

import json
import subprocess

import pytest

from support.tools import ROOT


@pytest.mark.parametrize(
    "dockerfile", ["Dockerfile", "scripts/litestream.Dockerfile", "e2e/moto/Dockerfile"]
)
def test_dockerfile_passes_hadolint_and_checkov(checker, dockerfile):
    subprocess.run([checker("hadolint"), dockerfile], cwd=ROOT, check=True)
    result = subprocess.run(
        [checker("checkov"), "-f", dockerfile, "--framework", "dockerfile", "--skip-download",
         "--compact", "--quiet", "--output", "json"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    summary = json.loads(result.stdout)["summary"]
    assert summary["failed"] == 0, result.stdout
    assert summary["passed"] > 5  # checkov did check it
