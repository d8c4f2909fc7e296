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

What a snapshot holds is checked before it is staged, and again before it is applied: an intact
database of this app, at a schema this version knows, with no schema object (table, index,
view, trigger) that this version's migrations (or Litestream, the backup sidecar) do not make,
as they make it, and none missing: a trigger of its own could reset or rewrite the count once
restored, and without the app's the total would no longer follow the visits.
Restoring another pod's database, or a lower count than the live one, is staged only when the
operator insists (`restore --force`).
"""

import contextlib
import dataclasses
import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

from counter.exceptions import SnapshotError, SnapshotRiskError
from counter.models import VisitCounter
from counter.store.database import COUNTER_ID
from counter.store.files import (
    STAGED_SNAPSHOT,
    VISITS_FILE,
    data_path,
    database_aside,
    database_files,
    database_path,
    file_replacement,
    visits_file_read,
)

SchemaObject = tuple[str, str, str, str]  # type, name, table, its SQL (whitespace collapsed)
_MADE = "snapshot-schema"  # the connection of the database made to compare a snapshot with
# SQLite's own objects, made by SQLite itself (autoindexes have no SQL).
_SQLITE_TABLES = {"sqlite_sequence", "sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4"}
# The tables the backup sidecar's Litestream adds to the database it replicates, as it makes
# them (v0.5, db.go), so its replicas and the snapshots of a pod with backup on carry them.
LITESTREAM_OBJECTS = {
    ("table", table, table, sql)
    for table, sql in [
        ("_litestream_seq", "CREATE TABLE _litestream_seq (id INTEGER PRIMARY KEY, seq INTEGER)"),
        ("_litestream_lock", "CREATE TABLE _litestream_lock (id INTEGER)"),
    ]
}


@dataclasses.dataclass(frozen=True)
class Snapshot:
    total: int
    pod: str | None  # whose database it is (VisitCounter.pod); None if never recorded


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


def snapshot_check(path: Path, *, name: str | None = None) -> Snapshot:
    """The total and pod a snapshot holds, if it is an intact database of this app at a schema
    this version knows and makes; SnapshotError otherwise, naming it `name` (its path)."""
    name = name or str(path)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check") if row[0] != "ok"]
            if problems:
                raise SnapshotError(f"{name} is damaged: {'; '.join(problems[:3])}")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            counter = VisitCounter._meta.db_table
            if not {counter, "django_migrations"} <= tables:
                raise SnapshotError(f"{name} is an SQLite database, but not one of this app")
            applied = set(db.execute("SELECT app, name FROM django_migrations"))
            objects = schema_objects(db)
            has_pod = "pod" in {row[1] for row in db.execute(f"PRAGMA table_info({counter})")}
            row = db.execute(
                f"SELECT total, {'pod' if has_pod else 'NULL'} FROM {counter} WHERE id = ?",
                (COUNTER_ID,),
            ).fetchone()
    except sqlite3.DatabaseError as error:
        raise SnapshotError(f"{name} is not an SQLite database ({error})") from error
    known = MigrationLoader(None).disk_migrations
    newer = sorted(migration for app, migration in applied - known.keys() if app == "counter")
    if newer:
        raise SnapshotError(
            f"{name} comes from a newer version of the app (migrations"
            f" {', '.join(newer)}): upgrade the app first, then restore"
        )
    made = schema_objects_made(applied)
    if foreign := _objects_foreign(objects, made | LITESTREAM_OBJECTS):
        raise SnapshotError(
            f"{name} holds schema objects this version of the app does not make:"
            f" {'; '.join(foreign)}. Once restored, a trigger of its own could rewrite or reset"
            " the count. Restore a snapshot `manage.py backup` made of this app's database; to"
            " keep this one, find out what they do, drop them with the sqlite3 shell (DROP"
            " TRIGGER name, ...), make any of the app's again as its migrations make them"
            " (counter/migrations/), and restore it again"
        )
    if missing := _objects_missing(objects, made):
        raise SnapshotError(
            f"{name} lacks schema objects this version of the app makes: {'; '.join(missing)}."
            " Once restored, the app would run without them: without its triggers, the total"
            " would no longer follow the visits. Restore a snapshot `manage.py backup` made of"
            " this app's database; to keep this one, make them with the sqlite3 shell as the"
            " app's migrations make them (counter/migrations/) and restore it again"
        )
    if row is None:
        raise SnapshotError(f"{name} has no visit counter: it was never prepared")
    return Snapshot(total=row[0], pod=row[1])


def schema_objects(db: sqlite3.Connection) -> set[SchemaObject]:
    """Every table, index, view and trigger of a database, but SQLite's own."""
    return {
        (kind, name, table, " ".join(sql.split()))
        for kind, name, table, sql in db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
        )
        if not (
            (kind == "table" and name in _SQLITE_TABLES)
            or (kind == "index" and name.startswith("sqlite_autoindex_") and sql is None)
        )
    }


