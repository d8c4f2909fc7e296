"""`manage.py backup` and `manage.py restore` against real servers and real SQLite files."""

import contextlib
import os
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
    result = pod1.manage("restore", "--force", "-", stdin=snapshot)  # another pod's: --force
    assert result.returncode == 0, result.stderr
    assert b"staged a snapshot of 7 visits (pod app-python-0's)" in result.stdout
    assert b"warning (--force): the snapshot is the database of pod app-python-0" in result.stderr
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


@pytest.mark.parametrize(
    ("target", "named"),
    [
        (lambda data, tmp: data / "db.sqlite3", "the live database"),
        (lambda data, tmp: data / "db.sqlite3-wal", "the live database's WAL"),
        (lambda data, tmp: data / "db.sqlite3-shm", "the live database's index"),
        (lambda data, tmp: data / "visits", "the visits file"),
        (lambda data, tmp: data / "copy.sqlite3", "in the data directory"),
        (lambda data, tmp: data / ".." / data.name / "db.sqlite3", "the live database"),
        (lambda data, tmp: symlink(tmp / "pod0.sqlite3", data / "db.sqlite3"), "the live database"),
        (lambda data, tmp: symlink(tmp / "out", data) / "x", "in the data directory"),
        (lambda data, tmp: hard_link(tmp / "visits", data / "visits"), "the visits file"),
    ],
    ids=[
        "database",
        "wal",
        "index",
        "visits",
        "new-file",
        "dot-dot",
        "symlink",
        "dir-link",
        "hard-link",
    ],  # fmt: skip
)
def test_backup_refuses_to_write_over_a_file_of_the_data_directory(
    make_server, tmp_path, target, named
):
    server = make_server().start().wait_ready()
    for _ in range(3):
        server.get("/")
    server.wait_file(3)
    database = server.data_dir / "db.sqlite3"
    before = {path.name: path.stat().st_ino for path in server.data_dir.iterdir()}
    output = target(server.data_dir, tmp_path)

    result = server.manage("backup", "--output", str(output))

    assert result.returncode == 1
    message = result.stderr.decode()
    assert f"not written: {output} is {named}" in message
    assert f"Write it outside {server.data_dir}, or to stdout: python manage.py backup > FILE" in (
        message
    )
    assert "Traceback" not in message
    assert {path.name: path.stat().st_ino for path in server.data_dir.iterdir()} == before
    assert database_total(database) == 3
    assert server.file_count() == "3\n"
    assert server.get("/")[0] == 200  # counting on
    assert server.visits() == 4


def symlink(path, to):
    path.symlink_to(to)
    return path


def hard_link(path, to):
    os.link(to, path)
    return path


FOREIGN = "holds schema objects this version of the app does not make: "
MISSING = "lacks schema objects this version of the app makes: "
DROP = (
    "drop them with the sqlite3 shell (DROP TRIGGER name, ...), make any of the app's again as"
    " its migrations make them (counter/migrations/), and restore it again"
)
MAKE = "make them with the sqlite3 shell as the app's migrations make them (counter/migrations/)"
TAMPERED = {  # name: (its SQL, what the refusal names, what it says to do)
    "a trigger that zeroes the total": (
        "CREATE TRIGGER zero_the_total AFTER INSERT ON counter_dailyvisits BEGIN"
        " UPDATE counter_visitcounter SET total = 0; END",
        FOREIGN + "trigger zero_the_total on counter_dailyvisits",
        DROP,
    ),
    "the app's trigger rewritten": (
        "DROP TRIGGER counter_dailyvisits_update;"
        " CREATE TRIGGER counter_dailyvisits_update AFTER UPDATE OF visits ON counter_dailyvisits"
        " BEGIN UPDATE counter_visitcounter SET total = 0 WHERE id = 1; END",
        FOREIGN
        + "trigger counter_dailyvisits_update on counter_dailyvisits, not as this version makes it",
        DROP,
    ),
    "the app's trigger dropped": (  # what following the advice above halfway leaves
        "DROP TRIGGER counter_dailyvisits_update",
        MISSING + "trigger counter_dailyvisits_update on counter_dailyvisits.",
        MAKE,
    ),
    "a view": (
        "CREATE VIEW totals AS SELECT total FROM counter_visitcounter",
        FOREIGN + "view totals",
        DROP,
    ),
    "an index": (
        "CREATE INDEX by_visits ON counter_dailyvisits (visits)",
        FOREIGN + "index by_visits",
        DROP,
    ),
    "a table": ("CREATE TABLE notes (text)", FOREIGN + "table notes on notes", DROP),
}


@pytest.mark.parametrize(("sql", "named", "advice"), TAMPERED.values(), ids=TAMPERED)
def test_restore_refuses_a_snapshot_whose_schema_this_version_does_not_make(
    make_server, tmp_path, sql, named, advice
):
    server = make_server().start().wait_ready()
    for _ in range(2):
        server.get("/")
    tampered = tmp_path / "tampered.sqlite3"
    tampered.write_bytes(server.manage("backup").stdout)
    with contextlib.closing(sqlite3.connect(tampered)) as db:
        db.executescript(sql)

    for force in ([], ["--force"]):  # --force does not get one through either
        result = server.manage("restore", *force, str(tampered))
        assert result.returncode == 1
        message = result.stderr.decode()
        assert f"not restored: {tampered} {named}" in message
        assert advice in message
        assert "Traceback" not in message
        assert not (server.data_dir / "restore.sqlite3").exists()
    untouched = tmp_path / "untouched.sqlite3"  # the same snapshot, as it was taken, is staged
    untouched.write_bytes(server.manage("backup").stdout)
    assert server.manage("restore", str(untouched)).returncode == 0


def test_restore_asks_for_force_before_another_pods_count_or_a_lower_one(make_server, tmp_path):
    pod0 = make_server("app-python-0").start().wait_ready()
    pod1 = make_server("app-python-1").start().wait_ready()
    for _ in range(7):
        pod0.get("/")
    for _ in range(3):
        pod1.get("/")
    staged = pod1.data_dir / "restore.sqlite3"

    result = pod1.manage("restore", "-", stdin=pod0.manage("backup").stdout)
    assert result.returncode == 1
    assert (
        "not restored: the snapshot is the database of pod app-python-0, and this is pod"
        " app-python-1: this pod's own count would be replaced by that pod's. If that is what"
        " you want, run it again with --force." in result.stderr.decode()
    )
    assert not staged.exists()

    own = tmp_path / "pod1.sqlite3"
    assert pod1.manage("backup", "--output", str(own)).returncode == 0  # 3 visits
    for _ in range(2):
        pod1.get("/")
    result = pod1.manage("restore", str(own))
    assert result.returncode == 1
    assert (
        "not restored: the snapshot counts 3 visits, fewer than the 5 this pod counts now: the 2"
        " visits between would be lost (keep them first: manage.py backup > FILE). If that is"
        " what you want, run it again with --force." in result.stderr.decode()
    )
    assert not staged.exists()

    result = pod1.manage("restore", "--force", str(own))
    assert result.returncode == 0, result.stderr
    assert b"warning (--force): the snapshot counts 3 visits, fewer than the 5" in result.stderr
    assert b"staged a snapshot of 3 visits (pod app-python-1's)" in result.stdout
    # A staged snapshot is not replaced by one that is refused.
    assert pod1.manage("restore", "-", stdin=pod0.manage("backup").stdout).returncode == 1
    assert database_total(staged) == 3
    assert pod1.stop() == 0
    pod1.start().wait_ready()
    assert pod1.visits() == 3
    assert pod0.visits() == 7
