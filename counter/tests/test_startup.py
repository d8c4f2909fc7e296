import contextlib
import sqlite3

import pytest

from counter.exceptions import DataDirError
from counter.models import VisitCounter
from counter.store.files import data_path
from counter.store.startup import counter_initialize, data_dir_check, database_check


def test_counter_initialize_adopts_a_legacy_file_once(db):
    data_path("visits").write_text("41\n")
    assert counter_initialize() == 41
    assert VisitCounter.objects.get().total == 41
    data_path("visits").write_text("1000\n")
    assert counter_initialize() is None
    assert VisitCounter.objects.get().total == 41


def test_counter_initialize_without_file_starts_at_zero(db):
    assert counter_initialize() is None
    assert VisitCounter.objects.get().total == 0


def test_counter_initialize_records_whose_database_it_is(db, settings):
    settings.POD_NAME = "app-python-1"
    counter_initialize()
    assert VisitCounter.objects.get().pod == "app-python-1"
    settings.POD_NAME = "app-python-2"  # another pod's database restored here on purpose
    counter_initialize()
    assert VisitCounter.objects.get().pod == "app-python-2"
    VisitCounter.objects.update(pod=None)  # as a database of 1.2.0 comes, migrated
    counter_initialize()
    assert VisitCounter.objects.get().pod == "app-python-2"


def test_counter_initialize_refuses_garbage_for_a_new_database(db):
    data_path("visits").write_text("lots\n")
    with pytest.raises(DataDirError, match="fix the number or delete the file"):
        counter_initialize()
    assert not VisitCounter.objects.exists()


def test_data_dir_check_creates_the_directory(settings, tmp_path):
    settings.VISITS_DATA_DIR = tmp_path / "new" / "data"
    data_dir_check()
    assert settings.VISITS_DATA_DIR.is_dir()


def test_data_dir_check_removes_stale_temp_files():
    stale = data_path(".visits.abc123.tmp")
    stale.write_text("5\n")
    data_dir_check()
    assert not stale.exists()


def test_data_dir_check_fails_clearly_when_unusable(settings, tmp_path):
    (tmp_path / "a-file").write_text("")
    settings.VISITS_DATA_DIR = tmp_path / "a-file" / "data"
    with pytest.raises(DataDirError, match="is not writable by uid"):
        data_dir_check()


def test_database_check_refuses_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "db.sqlite3"
    path.write_bytes(b"this is not an SQLite database, it is garbage" * 100)
    with pytest.raises(DataDirError, match=r"\(file is not a database\)\. Refusing to start"):
        database_check(path=path)
    assert path.read_bytes().startswith(b"this is not an SQLite database")


def test_database_check_refuses_a_damaged_database(tmp_path):
    path = tmp_path / "db.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        db.executemany("INSERT INTO t (body) VALUES (?)", [("x" * 500,)] * 200)
    data = bytearray(path.read_bytes())
    data[4096 * 2 : 4096 * 2 + 200] = b"\xff" * 200  # smash a b-tree page, keep the header
    path.write_bytes(bytes(data))
    with pytest.raises(DataDirError, match="is damaged"):
        database_check(path=path)


def test_database_check_accepts_a_healthy_database_and_a_missing_one(tmp_path):
    database_check(path=tmp_path / "missing.sqlite3")
    path = tmp_path / "db.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    database_check(path=path)
