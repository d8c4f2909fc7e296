"""Litestream replicating a pod's database while it counts: the app's own checkpoints and
cooperative lock retries (counter/store/locks.py) against a real `litestream replicate` beside
a real server, proven by restoring the replica."""

import contextlib
import sqlite3
import threading
import time
from collections import Counter

import pytest

from support.clients import http_request
from support.litestream import Replicator
from support.servers import free_port
from support.tools import LITESTREAM_MISSING, litestream_binary

LITESTREAM = litestream_binary()

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(LITESTREAM is None, reason=LITESTREAM_MISSING),
]

CLIENTS = 8
VISITS_EACH = 400


@pytest.fixture
def replicator(tmp_path):
    """Factory: replicator(server) -> a started `litestream replicate` of the server's database
    to a file replica in tmp_path. Stopped at the end."""
    started: list[Replicator] = []

    def start(server) -> Replicator:
        replication = Replicator(
            LITESTREAM,
            server.data_dir / "db.sqlite3",
            tmp_path / "replica",
            tmp_path / "litestream.log",
            interval="100ms",
        ).start()
        started.append(replication)
        return replication

    yield start
    for replication in started:
        replication.stop()


def test_the_replica_catches_up_with_every_visit_counted_under_load(
    make_server, replicator, tmp_path
):
    server = make_server().start().wait_ready()
    replication = replicator(server)
    answers: list[int] = []

    def visit() -> None:
        for _ in range(VISITS_EACH):
            try:
                answers.append(http_request(server.port, "/", timeout=10)[0])
            except OSError as error:
                answers.append(repr(error))

    clients = [threading.Thread(target=visit) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()

    # Litestream's write locks (its checkpoints) never outlast the app's retry: no 503.
    assert Counter(answers) == {200: CLIENTS * VISITS_EACH}
    assert server.visits() == CLIENTS * VISITS_EACH
    deadline = time.monotonic() + 60
    restored = None
    while restored != CLIENTS * VISITS_EACH:
        assert time.monotonic() < deadline, (
            f"the replica restores {restored} visits, the server counted {CLIENTS * VISITS_EACH}:"
            f"\n{replication.log()[-3000:]}"
        )
        restored = replication.restored_total(tmp_path / "restored.sqlite3")
    assert replication.process.poll() is None, replication.log()[-3000:]
    assert "level=ERROR" not in replication.log()
    assert replication.stop() == 0


def test_the_sidecars_metrics_are_relayed_on_their_own_port_and_its_profiler_is_not(
    make_server, tmp_path
):
    """The chart's layout: Litestream's metrics (and Go's profiler) on loopback only; the app
    answers GET /metrics on the backup-metrics port with them, and nothing else there
    (visits_site/backup_metrics.py)."""
    litestream_port, relay_port = free_port(), free_port()
    server = (
        make_server(
            VISITS_BACKUP_METRICS_URL=f"http://127.0.0.1:{litestream_port}/metrics",
            VISITS_BACKUP_METRICS_PORT=str(relay_port),
            GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{relay_port}",
        )
        .start()
        .wait_ready()
    )
    relay = http_request(relay_port, "/metrics")
    assert relay[0] == 503 and b"did not answer" in relay[1], relay[:2]  # no sidecar yet
    replication = Replicator(LITESTREAM, server.data_dir / "db.sqlite3", tmp_path / "replica",
                             tmp_path / "litestream.log", interval="100ms",
                             metrics=f"127.0.0.1:{litestream_port}").start()  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while (relay := http_request(relay_port, "/metrics"))[0] != 200:
            assert time.monotonic() < deadline, relay[:2]
            time.sleep(0.1)
        profiler = http_request(litestream_port, "/debug/pprof/")[0]
        relayed_profiler = http_request(relay_port, "/debug/pprof/")
        visit_there = http_request(relay_port, "/")[0]
        app_metrics = http_request(server.port, "/metrics")[1]
    finally:
        replication.stop()
    assert b"litestream_" in relay[1] and b"app_python_" not in relay[1]
    assert relay[2].getheader("Content-Type").startswith("text/plain")
    assert profiler == 200  # there, on loopback: what must not leave the pod
    assert relayed_profiler[0] == 404 and b"only GET /metrics" in relayed_profiler[1]
    assert visit_there == 404 and server.visits() == 0  # that port counts nothing
    assert b"app_python_" in app_metrics and b"litestream_" not in app_metrics
    assert http_request(server.port, "/healthz")[0] == 200


def test_a_snapshot_of_a_replicated_database_restores_with_litestreams_tables(
    make_server, replicator, tmp_path
):
    """Litestream adds two tables of its own to the database it replicates; `manage.py
    restore`, which refuses any schema object the app does not make, takes those."""
    server = make_server().start().wait_ready()
    replicator(server)
    for _ in range(5):
        server.get("/")
    database = server.data_dir / "db.sqlite3"
    deadline = time.monotonic() + 30
    while not {"_litestream_seq", "_litestream_lock"} <= tables_of(database):
        assert time.monotonic() < deadline, tables_of(database)
        time.sleep(0.1)
    snapshot = tmp_path / "snapshot.sqlite3"
    assert server.manage("backup", "--output", str(snapshot)).returncode == 0
    assert {"_litestream_seq", "_litestream_lock"} <= tables_of(snapshot)
    result = server.manage("restore", str(snapshot))
    assert result.returncode == 0, result.stderr
    assert b"staged a snapshot of 5 visits" in result.stdout


def tables_of(path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
