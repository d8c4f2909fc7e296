"""The database's schema across versions of the app, for `manage.py prepare`.

A canary and a rollback make an older version run on a database a newer one has migrated. The
rule that makes this safe: within a major version, migrations only add (tables, nullable
columns, indexes), never drop, rename or tighten; counter/tests/test_migrations.py checks every
migration with django-migration-linter. So a version runs on a database migrated by a later
version of its major, saying so; on one migrated by a later major version it refuses, and says
how to go back.

Before it applies any migration to an existing database, `prepare` keeps a snapshot of it,
`db.sqlite3.before-<from>-to-<to>-<UTC time>`, restorable with `manage.py restore`; the last
MIGRATION_SNAPSHOTS_KEPT are kept. The version that last migrated the database is written in
the database itself (SQLite's `user_version`, in its header), so every snapshot, backup and
replica carries it.
"""

import dataclasses
import re
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.executor import MigrationExecutor

from counter.exceptions import SchemaError
from counter.store.files import data_dir, migration_snapshot, migration_snapshots
from counter.store.snapshots import snapshot_write

MIGRATION_SNAPSHOTS_KEPT = 3
# What a database that records no version was migrated by: every build before the version was
# recorded called itself 1.0.0.
UNRECORDED_VERSION = "1.0.0"
_VERSION = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})")


@dataclasses.dataclass(frozen=True)
class SchemaChange:
    """What `schema_migrate` found and did."""

    recorded: str  # the version that last migrated the database, before this start
    unknown: list[str]  # applied migrations this version does not have ("app.name")
    applied: list[str]  # the migrations this start applied
    snapshot: str | None  # the snapshot kept before applying them


def version_number(version: str) -> int:
    """A version X.Y.Z as one integer, as SQLite's user_version holds it: X * 10**6 + Y * 1000
    + Z."""
    match = _VERSION.fullmatch(version)
    if match is None:
        raise ValueError(f"version {version!r} is not MAJOR.MINOR.PATCH, each below 1000")
    major, minor, patch = map(int, match.groups())
    return major * 1_000_000 + minor * 1_000 + patch


def version_text(number: int) -> str:
    if number <= 0:
        return UNRECORDED_VERSION
    return f"{number // 1_000_000}.{number // 1_000 % 1_000}.{number % 1_000}"


def major(version: str) -> int:
    return version_number(version) // 1_000_000


def schema_version_read(connection: BaseDatabaseWrapper) -> str:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA user_version")
        return version_text(cursor.fetchone()[0])


def schema_version_write(connection: BaseDatabaseWrapper, version: str) -> None:
    with connection.cursor() as cursor:  # a PRAGMA takes no parameters; the number is an int
        cursor.execute(f"PRAGMA user_version = {version_number(version)}")


def schema_migrate() -> SchemaChange:
    """Apply this version's migrations (a snapshot first), or refuse a database that a later
    major version migrated (SchemaError, saying what to do)."""
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    loader = executor.loader
    recorded = schema_version_read(connection)
    unknown = sorted(
        f"{app}.{name}"
        for app, name in loader.applied_migrations
        if (app, name) not in loader.disk_migrations
    )
    if unknown and major(recorded) > major(settings.APP_VERSION):
        raise SchemaError(_refusal(recorded=recorded, unknown=unknown))
    plan = executor.migration_plan(loader.graph.leaf_nodes())
    applied = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
    snapshot = None
    if applied and loader.applied_migrations:  # an existing database: keep it as it was
        snapshot = str(migration_snapshot_take(old=recorded, new=settings.APP_VERSION))
    call_command("migrate", interactive=False, verbosity=0)
    if applied:
        schema_version_write(connection, settings.APP_VERSION)
    return SchemaChange(recorded=recorded, unknown=unknown, applied=applied, snapshot=snapshot)


def migration_snapshot_take(*, old: str, new: str) -> Path:
    """A snapshot of the database before version `new` migrates it from version `old`'s schema;
    only the newest MIGRATION_SNAPSHOTS_KEPT such snapshots are kept."""
    target = migration_snapshot(old=old, new=new)
    snapshot_write(target)
    for stale in migration_snapshots()[:-MIGRATION_SNAPSHOTS_KEPT]:
        stale.unlink(missing_ok=True)
    return target


def _refusal(*, recorded: str, unknown: list[str]) -> str:
    snapshots = [path.name for path in migration_snapshots()]
    where = f" Kept in {data_dir()}: {', '.join(snapshots)}." if snapshots else ""
    return (
        f"the database was migrated by version {recorded}, a later major version than this"
        f" one ({settings.APP_VERSION}), with migrations this version does not know"
        f" ({', '.join(unknown)}); they may have dropped or renamed what this version reads."
        f" Run version {major(recorded)}.x again, or go back to the database as it was before"
        " that upgrade (the visits counted since are then lost): `python manage.py restore"
        f" FILE` with the newest snapshot db.sqlite3.before-*-to-{recorded}-*, then start"
        f" again.{where}"
    )