def schema_objects_made(applied: set[tuple[str, str]]) -> set[SchemaObject]:
    """The schema objects this version's migrations make when they take a new database as far
    as the migrations `applied` (app, name): made in an in-memory database."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    known = applied & set(loader.graph.nodes)
    depth = {key: len(loader.graph.forwards_plan(key)) for key in known}
    # Each app's last applied migration: the others come before it.
    apps = {app for app, _ in known}
    targets = [max((key for key in known if key[0] == app), key=depth.get) for app in apps]
    # An alias of its own, since the migrations' Python code looks its connection up by alias;
    # Django's own SQLite backend, for the guard of counter/store/sqlite watches the live files.
    default = connections[DEFAULT_DB_ALIAS].settings_dict
    engine = "django.db.backends.sqlite3"
    connections.settings[_MADE] = {**default, "ENGINE": engine, "NAME": ":memory:"}
    try:
        made = connections[_MADE]
        MigrationExecutor(made).migrate(targets)
        return schema_objects(made.connection)
    finally:
        connections[_MADE].close()
        del connections[_MADE]
        del connections.settings[_MADE]


def _objects_foreign(objects: set[SchemaObject], made: set[SchemaObject]) -> list[str]:
    """Each of `objects` that is not in `made`, described."""
    names = {(kind, name) for kind, name, _, _ in made}
    return [
        f"{kind} {name} on {table}"
        + (", not as this version makes it" if (kind, name) in names else "")
        for kind, name, table, _ in sorted(objects - made)
    ]


def _objects_missing(objects: set[SchemaObject], made: set[SchemaObject]) -> list[str]:
    """Each of `made` that `objects` has none of by its name, described."""
    names = {(kind, name) for kind, name, _, _ in objects}
    return [
        f"{kind} {name} on {table}"
        for kind, name, table, _ in sorted(made)
        if (kind, name) not in names
    ]


def snapshot_risks(snapshot: Snapshot) -> list[str]:
    """What staging `snapshot` would cost this pod: its count replaced by another pod's, or by
    a lower one than it counts now (the database's total, or the visits file's if higher)."""
    risks = []
    if snapshot.pod is not None and snapshot.pod != settings.POD_NAME:
        risks.append(
            f"the snapshot is the database of pod {snapshot.pod}, and this is pod"
            f" {settings.POD_NAME}: this pod's own count would be replaced by that pod's"
        )
    live = _live_total()
    if live is not None and snapshot.total < live:
        risks.append(
            f"the snapshot counts {snapshot.total} visits, fewer than the {live} this pod counts"
            f" now: the {live - snapshot.total} visits between would be lost (keep them first:"
            " manage.py backup > FILE)"
        )
    return risks


def _live_total() -> int | None:
    """The count this pod serves, from the database or, if higher or the only one left, the
    visits file; None for a pod with neither."""
    totals = []
    query = f"SELECT total FROM {VisitCounter._meta.db_table} WHERE id = ?"
    with (
        contextlib.suppress(sqlite3.Error, TypeError),  # no database, no counter row
        contextlib.closing(database_connect()) as live,
    ):
        totals.append(live.execute(query, (COUNTER_ID,)).fetchone()[0])
    with contextlib.suppress(ValueError, OSError):
        totals.append(visits_file_read(data_path(VISITS_FILE)))
    return max((total for total in totals if total is not None), default=None)


def snapshot_stage(
    source: BinaryIO, *, name: str, force: bool = False
) -> tuple[Snapshot, list[str]]:
    """Check the snapshot `name` read from `source` and stage it for the next start; what it
    holds and what staging it risks (snapshot_risks). A risky one is staged only with `force`,
    else SnapshotRiskError; a snapshot staged before is then left as it was."""
    with file_replacement(data_path(STAGED_SNAPSHOT)) as tmp:
        with tmp.open("wb") as copy:
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        snapshot = snapshot_check(tmp, name=name)  # one that fails is removed, never staged
        risks = snapshot_risks(snapshot)
        if risks and not force:
            raise SnapshotRiskError(risks)
    return snapshot, risks


def snapshot_apply_staged() -> tuple[int, list[Path]] | None:
    """At start, before the server opens the database: write a staged snapshot into it, if
    there is one. Returns the restored total and what was kept aside (a copy of the replaced
    database; a WAL left by a deleted database)."""
    staged = data_path(STAGED_SNAPSHOT)
    if not staged.exists():
        return None
    total = snapshot_check(staged).total
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
