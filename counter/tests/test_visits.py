import contextlib
import sqlite3
from datetime import timedelta

import pytest
from django.db import IntegrityError

from counter.exceptions import DataDirError
from counter.models import DailyVisits, VisitCounter
from counter.store import visits
from counter.store.files import data_path
from counter.store.startup import counter_initialize, data_dir_check, database_check
from counter.store.visits import visit_record, visits_current, visits_past_days
from counter.tests.conftest import DAY


def test_visit_record_counts_total_and_day(counter):
    assert visit_record(day=DAY).total == 1
    tally = visit_record(day=DAY)
    assert (tally.total, tally.today) == (2, 2)
    tally = visit_record(day=DAY + timedelta(days=1))
    assert (tally.total, tally.today) == (3, 1)
    assert VisitCounter.objects.get().total == 3
    assert dict(DailyVisits.objects.values_list("day", "visits")) == {
        DAY: 2,
        DAY + timedelta(days=1): 1,
    }


def test_visit_record_keeps_an_adopted_starting_count(counter):
    VisitCounter.objects.filter(pk=counter.pk).update(total=41)
    assert visit_record(day=DAY).total == 42


def test_visit_without_counter_row_is_refused_and_counts_nothing(db):
    with pytest.raises(IntegrityError, match="run manage.py prepare"):
        visit_record(day=DAY)
    assert not DailyVisits.objects.exists()


def test_visits_current_reads_without_counting(counter):
    visit_record(day=DAY)
    assert visits_current(day=DAY) == visits.VisitTally(total=1, today=1)
    assert visits_current(day=DAY + timedelta(days=1)) == visits.VisitTally(total=1, today=0)
    assert VisitCounter.objects.get().total == 1


def test_past_days_window_has_zeros_and_excludes_today(counter):
    visit_record(day=DAY - timedelta(days=2))
    visit_record(day=DAY - timedelta(days=2))
    visit_record(day=DAY)
    past = visits_past_days(today=DAY, days=3)
    assert past.days == (
        (DAY - timedelta(days=3), 0),
        (DAY - timedelta(days=2), 2),
        (DAY - timedelta(days=1), 0),
    )


def test_past_days_are_read_again_on_a_new_day(counter):
    visits_past_days(today=DAY, days=2)
    visit_record(day=DAY)
    assert visits_past_days(today=DAY + timedelta(days=1), days=2).days[-1] == (DAY, 1)


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
