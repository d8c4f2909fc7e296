"""/metrics on real gunicorn workers: a scrape of any worker shows the pod's totals."""

import os
import signal
import socket
import urllib.parse

import pytest

from support.clients import Samples, http_request, metrics_scrape
from support.servers import wait_until_every_worker_accepts

pytestmark = pytest.mark.server


def home_visits(samples: Samples) -> float:
    key = (("method", "GET"), ("status", "200"), ("view", "counter:home"))
    return samples.get(("app_python_http_request_duration_seconds_count", key), 0.0)


def refused(samples: Samples, reason: str) -> float:
    return samples.get(("app_python_requests_refused_total", (("reason", reason),)), 0.0)


def test_a_scrape_of_either_worker_shows_the_pods_totals(make_server):
    server = make_server(WEB_CONCURRENCY="2").start().wait_ready()
    workers = server.worker_pids()
    assert len(workers) == 2
    # Ready once one worker answers: the other may still be starting, and take no connection.
    wait_until_every_worker_accepts(server, workers)
    for _ in range(40):  # each on a new connection: the kernel spreads them over the workers
        assert http_request(server.port, "/")[0] == 200
    metrics_dir = server.data_dir.with_name(f"{server.data_dir.name}.metrics")
    served = {pid for pid in workers if (metrics_dir / f"histogram_{pid}.db").exists()}
    assert served == set(workers), "one worker served every visit: nothing to sum"
    for stopped, answering in (workers, reversed(workers)):
        os.kill(stopped, signal.SIGSTOP)  # the other worker alone accepts connections now
        try:
            samples = metrics_scrape(server.port)
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert home_visits(samples) == 40, f"worker {answering} sees only its own visits"
        assert samples[("visits_total", (("pod", "app-python-0"),))] == 40

    os.kill(workers[0], signal.SIGKILL)  # its requests stay in the pod's totals
    server.wait_ready()
    assert home_visits(metrics_scrape(server.port)) == 40
    assert http_request(server.port, "/")[0] == 200
    assert home_visits(metrics_scrape(server.port)) == 41


def test_refusals_are_counted_across_workers(make_server):
    server = make_server(
        WEB_CONCURRENCY="2",
        VISITS_ADMIN_PASSWORD="right-password",
        VISITS_LOGIN_FAILURE_LIMIT="1",
        GUNICORN_CMD_ARGS="--worker-connections 3",
    ).start()
    server.wait_ready()
    head = (
        "POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(head.encode())
        assert client.recv(4096).startswith(b"HTTP/1.1 413 ")

    _, _, page = http_request(server.port, "/admin/login/")
    token = page.headers["Set-Cookie"].split("csrftoken=", 1)[1].split(";", 1)[0]
    form = {"csrfmiddlewaretoken": token, "username": "admin", "password": "wrong"}
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={token}",
    }
    body = urllib.parse.urlencode(form)
    statuses = [
        http_request(server.port, "/admin/login/", method="POST", body=body, headers=headers)[0]
        for _ in range(3)
    ]
    assert statuses == [200, 429, 429]  # one failure allowed, then locked

    # Connections held until some are refused: a worker holds 3 at most, wherever they land.
    held, busy = [], 0
    try:
        while busy == 0 or len(held) < 6:
            client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = client.recv(4096)
            held.append(client)
            busy += answer.startswith(b"HTTP/1.1 503 ")
            assert len(held) < 20
    finally:
        for client in held:
            client.close()
    server.wait_ready()

    samples = metrics_scrape(server.port)
    assert refused(samples, "body_too_large") == 1
    assert refused(samples, "login_locked") == 2
    assert refused(samples, "too_many_connections") == busy
    assert samples[("app_python_password_checks_waiting", ())] == 0
