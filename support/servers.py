"""Real `manage.py serve` processes on 127.0.0.1, on free ports, with collected static files;
and small HTTP servers standing in for what the app or a script asks."""

import contextlib
import http.client
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.clients import http_request, wait_for_file
from support.tools import ROOT

SECRET_KEY = "server-tests-key-not-secret"


def collectstatic() -> None:
    """Debug is off in these servers, like production: admin CSS needs collected static files."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SECRET_KEY": SECRET_KEY},
        check=True,
    )


def free_port() -> int:
    """A free port below the kernel's range for client ports: a client connecting to a port in
    that range while nothing listens can be given that same port and connect to itself, and
    then hold it, so a server restarting on it cannot bind (seen here as BadStatusLine)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except OSError:  # not Linux
        low = 32768
    for port in random.sample(range(10000, low), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port between 10000 and {low}")


class StandInHTTP:
    """A real HTTP server on 127.0.0.1, in a thread, standing in for a peer pod or a package
    index: `answer(path, headers)` gives each GET its status, headers and body."""

    def __init__(self, answer: Callable[[str, Message], tuple[int, dict[str, str], bytes]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                status, headers, body = answer(self.path, self.headers)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                # A client that gave up waiting (a test of a slow peer) has hung up: not an error.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Server:
    """One `manage.py serve` (prepare, then gunicorn) in its own process group, or another
    `command` under the same environment (the bench's naive counter); of this checkout, or of
    the copy of the app in `app` (another version: support/upgrades.py)."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        env: dict[str, str],
        *,
        command: list[str] | None = None,
        ready_path: str = "/readyz",
        app: Path = ROOT,
    ) -> None:
        self.data_dir = data_dir
        self.app = app
        self.log_path = log_path
        self.command = command or [sys.executable, "manage.py", "serve"]
        self.ready_path = ready_path
        self.ready_after: float | None = None  # seconds from start to the first ready answer
        self.port = free_port()
        self.env = {
            **os.environ,
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "VISITS_DATA_DIR": str(data_dir),
            "POD_NAME": data_dir.name,
            "WEB_CONCURRENCY": "2",
            # The workers' metrics files: beside the data, gone with the test's directory.
            "PROMETHEUS_MULTIPROC_DIR": str(data_dir.with_name(f"{data_dir.name}.metrics")),
            **env,
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{self.port} --access-logfile /dev/null "
            + env.get("GUNICORN_CMD_ARGS", ""),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command,
            cwd=self.app,
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
                if self.get(self.ready_path)[0] == 200:
                    self.ready_after = time.monotonic() - self.started_at
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log()}")

    def run_to_exit(self, timeout: float = 60) -> int:
        """Start and wait for the process to end on its own (a start-up that must fail)."""
        self.start()
        return self.process.wait(timeout)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

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

    def manage(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        """A management command in the server's environment, as `kubectl exec` runs one."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.app,
            env=self.env,
            input=stdin,
            capture_output=True,
            timeout=120,
        )


def database_total(path: Path) -> int:
    """The total in a database file, which must pass SQLite's integrity check."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return db.execute("SELECT total FROM counter_visitcounter").fetchone()[0]


def connections_held(server, pid: int) -> int:
    """The established connections to the server's port among the open files of process `pid`
    (/proc/net/tcp gives each socket's inode, /proc/PID/fd which process holds it)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == server.port and fields[3] == "01":
            inodes.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            held += os.readlink(f"/proc/{pid}/fd/{fd}") in inodes
    return held


def open_keepalive_connections(
    server, count: int, timeout: float = 5, path: str = "/healthz"
) -> list:
    """`count` connections opened at once, as a client's pool does, each answered once (all
    requests sent before the first answer is read) and kept open."""
    connections = [
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout) for _ in range(count)
    ]
    for connection in connections:
        connection.connect()
    for connection in connections:
        connection.putrequest("GET", path)
        connection.endheaders()
    for connection in connections:
        response = connection.getresponse()
        assert response.status == 200
        response.read()
    return connections


def close_and_wait(server, workers: list[int], connections: list) -> None:
    """Close the client's connections, and wait until the workers let theirs go too."""
    for connection in connections:
        connection.close()
    deadline = time.monotonic() + 5
    while any(connections_held(server, pid) for pid in workers):
        assert time.monotonic() < deadline, "the server kept closed connections"
        time.sleep(0.05)


def wait_until_every_worker_accepts(server, workers: list[int], timeout: float = 30) -> None:
    """/readyz answers once one worker is up; a worker still starting takes no connection."""
    deadline = time.monotonic() + timeout
    while True:
        connections = [open_keepalive_connections(server, 1)[0] for _ in range(2 * len(workers))]
        held = [connections_held(server, pid) for pid in workers]
        close_and_wait(server, workers, connections)
        if min(held) > 0:
            return
        assert time.monotonic() < deadline, f"not every worker accepts: {held}"
        time.sleep(0.2)


# Where cpu_limited makes its cgroups: cgroup v2 with its cpu controller, else v1's cpu.
CGROUP_V2 = Path("/sys/fs/cgroup")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def _cgroup_v2_cpu() -> bool:
    controllers = CGROUP_V2 / "cgroup.controllers"
    return controllers.exists() and "cpu" in controllers.read_text().split()


def cpu_limit_missing() -> str | None:
    """Why cpu_limited cannot make its cgroup here, if it cannot."""
    if os.geteuid() != 0:
        return "a cgroup with a CPU quota needs root"
    if not _cgroup_v2_cpu() and not CGROUP_V1_CPU.is_dir():
        return "no cgroup file system with a cpu controller"
    return None


@contextlib.contextmanager
def cpu_limited(name: str, cores: float | None) -> Iterator[list[str]]:
    """A cgroup with a CFS quota of `cores` (100 ms period, like the kubelet's), yielding a
    command prefix that starts a process in it; no limit and no prefix when `cores` is None."""
    if cores is None:
        yield []
        return
    quota = int(cores * 100_000)
    if _cgroup_v2_cpu():
        group = CGROUP_V2 / f"bench-{name}"
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{quota} 100000")
    else:
        group = CGROUP_V1_CPU / f"bench-{name}"
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    try:
        yield ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh"]
    finally:
        for _ in range(50):  # the processes leave it as they exit
            with contextlib.suppress(OSError):
                group.rmdir()
                break
            time.sleep(0.1)
