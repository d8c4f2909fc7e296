"""Is every pin the newest patch release of its series? `make lint` runs this.

    python scripts/pins_current.py [ROOT]

A pin X.Y.Z is behind when the index has a newer X.Y.* release (a final one, not yanked, for
the lock's Python): each such pin is named with the newest release, and the check fails. A newer
minor or major release is not asked for: that is a change to make on purpose.

- Python: every pin of the lock files (requirements*.lock, e2e/*/requirements*.lock, their
  Python the one pip-compile names in their header) and of the Makefile's `pip install`s, asked
  of the package index's JSON simple API (PEP 691: the index reached here serves no per-version
  JSON, which pip-audit needs), every package in parallel.
- Go: the *_VERSION lines of scripts/versions.env that name a module of GO_MODULES, and the
  *_GO_TOOLCHAIN lines (golang.org/toolchain), asked of the Go module proxy with
  `go list -m -versions`, which leaves retracted versions out.

An index or proxy that cannot be reached skips its half, with one line saying so.
"""

import concurrent.futures
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

# The module of each tool that scripts/versions.env names: the one place to add one. Lines
# that name no module are in NOT_MODULES, so a new line without a mapping is noticed.
GO_MODULES = {
    "HELM_VERSION": "helm.sh/helm/v4",
    "LITESTREAM_VERSION": "github.com/benbjohnson/litestream",
    "COREDNS_VERSION": "github.com/coredns/coredns",
    "KUBE_NETWORK_POLICIES_VERSION": "sigs.k8s.io/kube-network-policies",
    "GOVULNCHECK_VERSION": "golang.org/x/vuln",
}
NOT_MODULES = {"PREVIOUS_VERSION"}  # this app's previous release (tests/test_e2e_upgrade.py)
# Pins another pin of the same lock holds back, by requiring that version exactly or at most:
# (lock file, package) -> the holder's pin. A hold lapses when the holder's pin changes, and
# one no longer needed fails too: the list only ever says what is true of the locks.
HELD = {
    ("requirements-checks.lock", "asteval"): "checkov==3.3.30",  # asteval==1.0.6
    ("requirements-checks.lock", "boto3"): "checkov==3.3.30",  # boto3==1.35.49
    ("requirements-checks.lock", "dpath"): "checkov==3.3.30",  # dpath==2.1.3
    ("requirements-checks.lock", "schema"): "checkov==3.3.30",  # schema<=0.7.5
}
TOOLCHAIN = "golang.org/toolchain"  # its versions: v0.0.1-go1.27.3.linux-amd64, ...
TIMEOUT = 10  # seconds for each request, and for `go list`
JSON_API = "application/vnd.pypi.simple.v1+json"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\[\]-]*)==([^\s\\;]+)", re.M)
MAKEFILE_PIN = re.compile(r"pip install .*?([A-Za-z0-9][A-Za-z0-9_.-]*)==([0-9][^\s;]*)")
LOCK_PYTHON = re.compile(r"pip-compile with Python (\d+\.\d+)")


class Unreachable(Exception):
    """The index or the proxy did not answer."""


def series(version: Version) -> tuple[int, int]:
    return (*version.release, 0)[:2]


def later_patch(version: Version, pin: Version) -> bool:
    """Whether `version` is a final release of `pin`'s series, newer than it."""
    return series(version) == series(pin) and not version.is_prerelease and version > pin


def newest_patch(pinned: str, available: list[Version]) -> Version | None:
    """The newest final release of `pinned`'s series in `available`, if newer than `pinned`."""
    pin = Version(pinned)
    return max((version for version in available if later_patch(version, pin)), default=None)


def python_pins(root: Path) -> dict[str, dict[str, tuple[str, str]]]:
    """package -> {file: (pinned version, the Python it is installed with)}."""
    found: dict[str, dict[str, tuple[str, str]]] = {}
    locks = sorted(root.glob("requirements*.lock")) + sorted(root.glob("e2e/*/requirements*.lock"))
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    sources = [(lock, PIN, lock.read_text()) for lock in locks]
    if (root / "Makefile").exists():
        sources.append((root / "Makefile", MAKEFILE_PIN, (root / "Makefile").read_text()))
    for path, pattern, text in sources:
        named = LOCK_PYTHON.search(text)
        python = named.group(1) if named else running
        for name, version in pattern.findall(text):
            package = canonicalize_name(re.sub(r"\[.*\]", "", name))
            found.setdefault(package, {})[str(path.relative_to(root))] = (version, python)
    return found


