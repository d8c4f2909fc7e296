"""Hostile clients against a real `manage.py serve` (gevent workers, WEB_CONCURRENCY=2, the
default a pod runs with): the server keeps answering its probes and counting, and bounds what
each client may hold (visits_site/worker.py, visits_site/body_guard.py)."""

import asyncio
import concurrent.futures
import json
import os
import signal
import socket
import threading
import time

import pytest

from support import hostile
from support.clients import exchange, http_request

pytestmark = pytest.mark.server


def test_slow_idle_and_slow_post_clients_leave_probes_and_counting_intact(make_server):
    server = make_server().start().wait_ready()
    workers = server.worker_pids()
    seen = asyncio.run(
        hostile.attack("127.0.0.1", server.port, seconds=60, slow=200, idle=200, slow_posts=20)
    )
    print(json.dumps(seen))
    for path in ("/healthz", "/readyz", "/"):  # every answer a 200 within the kubelet's 2 s
        assert seen[path]["asked"] > 0, seen
        assert seen[path]["ok"] == seen[path]["asked"], (path, seen[path])
    assert seen["/healthz"]["asked"] >= 200  # every 0.25 s for 60 s, give or take the start
    # The server closed the attackers' connections itself, again and again.
    assert seen["attacker_connections_closed_by_server"] > 420, seen
    visits = seen["/"]["ok"]
    assert server.visits() == visits  # every answered GET / counted, nothing else
    server.wait_file(visits)
    assert server.worker_pids() == workers  # no worker killed or restarted
    for _ in range(20):  # and normal afterwards
        assert server.get("/")[0] == 200
    assert server.visits() == visits + 20


def test_a_connection_that_sends_nothing_is_closed(make_server):
    server = make_server().start().wait_ready()
    assert exchange(server.port, b"") == b""  # closed after the head deadline, no answer


def test_a_head_that_never_ends_is_closed_and_counts_nothing(make_server):
    server = make_server().start().wait_ready()
    assert exchange(server.port, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: a\r\n") == b""
    assert server.visits() == 0


def post_head(length: int | None, *, path: str = "/admin/login/") -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n{size}\r\n\r\n"
    ).encode()


def test_a_body_over_the_limit_is_refused_before_it_is_sent(make_server):
    server = make_server().start().wait_ready()
    answer = exchange(server.port, post_head(50 * 2**20))  # announces 50 MiB, sends none
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert answer.endswith(
        b"Content Too Large: request body of 52428800 bytes, over the limit of 65536 bytes.\n"
    )
    assert "413 POST /admin/login/ from 127.0.0.1" in server.log()
    assert "Traceback" not in server.log()


def test_a_chunked_body_that_grows_over_the_limit_is_refused(make_server):
    server = make_server().start().wait_ready()
    chunk = b"a" * 8192
    chunks = (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 9 + b"0\r\n\r\n"  # 72 KiB
    answer = exchange(server.port, post_head(None) + chunks)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_body_within_the_limit_reaches_django(make_server):
    """A form just under the limit is read and answered by Django (403: no CSRF token)."""
    server = make_server().start().wait_ready()
    body = b"a=" + b"b" * (65536 - 2)
    answer = exchange(server.port, post_head(len(body)) + body)
    assert answer.startswith(b"HTTP/1.1 403 ")


def test_a_body_sent_too_slowly_gets_408(make_server):
    server = make_server().start().wait_ready()
    answer = exchange(server.port, post_head(100) + b"a")  # then nothing more
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request body too slow" in answer


def test_connections_beyond_the_cap_get_503_at_once(make_server):
    server = make_server(WEB_CONCURRENCY="1", GUNICORN_CMD_ARGS="--worker-connections 5").start()
    server.wait_ready()
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(5)]
    try:
        for client in held:  # one answered request each: the worker holds them (keep-alive)
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200 ")
        answer = exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert answer.endswith(b"too many open connections.\n")
    finally:
        for client in held:
            client.close()
    server.wait_ready()  # the held connections are gone: answered again
    assert "503: 5 connections open, the cap (worker_connections)" in server.log()


def test_a_stopped_worker_fails_the_probe_and_the_master_replaces_it(make_server):
    """Probes are not made always green: a worker that stops answering (SIGSTOP here; a
    request stuck in a loop stops its event loop the same way) fails the kubelet's probe, and
    gunicorn's master replaces it once its heartbeat is `timeout` seconds old."""
    server = make_server(WEB_CONCURRENCY="1", GUNICORN_CMD_ARGS="--timeout 5").start()
    server.wait_ready()
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGSTOP)
    with pytest.raises(TimeoutError):
        http_request(server.port, "/healthz", timeout=2)
    deadline = time.monotonic() + 60
    while server.worker_pids() in ([worker], []):
        assert time.monotonic() < deadline, "the stopped worker was never replaced"
        time.sleep(0.2)
    server.wait_ready()
    assert server.get("/healthz")[0] == 200


class HungPeer:
    """A pod that accepts connections and never answers; it counts them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.connections.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


def test_cluster_ignores_the_host_header_and_asks_a_hung_peer_once(make_server, tmp_path):
    hung = HungPeer()
    pod0, pod1 = make_server("app-python-0"), make_server("app-python-1")
    peers = f"http://127.0.0.1:{pod0.port},http://127.0.0.1:{pod1.port},{hung.url}"
    for pod in (pod0, pod1):
        pod.env["VISITS_PEERS"] = peers
        pod.start()
    pod0.wait_ready(), pod1.wait_ready()
    for _ in range(5):
        pod0.get("/")
    try:
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            # A crafted Host names the other pod: it must not change who "self" is.
            pages = list(
                pool.map(
                    lambda _: pod0.get(
                        "/cluster?format=json", headers={"Host": f"127.0.0.1:{pod1.port}"}
                    ),
                    range(50),
                )
            )
            probes = [http_request(pod0.port, "/healthz", timeout=2)[0] for _ in range(5)]
        elapsed = time.monotonic() - started
        assert probes == [200] * 5
        for status, body, _ in pages:
            answer = json.loads(body)
            assert status == 200
            assert answer["total"] == 5
            assert [(p["pod"], p["visits"]) for p in answer["pods"][:2]] == [
                ("app-python-0", 5),
                ("app-python-1", 0),
            ]
            assert answer["pods"][2]["error"] == "timeout"
        # One answer per 2 s cache window for the whole pod, both workers included.
        assert 1 <= len(hung.connections) <= 1 + int(elapsed // 2.0), (
            len(hung.connections),
            elapsed,
        )
    finally:
        hung.close()


def test_sigterm_under_attack_exits_0_within_the_grace_period(make_server):
    """Held connections do not hold up a shutdown past terminationGracePeriodSeconds (30 s):
    gunicorn waits graceful_timeout (20 s) at most, and the deadlines close them sooner."""
    server = make_server().start().wait_ready()
    attack = threading.Thread(
        target=asyncio.run,
        args=(
            hostile.attack(
                "127.0.0.1",
                server.port,
                seconds=25,
                slow=100,
                idle=100,
                slow_posts=10,
                visit_every=None,  # only the 10 visits below count
            ),
        ),
    )
    attack.start()
    try:
        for _ in range(10):
            assert server.get("/")[0] == 200
        started = time.monotonic()
        assert server.stop(signal.SIGTERM, timeout=30) == 0
        print(f"stopped in {time.monotonic() - started:.1f} s")
    finally:
        attack.join()
    server.start().wait_ready()
    assert server.visits() == 10
