import contextlib
import sqlite3

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from counter.models import VisitCounter
from counter.store.files import STAGED_SNAPSHOT, data_path
from counter.store.snapshots import snapshot_apply_staged


def test_backup_of_a_missing_database_is_a_clear_error_and_creates_nothing(settings, tmp_path):
    settings.VISITS_DATABASE = settings.VISITS_DATA_DIR / "db.sqlite3"
    with pytest.raises(CommandError, match=r"cannot read .*db\.sqlite3: unable to open database"):
        call_command("backup", output=tmp_path / "copy.sqlite3")
    assert not settings.VISITS_DATABASE.exists()
    assert not (tmp_path / "copy.sqlite3").exists()


def total_of(db: sqlite3.Connection) -> int:
    return db.execute(f"SELECT total FROM {VisitCounter._meta.db_table}").fetchone()[0]


def test_a_staged_snapshot_is_written_into_the_open_database_not_renamed_over_it(
    settings, app_database
):
    """A replicator holding the database open (Litestream's sidecar starts before the app)
    must see the restored state: with the file renamed over, it would still read the old one."""
    settings.VISITS_DATABASE = settings.VISITS_DATA_DIR / "db.sqlite3"
    live = app_database(settings.VISITS_DATABASE, total=4, page_size=1024, wal=True)
    # An older version's snapshot: another page size, which SQLite cannot copy into WAL as is.
    app_database(data_path(STAGED_SNAPSHOT), total=7, page_size=4096, wal=False).close()
    assert total_of(live) == 4
    inode = settings.VISITS_DATABASE.stat().st_ino

    total, kept = snapshot_apply_staged()

    assert (total, total_of(live)) == (7, 7)  # the connection open before sees the snapshot
    assert settings.VISITS_DATABASE.stat().st_ino == inode
    assert live.execute("PRAGMA page_size").fetchone() == (1024,)
    assert live.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert live.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    (copy,) = kept
    with contextlib.closing(sqlite3.connect(copy)) as replaced:
        assert total_of(replaced) == 4
    assert not (data_path(STAGED_SNAPSHOT)).exists()
    assert snapshot_apply_staged() is None


def test_a_snapshot_staged_for_a_deleted_database_moves_in_and_its_old_wal_is_kept(
    settings, app_database
):
    settings.VISITS_DATABASE = settings.VISITS_DATA_DIR / "db.sqlite3"
    app_database(data_path(STAGED_SNAPSHOT), total=7, page_size=1024, wal=False).close()
    orphan = settings.VISITS_DATA_DIR / "db.sqlite3-wal"
    orphan.write_bytes(b"the WAL of a database deleted under the server")

    total, kept = snapshot_apply_staged()

    assert total == 7
    assert [path.name for path in kept] == [f"{kept[0].name.removesuffix('-wal')}-wal"]
    assert kept[0].read_bytes() == b"the WAL of a database deleted under the server"
    assert not orphan.exists()
    with contextlib.closing(sqlite3.connect(settings.VISITS_DATABASE)) as db:
        assert total_of(db) == 7
