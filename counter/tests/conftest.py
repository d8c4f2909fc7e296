import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import date

import pytest

from counter.models import VisitCounter
from counter.process_local import process_local_close, process_local_renew
from counter.store.database import COUNTER_ID
from support.tools import ROOT

DAY = date(2026, 11, 24)


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Every module's per-process state fresh for each test, as a new worker process starts with
    it (counter/process_local.py); what a test opened is closed after it."""
    process_local_renew()
    yield
    process_local_close()


@pytest.fixture
def counter(db) -> VisitCounter:
    """A prepared database: the counter row exists, as `manage.py prepare` leaves it."""
    return VisitCounter.objects.create(pk=COUNTER_ID, total=0)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """A database `manage.py prepare` made: this version's schema, as a snapshot check wants."""
    data = tmp_path_factory.mktemp("prepared")
    env = {**os.environ, "VISITS_DATA_DIR": str(data), "DJANGO_SECRET_KEY": "unit-test-key"}
    prepare = [sys.executable, "manage.py", "prepare"]
    subprocess.run(prepare, cwd=ROOT, env=env, check=True, capture_output=True)
    return data / "db.sqlite3"


@pytest.fixture
def app_database(prepared, django_db_blocker):
    """Factory: app_database(path, total, page_size, wal) -> a connection to a copy of the
    prepared database at `path` holding `total` visits. The snapshot check makes a database
    of its own to compare with: access to databases is open for the test."""

    def make(path, *, total: int, page_size: int, wal: bool) -> sqlite3.Connection:
        shutil.copyfile(prepared, path)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(f"PRAGMA page_size={page_size}")
        db.execute("VACUUM")
        db.execute(f"PRAGMA journal_mode={'WAL' if wal else 'DELETE'}")
        table = VisitCounter._meta.db_table
        db.execute(f"UPDATE {table} SET total = ? WHERE id = ?", (total, COUNTER_ID))
        return db

    with django_db_blocker.unblock():
        yield make
