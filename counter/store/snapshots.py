"""Snapshots of a pod's database: `manage.py backup` writes one, `manage.py restore` brings one
back.

A snapshot is made with SQLite's online backup API: one consistent, committed state, taken
while the server keeps counting (in WAL mode a reader does not stop the writers).

Replacing the database under a running server is not safe: its open connections would go on
writing the old file and its WAL. So `restore` only checks a snapshot and stages it as
`restore.sqlite3` beside the database; `prepare` applies a staged snapshot at the next start,
before any worker opens the database, keeping a copy of the replaced database aside. On
Kubernetes: `kubectl exec -i POD -- python manage.py restore - < FILE`, then
`kubectl delete pod POD`.

The snapshot is written into the database file, as one SQLite transaction, not renamed over it:
a replicator that already has the database open (the Litestream sidecar starts before the app)
sees an ordinary write and replicates the restored state. Renamed over, the file it holds would
no longer be the database, and it could go on replicating the replaced one.
"""

import contextlib
import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import BinaryIO

from django.db.migrations.loader import MigrationLoader

from counter.exceptions import SnapshotError
from counter.models import VisitCounter
from counter.store.database import COUNTER_ID
from counter.store.files import (
    STAGED_SNAPSHOT,
    data_path,
    database_aside,
    database_files,
    database_path,
    file_replacement,
)


def database_connect() -> sqlite3.Connection:
    """This pod's database, opened only if it exists (mode=rw): a missing one is never made
    empty, which would also cost a running server the visits in its WAL (guard.py)."""
    uri = f"file:{urllib.parse.quote(str(database_path()))}?mode=rw"
    return sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False)


def snapshot_write(target: Path, *, source: sqlite3.Connection | None = None) -> None:
    """A consistent copy of this pod's database at `target` (replaced atomically), read through
    `source` (an open connection) or a new connection."""
    with file_replacement(target) as tmp, contextlib.ExitStack() as stack:
        if source is None:
            source = database_connect()
            stack.callback(source.close)
        copy = stack.enter_context(contextlib.closing(sqlite3.connect(tmp)))
        source.backup(copy)
        # One self-contained file: no -wal or -shm beside it when it is opened later.
        copy.execute("PRAGMA journal_mode=DELETE")


def snapshot_check(path: Path) -> int:
    """The total a snapshot holds, if it is an intact database of this app at a schema this
    version knows; SnapshotError otherwise."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check") if row[0] != "ok"]
            if problems:
                raise SnapshotError(f"{path} is damaged: {'; '.join(problems[:3])}")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            if not {VisitCounter._meta.db_table, "django_migrations"} <= tables:
                raise SnapshotError(f"{path} is an SQLite database, but not one of this app")
            applied = {
                row[0]
                for row in db.execute("SELECT name FROM django_migrations WHERE app = 'counter'")
            }
            row = db.execute(
                f"SELECT total FROM {VisitCounter._meta.db_table} WHERE id = ?", (COUNTER_ID,)
            ).fetchone()
    except sqlite3.DatabaseError as error:
        raise SnapshotError(f"{path} is not an SQLite database ({error})") from error
    known = {name for app, name in MigrationLoader(None).disk_migrations if app == "counter"}
    if applied - known:
        raise SnapshotError(
            f"{path} comes from a newer version of the app (migrations"
            f" {', '.join(sorted(applied - known))}): upgrade the app first, then restore"
        )
    if row is None:
        raise SnapshotError(f"{path} has no visit counter: it was never prepared")
    return row[0]


def snapshot_stage(source: BinaryIO) -> int:
    """Check the snapshot read from `source` and stage it for the next start; its total."""
    with file_replacement(data_path(STAGED_SNAPSHOT)) as tmp:
        with tmp.open("wb") as copy:
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        total = snapshot_check(tmp)  # one that fails is removed, never staged
    return total


def snapshot_apply_staged() -> tuple[int, list[Path]] | None:
    """At start, before the server opens the database: write a staged snapshot into it, if
    there is one. Returns the restored total and what was kept aside (a copy of the replaced
    database; a WAL left by a deleted database)."""
    staged = data_path(STAGED_SNAPSHOT)
    if not staged.exists():
        return None
    total = snapshot_check(staged)
    database = database_path()
    kept = database_aside("replaced")
    if database.exists():
        with contextlib.closing(database_connect()) as live:
            snapshot_write(kept, source=live)  # with what its WAL holds
            with contextlib.closing(sqlite3.connect(staged)) as snapshot:
                _page_size_match(snapshot, live)
                snapshot.backup(live)
        staged.unlink()
        return total, [kept]
    # Nothing can have open a database that is not there: the snapshot moves in. A WAL and
    # index left by a deleted database must not be read as the snapshot's; they are kept.
    wal_and_index = zip(database_files(database)[1:], database_files(kept)[1:], strict=True)
    moved = [Path(path).replace(to) for path, to in wal_and_index if os.path.exists(path)]
    os.replace(staged, database)
    return total, moved


def _page_size_match(snapshot: sqlite3.Connection, live: sqlite3.Connection) -> None:
    """SQLite copies into a database in WAL mode only at its own page size: a snapshot of
    another page size (an older version's) is rebuilt at the database's first."""
    snapshot.execute("PRAGMA journal_mode=DELETE")  # a staged file may be in WAL mode
    (size,) = live.execute("PRAGMA page_size").fetchone()
    if snapshot.execute("PRAGMA page_size").fetchone()[0] != size:
        snapshot.execute(f"PRAGMA page_size={int(size)}")
        snapshot.execute("VACUUM")
