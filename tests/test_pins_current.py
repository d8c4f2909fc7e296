"""scripts/pins_current.py, the freshness check of `make lint`, against a stand-in for the
package index (PEP 691 JSON) and the Go module proxy on 127.0.0.1: real HTTP, the real `go`."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from support.servers import StandInHTTP, free_port
from support.tools import ROOT

SCRIPT = ROOT / "scripts" / "pins_current.py"
JSON_API = "application/vnd.pypi.simple.v1+json"
LOCK = "# pip-compile with Python 3.11\ndjango==5.2.19 \\\n    --hash=sha256:00\nrequests==2.32.3\n"
VERSIONS_ENV = (
    "# comment\nHELM_VERSION=v4.3.1\nLITESTREAM_GO_TOOLCHAIN=go1.27.3\nPREVIOUS_VERSION=1.1.1\n"
)


class StandIn(StandInHTTP):
    """A package index and a Go module proxy in one HTTP server: `pages` maps a path to its
    answer (a dict: PEP 691 JSON; a str: text); any other path is a 404."""

    def __init__(self, pages: dict[str, dict | str]) -> None:
        def answer(path: str, headers: object) -> tuple[int, dict[str, str], bytes]:
            page = pages.get(path)
            if page is None:
                return 404, {"Content-Type": "text/plain"}, b"not found"
            if isinstance(page, str):
                return 200, {"Content-Type": "text/plain"}, page.encode()
            return 200, {"Content-Type": JSON_API}, json.dumps(page).encode()

        super().__init__(answer)


def project(name: str, *files: dict) -> dict[str, dict]:
    """A project's page on the index (PEP 691, with PEP 700's `versions`)."""
    versions = sorted({file["filename"].split("-")[1] for file in files})
    page = {"meta": {"api-version": "1.1"}, "name": name, "files": list(files)}
    return {f"/simple/{name}/": page | {"versions": versions}}


def wheel(name: str, version: str, *, yanked: bool = False, python: str | None = None) -> dict:
    return {
        "filename": f"{name}-{version}-py3-none-any.whl",
        "url": f"https://files.example/{name}-{version}-py3-none-any.whl",
        "hashes": {},
        "yanked": yanked,
        "requires-python": python,
    }


def go_module(path: str, *versions: str, retract: str = "") -> dict[str, str]:
    """A module on the Go module proxy; its newest version's go.mod retracts `retract`."""
    pages = {f"/{path}/@v/list": "\n".join(versions) + "\n"}
    for version in versions:
        info = {"Version": version, "Time": "2026-12-01T00:00:00Z"}
        pages[f"/{path}/@v/{version}.info"] = json.dumps(info)
        pages[f"/{path}/@v/{version}.mod"] = f"module {path}\n"
    if retract:
        pages[f"/{path}/@v/{versions[-1]}.mod"] += f"\nretract {retract}\n"
    return pages


CURRENT = {  # every pin of LOCK and VERSIONS_ENV the newest of its series
    **project("django", wheel("django", "5.2.19"), wheel("django", "6.0.1")),
    **project("requests", wheel("requests", "2.32.3"), wheel("requests", "2.33.0")),
    **go_module("helm.sh/helm/v4", "v4.3.1", "v4.4.0"),
    **go_module("golang.org/toolchain", "v0.0.1-go1.27.3.linux-amd64"),
}


