"""An operator deletes or replaces a database file under a running server
(counter/store/guard.py).

Each test counts visits from several clients, damages the files as a careless operator would,
and checks that the server stops counting, says why on /readyz and in its log, and, after a
restart, holds exactly the visits it acknowledged. Also: `prepare` refuses a database whose
count went below the visits file's.
"""

import http.client
import os
import shutil
import signal
import threading
import time
from collections import Counter

import pytest

from support.clients import http_request
from support.servers import database_total

pytestmark = pytest.mark.server


class Visitors:
    """Four clients visiting back to back; every answer is kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[int | str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._visit) for _ in range(4)]

    def _visit(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(http_request(self.port, "/")[0])
            except (OSError, http.client.HTTPException) as error:  # a worker killed mid-answer
                self.answers.append(type(error).__name__)

    def __enter__(self) -> "Visitors":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def wait_for(self, answered: int) -> None:
        deadline = time.monotonic() + 60
        while self.answers.count(200) < answered:
            assert time.monotonic() < deadline, Counter(self.answers)
            time.sleep(0.01)

    @property
    def acknowledged(self) -> int:
        return self.answers.count(200)


def wait_unready(server, reason: str) -> str:
    """/readyz until it answers 503 naming `reason`; its text."""
    deadline = time.monotonic() + 10
    while True:
        status, body, _ = server.get("/readyz")
        if status == 503 and reason in body.decode():
            return body.decode()
        assert time.monotonic() < deadline, (status, body, server.log()[-2000:])
        time.sleep(0.02)


def damage(path, how: str) -> None:
    if how == "deleted":
        path.unlink()
    else:  # an older copy moved into its place, as `mv` or `kubectl cp` of a new file would
        copy = path.with_name(f"{path.name}.old")
        shutil.copyfile(path, copy)
        os.replace(copy, path)


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("db.sqlite3-wal", "deleted"),
        ("db.sqlite3", "deleted"),
        ("db.sqlite3-shm", "deleted"),
        ("db.sqlite3", "replaced"),
    ],
)
def test_a_database_file_lost_under_the_server_loses_no_acknowledged_visit(make_server, name, how):
    server = make_server().start().wait_ready()
    with Visitors(server.port) as visitors:
        visitors.wait_for(1500)
        damage(server.data_dir / name, how)
        reason = wait_unready(server, f"{name} was deleted or replaced under the running server")
        # The worker that noticed is replaced, as after a crash: the new one stops at once
        # too (counting-stopped), instead of opening the damaged files.
        first, _ = server.worker_pids()
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while first in server.worker_pids() or len(server.worker_pids()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stopped = len(visitors.answers)
        while len(visitors.answers) < stopped + 200:  # both workers, the new one included
            time.sleep(0.01)
    assert set(visitors.answers[stopped:]) == {503}, Counter(visitors.answers[stopped:])
    assert server.get("/healthz")[0] == 200  # alive: nothing gets it restarted by itself
    assert "restart the pod" in reason
    assert "Restart the pod (kubectl delete pod app-python-0)" in server.log()
    assert (server.data_dir / "counting-stopped").read_text() == (
        f"{name} was deleted or replaced under the running server\n"
    )

    assert server.stop() == 0
    server.start().wait_ready()
    # None lost, none invented. The kill may cut answers of visits its worker had counted: a
    # visit whose answer the client never got may be in the count, one per answer cut at most.
    cut = sum(1 for answer in visitors.answers if isinstance(answer, str))
    counted = server.visits()
    answers = Counter(visitors.answers)
    assert visitors.acknowledged <= counted <= visitors.acknowledged + cut, answers
    server.wait_file(counted)
    log = server.log()
    assert f"restored a snapshot of {counted} visits" in log
    assert f"counting had stopped ({name} was deleted or replaced under the running" in log
    assert not (server.data_dir / "counting-stopped").exists()
    assert server.get("/")[0] == 200  # counting again


def test_prepare_refuses_a_database_that_went_backwards(make_server, tmp_path):
    server = make_server().start().wait_ready()
    for _ in range(3):
        server.get("/")
    older = tmp_path / "older.sqlite3"
    assert server.manage("backup", "--output", str(older)).returncode == 0
    for _ in range(4):
        server.get("/")
    server.wait_file(7)
    assert server.stop() == 0
    # While it is stopped, an older copy is put in place of the database, by hand.
    shutil.copyfile(older, server.data_dir / "db.sqlite3")

    assert server.run_to_exit() == 1
    log = server.log()
    assert "the database counts 3 visits, fewer than the 7 of the visits file" in log
    assert "accept the loss by deleting" in log
    assert server.file_count() == "7\n"  # the mark is kept for the next try

    (server.data_dir / "visits").unlink()  # the operator accepts the loss
    server.start().wait_ready()
    assert server.visits() == 3
    assert database_total(server.data_dir / "db.sqlite3") == 3
