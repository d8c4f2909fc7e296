"""k8s/chart/README.md, the chart's reference: a row for every value of values.yaml, and exactly
what the generator (`make chart-readme`) makes of values.yaml's comments."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from support.tools import ROOT

CHART = ROOT / "k8s" / "chart"
README = CHART / "README.md"
GENERATE = ["bash", str(ROOT / "scripts" / "chart-readme.sh")]


def leaf_keys(value: object, path: str = "") -> list[str]:
    """The keys of every leaf: a scalar, an empty map or list, a list of scalars (one row, as a
    whole); a list of maps is walked item by item, `key[0].name`."""
    if isinstance(value, dict) and value:
        return [
            leaf
            for key, item in value.items()
            for leaf in leaf_keys(item, f"{path}.{key}" if path else key)
        ]
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        return [
            leaf for index, item in enumerate(value) for leaf in leaf_keys(item, f"{path}[{index}]")
        ]
    return [path]


def test_every_value_has_a_row_with_its_default_in_the_chart_readme():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    leaves = leaf_keys(values)
    assert len(leaves) >= 60, leaves
    rows = dict(re.findall(r"^\| `([^`]+)` +\| (.+?) +\| `.*` +\|$", README.read_text(), re.M))
    missing = [key for key in leaves if key not in rows]
    assert not missing, f"no row in k8s/chart/README.md for {missing}: `make chart-readme`"
    assert not rows.keys() - set(leaves), "rows for values that are gone: `make chart-readme`"
    assert all(description.strip() for description in rows.values())
    assert "| `replicaCount` " in README.read_text() and "| `3` " in README.read_text()


@pytest.fixture
def generator() -> Path:
    """Where scripts/chart-readme.sh installed the generator (`.ci/run` installs it)."""
    path = subprocess.run([*GENERATE, "path"], capture_output=True, text=True, check=True)
    generator = Path(path.stdout.strip())
    if not generator.exists():
        pytest.skip(
            "readme-generator-for-helm is not installed: `bash scripts/chart-readme.sh install`"
            " installs it from npm (Debian: apt-get install nodejs npm)"
        )
    return generator


def test_the_chart_readme_is_what_the_generator_makes_of_values_yaml(tmp_path, generator):
    copy = tmp_path / "README.md"
    shutil.copy(README, copy)
    done = subprocess.run([*GENERATE, str(copy)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert copy.read_text() == README.read_text(), (
        "k8s/chart/README.md is stale: `make chart-readme`"
    )


def test_the_generator_refuses_a_value_without_a_description(tmp_path, generator):
    """What keeps the README complete when a value is added: the generator fails, naming it."""
    values = tmp_path / "values.yaml"
    values.write_text((CHART / "values.yaml").read_text() + "newValue: 1\n")
    copy = tmp_path / "README.md"
    shutil.copy(README, copy)
    done = subprocess.run(
        [str(generator), "--values", str(values), "--readme", str(copy)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "Missing metadata for key: newValue" in done.stdout
    assert copy.read_text() == README.read_text()
