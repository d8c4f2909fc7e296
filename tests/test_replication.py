"""Litestream replicating a pod's database while it counts: the app's own checkpoints and
cooperative lock retries (counter/store/locks.py) against a real `litestream replicate` beside
a real server, proven by restoring the replica."""

import threading
import time
from collections import Counter

import pytest

from support.clients import http_request
from support.litestream import Replicator
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
