import logging
import time

import pytest

from counter.store.files import data_path, visits_file_read
from counter.store.visits import visit_record
from counter.store.visits_file import FileKeeper, visits_file_sync
from counter.tests.conftest import DAY


@pytest.mark.parametrize(("text", "value"), [("0\n", 0), ("41\n", 41), ("  7 \n", 7)])
def test_visits_file_read_parses_counts(tmp_path, text, value):
    path = tmp_path / "visits"
    path.write_text(text)
    assert visits_file_read(path) == value


@pytest.mark.parametrize("text", ["", "\n", "abc\n", "-3\n", "1.5\n", "12 13\n", "9" * 30])
def test_visits_file_read_rejects_garbage(tmp_path, text):
    path = tmp_path / "visits"
    path.write_text(text)
    with pytest.raises(ValueError, match="not a count of visits"):
        visits_file_read(path)


def test_visits_file_read_missing_is_none(tmp_path):
    assert visits_file_read(tmp_path / "visits") is None


def test_visits_file_sync_writes_the_database_total(counter):
    visit_record(day=DAY)
    visit_record(day=DAY)
    assert visits_file_sync() == 2
    assert data_path("visits").read_text() == "2\n"
    assert not list(data_path("").glob(".visits.*.tmp"))


def test_visits_file_sync_rebuilds_a_garbage_file(counter):
    visit_record(day=DAY)
    data_path("visits").write_text("garbage")
    visits_file_sync()
    assert data_path("visits").read_text() == "1\n"


def test_the_keeper_rewrites_the_file_when_the_total_moves_and_only_then(counter):
    keeper = FileKeeper()
    keeper.check()
    path = data_path("visits")
    assert path.read_text() == "0\n"
    written = path.stat().st_ino
    keeper.check()
    assert path.stat().st_ino == written  # the same total: the file is left alone
    visit_record(day=DAY)
    keeper.check()
    assert path.read_text() == "1\n"
    assert path.stat().st_ino != written  # replaced, not rewritten in place


def test_the_keeper_reports_a_file_it_cannot_write_once_and_its_recovery(counter, caplog):
    keeper = FileKeeper()
    data_path("visits").mkdir()  # an operator's mistake
    with caplog.at_level(logging.INFO, logger="counter.store.visits_file"):
        keeper.check()
        keeper.check()
        assert keeper.problem.startswith(f"cannot update the visits file {data_path('visits')}")
        data_path("visits").rmdir()
        keeper.check()
    assert keeper.problem is None
    assert data_path("visits").read_text() == "0\n"
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages  # the failure once, though it was seen twice
    assert messages[0].startswith("cannot update the visits file")
    assert messages[1] == "the visits file is up to date again"


@pytest.mark.django_db(transaction=True)
def test_the_keeper_thread_syncs_every_period_until_stopped(counter):
    keeper = FileKeeper(period=0.01)
    keeper.start()
    try:
        visit_record(day=DAY)
        deadline = time.monotonic() + 5
        while visits_file_read(data_path("visits")) != 1:
            assert time.monotonic() < deadline, "the thread never wrote the file"
            time.sleep(0.01)
    finally:
        keeper.stop()
