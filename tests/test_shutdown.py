"""A server told to stop, on a real `manage.py serve`.

SIGTERM (as the kubelet sends it after the pod's preStop pause) closes its kept-alive
connections cleanly: each connection's next request is answered, with `Connection: close`, and
the server's end is then closed with a FIN, never a reset; a request half sent when the signal
came is still answered; an idle connection is closed the same way once its keep-alive time is
up. Every visit answered is counted. This is gunicorn's own behaviour (its worker stops
accepting, answers each kept-alive connection's next request with `Connection: close` and waits
up to graceful_timeout for them), which the chart's grace period is built around
(k8s/chart/templates/statefulset.yaml).

Ctrl-C in the terminal of `make run` sends SIGINT to the whole process group, master and
workers at once: the server stops at once, quietly, and keeps every visit it answered
(visits_site/worker.py, handle_quit).
"""

import os
import signal
import socket
import threading
import time

import pytest

from support.servers import database_total

pytestmark = pytest.mark.server

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def answer(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """One whole HTTP answer read from `sock`: its status and headers (the body is read and
    dropped). ConnectionError if the server closed or reset the connection first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionAbortedError(f"closed before a whole answer: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionAbortedError("closed in the middle of an answer")
        body += chunk
    return int(lines[0].split()[1]), headers


class KeptAlive(threading.Thread):
    """A kept-alive connection sending a visit every 20 ms until the server says it closes the
    connection; then it reads the connection's end. What it saw: the statuses, whether the last
    answer said `Connection: close`, and how the connection ended ("closed": a FIN, or the
    error)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.statuses: list[int] = []
        self.said_close = False
        self.ended = "still open"
        self.first = threading.Event()

    def run(self) -> None:
        try:
            while True:
                self.sock.sendall(REQUEST)
                status, headers = answer(self.sock)
                self.statuses.append(status)
                self.first.set()
                if headers.get("connection", "").lower() == "close":
                    self.said_close = True
                    break
                time.sleep(0.02)
            self.ended = "closed" if self.sock.recv(1) == b"" else "data after close"
        except OSError as error:
            self.ended = type(error).__name__
        finally:
            self.sock.close()


def test_a_stopping_server_closes_each_kept_alive_connection_between_requests(make_server):
    server = make_server(WEB_CONCURRENCY="1").start().wait_ready()
    busy = [KeptAlive(server.port) for _ in range(8)]
    for connection in busy:
        connection.start()
        assert connection.first.wait(10)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    idle.sendall(REQUEST)
    assert answer(idle)[0] == 200  # then silent: an idle kept-alive connection
    half = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    half.sendall(REQUEST[:-2])  # a request head without its final line

    server.process.send_signal(signal.SIGTERM)
    for connection in busy:  # the worker is stopping once it answers with Connection: close
        connection.join(timeout=30)
    half.sendall(b"\r\n")
    half_status, half_headers = answer(half)
    idle_end = idle.recv(1)  # the keep-alive time (5 s) is up: closed
    assert server.process.wait(40) == 0

    assert [c.ended for c in busy] == ["closed"] * len(busy)
    assert all(c.said_close and set(c.statuses) == {200} for c in busy)
    assert (half_status, half_headers["connection"].lower()) == (200, "close")
    assert half.recv(1) == b""
    assert idle_end == b""
    answered = sum(len(c.statuses) for c in busy) + 2  # and the idle and half-sent ones
    server.start().wait_ready()
    assert server.visits() == answered


def test_ctrl_c_to_the_process_group_stops_the_server_quietly_and_keeps_the_count(make_server):
    """Five times, with four clients counting visits when it comes: exit code 0, no traceback
    (gunicorn's gevent worker printed `SystemExit: 0` in about half the runs), and after a
    restart the database and the visits file hold every visit answered, and at most one more
    per client (a visit counted whose answer the stop cut off)."""
    server = make_server()  # two workers, as `make run` has on two cores
    answered = 0
    for stop in range(1, 6):
        server.start().wait_ready()
        visitors = [KeptAlive(server.port) for _ in range(4)]
        for visitor in visitors:
            visitor.start()
        deadline = time.monotonic() + 10
        while sum(len(visitor.statuses) for visitor in visitors) < 40:
            assert time.monotonic() < deadline, "the visitors got no answers"
            time.sleep(0.01)
        output_before = len(server.log())

        os.killpg(server.process.pid, signal.SIGINT)
        assert server.process.wait(30) == 0
        for visitor in visitors:
            visitor.join(timeout=10)

        output = server.log()[output_before:]
        assert "Traceback" not in output and "SystemExit" not in output, output
        assert "Handling signal: int" in output  # the master saw Ctrl-C, not only the workers
        answered += sum(visitor.statuses.count(200) for visitor in visitors)
        counted = database_total(server.data_dir / "db.sqlite3")
        assert answered <= counted <= answered + stop * len(visitors)
    server.start().wait_ready()
    assert server.visits() == counted
    assert server.file_count() == f"{counted}\n"
