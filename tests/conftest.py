"""Fixtures for the tests in this folder, on the shared harness (tests/harness.py)."""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (  # noqa: F401 - re-exported for the test modules
    APP_VERSION,
    ROOT,
    SECRET_KEY,
    Server,
    collectstatic,
    free_port,
    http_request,
    wait_for_file,
    wait_for_text,
)


@pytest.fixture(scope="session")
def collected_static() -> None:
    collectstatic()


@pytest.fixture
def make_server(tmp_path, collected_static) -> Iterator:
    """Factory: make_server(name, **env) -> Server (not started). All are killed at the end."""
    servers: list[Server] = []

    def make(name: str = "app-python-0", data_dir: Path | None = None, **env: str) -> Server:
        server = Server(data_dir or tmp_path / name, tmp_path / f"{name}.log", env)
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
        local = ROOT / ".venv-checks" / "bin" / name
        found = str(local) if local.exists() else shutil.which(name)
        if found is None:
            pytest.skip(f"{name} is not installed: `make test` installs it in .venv-checks")
        return found

    return find