@pytest.fixture
def check(tmp_path):
    """check(pages, locks, versions_env, index=, proxy=) -> the script's run on a checkout with
    those lock files ({name: text}) and versions.env, asking a stand-in that serves `pages`."""
    if shutil.which("go") is None:
        pytest.skip("no go command: the Go module half of the check needs it")
    stand_ins = []

    def run(pages, locks=None, versions_env=VERSIONS_ENV, *, index=None, proxy=None):
        root = tmp_path / "checkout"
        shutil.rmtree(root, ignore_errors=True)
        (root / "scripts").mkdir(parents=True)
        for name, text in (locks or {"requirements.lock": LOCK}).items():
            (root / name).write_text(text)
        (root / "scripts" / "versions.env").write_text(versions_env)
        stand_in = StandIn(pages)
        stand_ins.append(stand_in)
        env = {
            **os.environ,
            "PIP_INDEX_URL": index or f"{stand_in.url}/simple",
            "GOPROXY": proxy or stand_in.url,
            "GOSUMDB": "off",  # the stand-in's modules are in no checksum database
            "GOPRIVATE": "",
            "GOMODCACHE": str(tmp_path / "modcache"),  # nothing the real proxy answered before
        }
        command = [sys.executable, str(SCRIPT), str(root)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    yield run
    for stand_in in stand_ins:
        stand_in.close()


def test_pins_behind_their_series_fail_naming_both_versions(check):
    pages = {
        **CURRENT,
        **project(
            "django",
            wheel("django", "5.2.19"),
            wheel("django", "5.2.20"),
            wheel("django", "5.2.21rc1"),  # a pre-release: not asked for
            wheel("django", "5.2.22", yanked=True),
            wheel("django", "5.2.23", python=">=3.14"),  # not for the lock's Python
            wheel("django", "6.0.1"),  # another series: not asked for
        ),
        **go_module("helm.sh/helm/v4", "v4.3.1", "v4.3.2", "v4.3.3", "v4.4.0", retract="v4.3.3"),
        **go_module(
            "golang.org/toolchain", "v0.0.1-go1.27.3.linux-amd64", "v0.0.1-go1.27.4.linux-amd64"
        ),
    }
    result = check(pages)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[:3] == [
        "pins: requirements.lock: django 5.2.19 is behind 5.2.20, the newest 5.2.x release on"
        " the index",
        "pins: scripts/versions.env: HELM_VERSION=v4.3.1 is behind v4.3.2, the newest 4.3.x"
        " release of helm.sh/helm/v4",
        "pins: scripts/versions.env: LITESTREAM_GO_TOOLCHAIN=go1.27.3 is behind go1.27.4, the"
        " newest 1.27.x release of golang.org/toolchain",
    ]
    assert "requests" not in result.stdout
    assert result.stdout.splitlines()[-1].startswith("pins: to catch up, raise a direct pin")


def test_pins_that_are_the_newest_of_their_series_pass(check):
    result = check(CURRENT)
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = result.stdout.splitlines()
    assert (
        line.startswith("pins: 2 Python packages checked against http://127.0.0.1:")
        and "; 2 Go pins checked against the Go module proxy (" in line
    )


def test_an_index_and_a_proxy_that_cannot_be_reached_skip_with_one_line(check):
    closed = f"http://127.0.0.1:{free_port()}"
    result = check(CURRENT, index=f"{closed}/simple", proxy=closed)
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"pins: skipped the Python pins: {closed}/simple cannot be reached (")
    assert "; skipped the Go pins: the Go module proxy cannot be reached (" in line
    assert "connection refused" in line.lower()


def test_a_version_line_that_names_no_module_fails(check):
    result = check(CURRENT, versions_env=VERSIONS_ENV + "NEW_TOOL_VERSION=v1.0.0\n")
    assert result.returncode == 1
    assert (
        "pins: scripts/versions.env: NEW_TOOL_VERSION names no Go module: map it in GO_MODULES"
        " of scripts/pins_current.py (or list it in NOT_MODULES)" in result.stdout
    )


def test_a_pin_another_holds_back_passes_until_its_holder_moves(check):
    """checkov 3.3.30 requires boto3==1.35.49: HELD says so, and the check holds it to that."""
    pages = {
        **CURRENT,
        **project("checkov", wheel("checkov", "3.3.30"), wheel("checkov", "3.3.31")),
        **project("boto3", wheel("boto3", "1.35.49"), wheel("boto3", "1.35.99")),
    }
    lock = "checkov=={} \\\n    --hash=sha256:00\nboto3==1.35.49 \\\n    --hash=sha256:00\n"
    locks = {"requirements.lock": LOCK, "requirements-checks.lock": lock.format("3.3.31")}
    result = check(pages, locks)
    assert result.returncode == 1
    assert (
        "pins: requirements-checks.lock: boto3 1.35.49 is held back for checkov==3.3.30, which it"
        " no longer pins" in result.stdout
    )

    locks["requirements-checks.lock"] = lock.format("3.3.30")
    pages |= project("checkov", wheel("checkov", "3.3.30"))
    result = check(pages, locks)
    assert result.returncode == 0, result.stdout
    assert "(1 held back by another pin, as HELD says)" in result.stdout

    pages |= project("boto3", wheel("boto3", "1.35.49"))  # no newer boto3: the hold is stale
    result = check(pages, locks)
    assert result.returncode == 1
    assert "yet it is the newest of its series: remove it from HELD" in result.stdout
