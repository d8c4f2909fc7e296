import contextlib
import sqlite3

import pytest
from django.db import DEFAULT_DB_ALIAS, connections

from counter.exceptions import CountBackwardsError, CountingStoppedError
from counter.store.files import data_path
from counter.store.guard import (
    counting_stopped,
    data_files_anchor,
    data_files_changed,
    data_files_guard,
    data_files_rescue,
)
from counter.store.visits import visit_record
from counter.store.visits_file import FileKeeper, visits_file_sync
from counter.tests.conftest import DAY


@pytest.fixture
def database(settings):
    """A WAL database at settings.VISITS_DATABASE, held open as a server's connection holds it."""
    settings.VISITS_DATABASE = settings.VISITS_DATA_DIR / "db.sqlite3"
    with contextlib.closing(sqlite3.connect(settings.VISITS_DATABASE)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
        db.commit()
        yield settings.VISITS_DATABASE


def test_nothing_changed_while_the_open_files_are_those_at_their_paths(database):
    assert data_files_changed() is None


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_deleted_database_file_still_held_open_is_found(database, suffix):
    database.with_name(f"{database.name}{suffix}").unlink()
    assert data_files_changed() == (
        f"db.sqlite3{suffix} was deleted or replaced under the running server"
    )


def test_a_database_file_replaced_by_another_is_found(database, tmp_path):
    other = tmp_path / "other"
    other.write_bytes(database.read_bytes())
    other.replace(database)
    assert data_files_changed() == "db.sqlite3 was deleted or replaced under the running server"


def test_the_guard_stops_counting_when_the_anchors_files_changed(database, settings):
    settings.VISITS_DATABASE_MUST_EXIST = True
    data_files_anchor()
    data_files_guard()  # nothing changed: a new connection may open
    database.with_name("db.sqlite3-wal").unlink()
    with pytest.raises(CountingStoppedError, match="db.sqlite3-wal was deleted or replaced"):
        data_files_guard()
    assert (settings.VISITS_DATA_DIR / "counting-stopped").read_text() == (
        f"{counting_stopped()}\n"
    )


def test_a_process_that_stopped_counting_counts_nothing(counter):
    data_files_rescue("db.sqlite3-wal was deleted or replaced")
    with pytest.raises(CountingStoppedError, match="db.sqlite3-wal was deleted"):
        visit_record(day=DAY)
    counter.refresh_from_db()
    assert counter.total == 0


def test_no_new_connection_opens_once_counting_stopped(counter):
    """The engine runs the guard's check before it opens a connection (counter/store/sqlite/)."""
    data_files_rescue("db.sqlite3 was deleted or replaced")
    fresh = connections.create_connection(DEFAULT_DB_ALIAS)
    with pytest.raises(CountingStoppedError, match="db.sqlite3 was deleted or replaced"):
        fresh.ensure_connection()
    assert fresh.connection is None


def test_the_visits_file_never_follows_a_count_that_went_backwards(counter):
    visit_record(day=DAY)
    data_path("visits").write_text("5\n")  # what the database held before it lost visits
    with pytest.raises(CountBackwardsError, match="counts 1 visits, fewer than the 5"):
        visits_file_sync()
    assert data_path("visits").read_text() == "5\n"
    keeper = FileKeeper()
    keeper.check()
    assert "fewer than the 5" in keeper.problem
    assert visits_file_sync(backwards_ok=True) == 1  # prepare, after a restore
    assert data_path("visits").read_text() == "1\n"


def test_readyz_says_why_counting_stopped(client, counter):
    data_files_rescue("db.sqlite3 was deleted or replaced")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.content == (
        b"not ready: counting stopped: db.sqlite3 was deleted or replaced; restart the pod\n"
    )