class Index:
    """The package index's JSON simple API, on one kept-alive connection per thread: a new
    connection (a DNS lookup and a TLS handshake) for each of 150 packages took 7 to 25 s here,
    kept alive 0.4 s."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        self.path, self.local = parts.path, threading.local()
        if parts.scheme == "https":
            context = ssl.create_default_context()
            self.connect = lambda: http.client.HTTPSConnection(
                parts.netloc, timeout=TIMEOUT, context=context
            )
        else:
            self.connect = lambda: http.client.HTTPConnection(parts.netloc, timeout=TIMEOUT)

    def _get(self, path: str) -> http.client.HTTPResponse:
        """One GET on this thread's connection; a connection the index closed is made again."""
        for attempt in range(2):
            if getattr(self.local, "connection", None) is None:
                self.local.connection = self.connect()
            try:
                self.local.connection.request("GET", path, headers={"Accept": JSON_API})
                response = self.local.connection.getresponse()
                response.body = response.read()
                return response
            except (http.client.HTTPException, OSError) as error:
                self.local.connection.close()
                self.local.connection = None
                if attempt:
                    raise Unreachable(str(error) or type(error).__name__) from error
        raise AssertionError("unreachable")

    def releases(self, package: str, *, after: list[str]) -> list[tuple[Version, str | None]]:
        """The version and requires-python of every file of a later patch release of a version
        in `after`, yanked ones left out. Only the files of those versions are read (from the
        page's `versions`, PEP 700): a package may have thousands (boto3 has)."""
        response = self._get(f"{self.path}/{package}/")
        if response.status != 200:
            raise LookupError(f"{package}: the index answers HTTP {response.status}")
        if not (response.getheader("Content-Type") or "").startswith(JSON_API):
            raise Unreachable(f"{self.url} serves no PEP 691 JSON")
        page = json.loads(response.body)
        pins = [Version(version) for version in after]
        files = page["files"]
        if "versions" in page:
            later = [text for text in page["versions"] if _later(text, pins)]
            files = [file for file in files if any(f"-{v}" in file["filename"] for v in later)]
        releases = []
        for file in files:
            name = file["filename"]
            if file.get("yanked") or not name.endswith((".whl", ".tar.gz", ".zip")):
                continue  # eggs, installers
            try:
                parse = parse_wheel_filename if name.endswith(".whl") else parse_sdist_filename
                version = parse(name)[1]
            except (ValueError, InvalidVersion):
                continue
            if any(later_patch(version, pin) for pin in pins):
                releases.append((version, file.get("requires-python")))
        return releases


def _later(text: str, pins: list[Version]) -> bool:
    try:
        version = Version(text)
    except InvalidVersion:
        return False
    return any(later_patch(version, pin) for pin in pins)


def newest_installable(
    releases: list[tuple[Version, str | None]], pinned: str, python: str
) -> Version | None:
    """The newest release of `pinned`'s series, if newer than it, with a file for `python`."""
    pin = Version(pinned)
    newer = sorted(
        ((version, requires) for version, requires in releases if later_patch(version, pin)),
        key=lambda release: release[0],
        reverse=True,
    )
    for version, requires in newer:
        try:
            if requires and python not in SpecifierSet(requires):
                continue
        except InvalidSpecifier:
            pass
        return version
    return None


