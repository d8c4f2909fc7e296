"""Fixtures for the tests in this folder, on the support package (support/) they share with
`make bench`. Fixtures only: helpers live in support/."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.manifests import RENDERS, k8s_copy, render, render_missing
from support.servers import Server, collectstatic
from support.tools import ROOT, checker_binary

THROWAWAY_SECRET = (
    "DJANGO_SECRET_KEY=render-test-key\nVISITS_ADMIN_PASSWORD_HASH=pbkdf2_sha256$1$s$h\n"
)


@pytest.fixture(scope="session")
def collected_static() -> None:
    collectstatic()


@pytest.fixture
def make_server(tmp_path, collected_static) -> Iterator:
    """Factory: make_server(name, data_dir, app, **env) -> Server (not started), of this checkout
    or of the app copied to `app`. All are killed at the end."""
    servers: list[Server] = []

    def make(
        name: str = "app-python-0", data_dir: Path | None = None, app: Path = ROOT, **env: str
    ) -> Server:
        server = Server(data_dir or tmp_path / name, tmp_path / f"{name}.log", env, app=app)
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.process and server.process.poll() is None:
            server.kill()


@pytest.fixture
def tmpfs(tmp_path) -> Iterator:
    """Factory: tmpfs(size, read_only=False) -> a freshly mounted small tmpfs (root only)."""
    mounts: list[Path] = []

    def mount(size: str, *, read_only: bool = False) -> Path:
        target = tmp_path / f"tmpfs{len(mounts)}"
        target.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounts.append(target)
        return target

    yield mount
    for target in mounts:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture(scope="session")
def checker():
    """Path of a checker (checkov, hadolint, yamllint, kubernetes-validate): from .venv-checks
    (`make test` installs it) or PATH; the test skips, saying so, if it is nowhere."""

    def find(name: str) -> str:
        found = checker_binary(name)
        if found is None:
            pytest.skip(f"{name} is not installed: `make test` installs it in .venv-checks")
        return found

    return find


@pytest.fixture(scope="session")
def k8s_tree(tmp_path_factory) -> Path:
    """A copy of k8s/ with a throwaway secret.env: the real one is never committed."""
    if reason := render_missing("kustomize:base"):
        pytest.skip(reason)
    return k8s_copy(tmp_path_factory.mktemp("k8s"), THROWAWAY_SECRET)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Every render of support.manifests.RENDERS that its tool (kubectl, helm) can make here,
    as a file: the tests parametrized over RENDERS skip, saying why, the ones missing."""
    folder = tmp_path_factory.mktemp("renders")
    tree = k8s_copy(folder, THROWAWAY_SECRET)
    files = {}
    for name in RENDERS:
        if render_missing(name) is None:
            files[name] = folder / f"{name.replace(':', '-')}.yaml"
            files[name].write_text(render(tree, name))
    return files
