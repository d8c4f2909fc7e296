import contextlib
import sqlite3

import pytest

from counter.store.files import migration_snapshots
from counter.store.schema import (
    MIGRATION_SNAPSHOTS_KEPT,
    major,
    migration_snapshot_take,
    version_number,
    version_text,
)


def test_a_version_fits_sqlite_s_user_version_and_comes_back():
    assert version_number("1.1.0") == 1_001_000
    assert version_text(version_number("12.345.6")) == "12.345.6"
    assert major("2.0.1") == 2
    assert version_text(0) == "1.0.0"  # every build before versions were recorded said 1.0.0
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        version_number("1.1.0rc1")


def test_only_the_newest_snapshots_before_migrations_are_kept(settings):
    settings.VISITS_DATABASE = settings.VISITS_DATA_DIR / "db.sqlite3"
    with contextlib.closing(sqlite3.connect(settings.VISITS_DATABASE)) as db, db:
        db.execute("CREATE TABLE t (x)")
    taken = [migration_snapshot_take(old=f"1.{n}.0", new=f"1.{n + 1}.0") for n in range(5)]
    assert migration_snapshots() == taken[-MIGRATION_SNAPSHOTS_KEPT:]
    assert taken[-1].name.startswith("db.sqlite3.before-1.4.0-to-1.5.0-")
    with contextlib.closing(sqlite3.connect(taken[-1])) as copy:
        assert copy.execute("SELECT count(*) FROM t").fetchone() == (0,)