def python_check(root: Path) -> tuple[list[str], str]:
    """The pins behind, and a line saying what was checked (or skipped)."""
    index = Index(os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple"))
    pins = python_pins(root)
    behind, unreachable, held = [], {}, 0
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {
            pool.submit(
                index.releases, package, after=[v for v, _ in pins[package].values()]
            ): package
            for package in pins
        }
        for future in concurrent.futures.as_completed(futures):
            package = futures[future]
            try:
                releases = future.result()
            except Unreachable as error:
                unreachable[package] = str(error)
                continue
            except LookupError as error:
                behind.append(str(error))
                continue
            for file, (pinned, python) in sorted(pins[package].items()):
                newest = newest_installable(releases, pinned, python)
                holder = HELD.get((file, package))
                if holder is not None:
                    name, _, version = holder.partition("==")
                    if pins.get(name, {}).get(file, ("",))[0] != version:
                        behind.append(
                            f"{file}: {package} {pinned} is held back for {holder}, which it"
                            " no longer pins: lock the newest release of its series if it can"
                            " be now, and update HELD in scripts/pins_current.py"
                        )
                    elif newest is None:
                        behind.append(
                            f"{file}: {package} {pinned} is held back for {holder}, yet it is"
                            " the newest of its series: remove it from HELD in"
                            " scripts/pins_current.py"
                        )
                    else:
                        held += 1
                elif newest is not None:
                    behind.append(
                        f"{file}: {package} {pinned} is behind {newest}, the newest"
                        f" {'.'.join(map(str, series(newest)))}.x release on the index"
                    )
    if len(unreachable) == len(pins):
        reason = next(iter(unreachable.values()), "no pins")
        return behind, f"skipped the Python pins: {index.url} cannot be reached ({reason})"
    checked = f"{len(pins) - len(unreachable)} Python packages checked against {index.url}"
    if held:
        checked += f" ({held} held back by another pin, as HELD says)"
    if unreachable:
        checked += f"; not reached for {', '.join(sorted(unreachable))}"
    return behind, checked


def go_pins(root: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """NAME -> (module, pinned version) from scripts/versions.env; and its unmapped lines."""
    pins, unmapped = {}, []
    for line in (root / "scripts" / "versions.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if line.startswith("#") or not value:
            continue
        if name.endswith("_GO_TOOLCHAIN"):
            pins[name] = (TOOLCHAIN, value)
        elif name in GO_MODULES:
            pins[name] = (GO_MODULES[name], value)
        elif name.endswith("_VERSION") and name not in NOT_MODULES:
            unmapped.append(
                f"scripts/versions.env: {name} names no Go module: map it in GO_MODULES of"
                " scripts/pins_current.py (or list it in NOT_MODULES)"
            )
    return pins, unmapped


def go_version(text: str) -> Version | None:
    """A module version (v1.2.3) or a toolchain's (v0.0.1-go1.27.3.linux-amd64, go1.27.3)."""
    text = re.sub(r"^v0\.0\.1-(go[^.]+\.[^.]+(?:\.[^.]+)?)\..*$", r"\1", text)
    try:
        return Version(text.removeprefix("go").removeprefix("v"))
    except InvalidVersion:
        return None


def go_check(root: Path) -> tuple[list[str], str]:
    pins, behind = go_pins(root)
    modules = {module for module, _ in pins.values()}
    try:
        versions = go_versions(sorted(modules - {TOOLCHAIN}))
        if TOOLCHAIN in modules:
            versions[TOOLCHAIN] = toolchain_versions()
    except Unreachable as error:
        return behind, f"skipped the Go pins: {error}"
    for name, (module, pinned) in sorted(pins.items()):
        pin = go_version(pinned)
        newest = newest_patch(str(pin), versions.get(module, [])) if pin else None
        if newest is not None:
            shown = f"go{newest}" if module == TOOLCHAIN else f"v{newest}"
            behind.append(
                f"scripts/versions.env: {name}={pinned} is behind {shown}, the newest"
                f" {'.'.join(map(str, series(newest)))}.x release of {module}"
            )
    return behind, f"{len(pins)} Go pins checked against the Go module proxy"


def go(*args: str) -> str:
    """A go command's output, run outside any module; Unreachable if it fails."""
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    try:
        with tempfile.TemporaryDirectory() as outside_any_module:
            done = subprocess.run(
                ["go", *args],
                cwd=outside_any_module,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT * 3,
            )
    except FileNotFoundError as error:
        raise Unreachable("no go command") from error
    except subprocess.TimeoutExpired as error:
        raise Unreachable("the Go module proxy did not answer in time") from error
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise Unreachable(f"the Go module proxy cannot be reached ({why})")
    return done.stdout


def go_versions(modules: list[str]) -> dict[str, list[Version]]:
    """Each module's versions on the proxy, retracted ones left out (`go list -m -versions`)."""
    if not modules:
        return {}
    versions = {}
    for line in go("list", "-m", "-versions", *modules).splitlines():
        module, *listed = line.split()
        versions[module] = [v for v in map(go_version, listed) if v is not None]
    return versions


def toolchain_versions() -> list[Version]:
    """The Go toolchains on the proxy, from its list itself: the go command will not list
    golang.org/toolchain without the checksum database (seen with GOSUMDB=off), and a
    toolchain is never retracted."""
    proxies = re.split(r"[,|]", go("env", "GOPROXY").strip())
    proxy = next((p for p in proxies if p.startswith(("http://", "https://"))), None)
    if proxy is None:
        raise Unreachable("GOPROXY names no proxy")
    url = f"{proxy.rstrip('/')}/{TOOLCHAIN}/@v/list"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            listed = response.read().decode().split()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Unreachable(f"the Go module proxy cannot be reached ({reason})") from error
    return [v for v in map(go_version, listed) if v is not None]


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        python, go = pool.submit(python_check, root), pool.submit(go_check, root)
        (python_behind, python_line), (go_behind, go_line) = python.result(), go.result()
    behind = python_behind + go_behind
    for line in sorted(behind):
        print(f"pins: {line}")
    took = time.monotonic() - started
    print(f"pins: {python_line}; {go_line} ({took:.1f} s)")
    if behind:
        print(
            "pins: to catch up, raise a direct pin in its requirements*.txt, then `make lock`;"
            " a transitive one, which `make lock` keeps, with the lock's pip-compile command and"
            " -P NAME==VERSION; a Go tool in scripts/versions.env"
        )
    return 1 if behind else 0


if __name__ == "__main__":
    sys.exit(main())
