"""The lock files pin what the requirements files ask for: a changed requirement with a stale
lock would install the old version silently (`make lock` re-pins)."""

import re

import pytest

from support.tools import ROOT

PIN = re.compile(r"^([A-Za-z0-9_.\[\]-]+)==([^\s\\;]+)", re.M)


def pins(text: str) -> dict[str, str]:
    return {
        re.sub(r"\[.*\]", "", name).lower().replace("_", "-").replace(".", "-"): version
        for name, version in PIN.findall(text)
    }


@pytest.mark.parametrize(
    "name",
    ["requirements", "requirements-dev", "requirements-checks", "e2e/moto/requirements"],
)
def test_every_requirement_is_locked_at_its_version_with_hashes(name):
    wanted = pins((ROOT / f"{name}.txt").read_text())
    if name == "requirements-dev":
        wanted |= pins((ROOT / "requirements.txt").read_text())
    lock = (ROOT / f"{name}.lock").read_text()
    locked = pins(lock)
    for package, version in wanted.items():
        assert locked.get(package) == version, f"{package}=={version} is not in {name}.lock"
    for block in re.split(r"\n(?=\S)", lock.split("\n", 6)[-1]):
        if "==" in block:
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_image_and_ci_install_from_the_locks():
    assert "--require-hashes -r /tmp/requirements.lock" in (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements-dev.lock" in makefile
    assert "--require-hashes -r requirements-checks.lock" in makefile
    moto = (ROOT / "e2e" / "moto" / "Dockerfile").read_text()
    assert "--require-hashes -r /tmp/requirements.lock" in moto
