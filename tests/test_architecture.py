"""The tree's own rules: `make lint`'s import contracts (pyproject.toml) hold and catch what they
forbid, and every test module has a name of its own."""

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from support.tools import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
    )


@pytest.fixture
def tree(tmp_path) -> Path:
    """A copy of the packages the contracts are about, and of their configuration."""
    for package in ("counter", "visits_site"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("tests"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_import_contracts_hold(tree):
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        (
            "counter/store/files.py",
            "from counter.store import visits",
            "the store is a stack: each module imports only those below it",
        ),
        (
            "counter/views.py",
            "from visits_site import worker",
            "the app never imports the server, nor gevent but through counter.concurrency",
        ),
        ("counter/hashers.py", "import gevent", "the app never imports the server"),
        (
            "visits_site/worker.py",
            "from counter.store import database",
            "the server never imports the store",
        ),
    ],
    ids=["store-upwards", "app-to-server", "app-to-gevent", "server-to-store"],
)
def test_a_planted_import_breaks_its_contract(tree, module, planted, contract):
    path = tree / module
    path.write_text(f"{planted}  # noqa\n{path.read_text()}")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout
    assert f"{contract}" in result.stdout
    assert "1 broken" in result.stdout, result.stdout


def test_test_modules_have_names_of_their_own():
    """A name says which module it is wherever it shows (a test id, a traceback, the docs)."""
    modules = [
        path
        for path in ROOT.glob("**/test_*.py")
        if not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
    ]
    names = Counter(path.name for path in modules)
    assert len(names) > 20, names
    assert [name for name, count in names.items() if count > 1] == []
