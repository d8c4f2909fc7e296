"""`manage.py backup` and `manage.py restore` against real servers and real SQLite files."""

import contextlib
import sqlite3
import threading

import pytest

from support.clients import http_request
from support.servers import database_total

pytestmark = pytest.mark.server


def test_a_backup_while_visits_are_counted_is_a_consistent_snapshot(make_server, tmp_path):
    server = make_server().start().wait_ready()
    for _ in range(5):
        server.get("/")
    stop = threading.Event()
    answered = []

    def visit() -> None:
        while not stop.is_set():
            answered.append(http_request(server.port, "/")[0])

    visitor = threading.Thread(target=visit)
    visitor.start()
    try:
        result = server.manage("backup")
    finally:
        stop.set()
        visitor.join()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"SQLite format 3\0")  # binary-safe on stdout
    snapshot = tmp_path / "pod0.sqlite3"
    snapshot.write_bytes(result.stdout)
    assert 5 <= database_total(snapshot) <= server.visits()
    assert set(answered) == {200}  # the server kept counting meanwhile
    assert not list(server.data_dir.glob("tmp*"))  # nothing left on the volume

    to_file = tmp_path / "out" / "copy.sqlite3"
    to_file.parent.mkdir()
    assert server.manage("backup", "--output", str(to_file)).returncode == 0
    assert database_total(to_file) == server.visits()


def test_a_snapshot_restored_into_a_running_pod_takes_effect_at_its_next_start(make_server):
    pod0 = make_server("app-python-0").start().wait_ready()
    pod1 = make_server("app-python-1").start().wait_ready()
    for _ in range(7):
        pod0.get("/")
    for _ in range(3):
        pod1.get("/")
    snapshot = pod0.manage("backup").stdout
    result = pod1.manage("restore", "-", stdin=snapshot)
    assert result.returncode == 0, result.stderr
    assert b"staged a snapshot of 7 visits" in result.stdout
    assert pod1.visits() == 3  # staged only: the running server is not disturbed
    pod1.get("/")
    assert pod1.stop() == 0
    pod1.start().wait_ready()
    assert pod1.visits() == 7
    pod1.wait_file(7)
    assert "restored a snapshot of 7 visits" in pod1.log()
    (kept,) = pod1.data_dir.glob("db.sqlite3.replaced-*[0-9]Z")
    assert database_total(kept) == 4  # the replaced database, with its last visit, kept aside
    assert not (pod1.data_dir / "restore.sqlite3").exists()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: path.write_bytes(b"not a database at all" * 100), "not an SQLite database"),
        (
            lambda path: sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit(),
            "not one of this app",
        ),
    ],
)
def test_restore_refuses_what_is_not_this_apps_database(make_server, tmp_path, make, reason):
    server = make_server().start().wait_ready()
    bad = tmp_path / "bad.sqlite3"
    make(bad)
    result = server.manage("restore", str(bad))
    assert result.returncode == 1
    assert reason in result.stderr.decode()
    assert not (server.data_dir / "restore.sqlite3").exists()


def test_restore_refuses_a_snapshot_from_a_newer_schema(make_server, tmp_path):
    server = make_server().start().wait_ready()
    newer = tmp_path / "newer.sqlite3"
    newer.write_bytes(server.manage("backup").stdout)
    with contextlib.closing(sqlite3.connect(newer)) as db, db:
        db.execute(
            "INSERT INTO django_migrations (app, name, applied)"
            " VALUES ('counter', '9999_from_the_future', '2030-01-01')"
        )
    result = server.manage("restore", str(newer))
    assert result.returncode == 1
    assert "comes from a newer version of the app (migrations 9999_from_the_future)" in (
        result.stderr.decode()
    )
