"""Real `manage.py serve` processes on 127.0.0.1 for the tests in this folder."""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "server-tests-key-not-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict | None = None,
    body: bytes = b"",
    timeout: float = 30,
) -> tuple[int, bytes, http.client.HTTPResponse]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response
    finally:
        connection.close()


def wait_for_text(read: Callable[[], str], expected: str, what: str, timeout: float = 1.0) -> None:
    """A visits file must read `expected` within `timeout` s: the app's promise after the last
    visit (it trails the database by about 0.25 s)."""
    deadline = time.monotonic() + timeout
    while (text := read()) != expected:
        assert time.monotonic() < deadline, f"{what} holds {text!r}, not {expected!r}"
        time.sleep(0.01)


def wait_for_file(path: Path, expected: str) -> None:
    def read() -> str:
        try:
            return path.read_text()
        except FileNotFoundError:
            return "(no file)"

    wait_for_text(read, expected, str(path))


class Server:
    """One `manage.py serve` (prepare, then gunicorn) in its own process group."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.env = {
            **os.environ,
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "VISITS_DATA_DIR": str(data_dir),
            "POD_NAME": data_dir.name,
            "WEB_CONCURRENCY": "2",
            **env,
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{self.port} --access-logfile /dev/null "
            + env.get("GUNICORN_CMD_ARGS", ""),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 60) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}:\n{self.log()}")
            try:
                if self.get("/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log()}")

    def run_to_exit(self, timeout: float = 60) -> int:
        """Start and wait for the process to end on its own (a start-up that must fail)."""
        self.start()
        return self.process.wait(timeout)

    def get(self, path: str, **kwargs) -> tuple[int, bytes, http.client.HTTPResponse]:
        return http_request(self.port, path, **kwargs)

    def visits(self) -> int:
        status, body, _ = self.get("/visits")
        assert status == 200, body
        return int(body)

    def worker_pids(self) -> list[int]:
        master = self.process.pid  # `serve` exec'd gunicorn: the same process
        return sorted(map(int, Path(f"/proc/{master}/task/{master}/children").read_text().split()))

    def file_count(self) -> str:
        return (self.data_dir / "visits").read_text()

    def wait_file(self, expected: int) -> None:
        wait_for_file(self.data_dir / "visits", f"{expected}\n")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group: master and workers, no clean-up of any kind."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def collected_static() -> None:
    """Debug is off in these servers, like production: admin CSS needs collected static files."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SECRET_KEY": SECRET_KEY},
        check=True,
    )


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
