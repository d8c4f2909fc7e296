"""Versions of the app on one database, both ways, with real `manage.py prepare` and `serve`
processes on real SQLite files: a later version migrates (keeping a snapshot first), and this
version still runs on what it made, or refuses and says what to do.

The later versions are copies of this checkout under another version number, each with one
migration this checkout does not have (support/upgrades.py).
"""

from pathlib import Path

import pytest

from support.servers import database_total
from support.tools import APP_VERSION
from support.upgrades import ADDITIVE, MIGRATION_NAME, RENAMING, app_copy, next_migration

pytestmark = pytest.mark.server

MAJOR, MINOR, _ = map(int, APP_VERSION.split("."))
NEXT_MINOR = f"{MAJOR}.{MINOR + 1}.0"
NEXT_MAJOR = f"{MAJOR + 1}.0.0"
UNKNOWN = f"counter.{next_migration(MIGRATION_NAME)}"  # the later versions' migration


def visit(server, times: int) -> None:
    for _ in range(times):
        assert server.get("/")[0] == 200


def first_start(make_server, data: Path, *, visits: int) -> None:
    """This version's first start on `data`: `visits` counted, then stopped."""
    current = make_server("current", data_dir=data).start().wait_ready()
    visit(current, visits)
    assert current.stop() == 0


def later_version(make_server, tmp_path: Path, data: Path, *, version: str, migration: str):
    """A server (not started) of a copy of this app as `version`, with `migration` added."""
    app = app_copy(tmp_path / f"app-{version}", version=version, migration=migration)
    return make_server(f"v{version}", data_dir=data, app=app)


def test_a_later_minor_version_migrates_and_this_one_runs_on_its_database(make_server, tmp_path):
    data = tmp_path / "app-python-0"
    first_start(make_server, data, visits=5)
    later = later_version(make_server, tmp_path, data, version=NEXT_MINOR, migration=ADDITIVE)
    later.start().wait_ready()
    (snapshot,) = data.glob(f"db.sqlite3.before-{APP_VERSION}-to-{NEXT_MINOR}-*Z")
    assert (
        f"migrated from version {APP_VERSION} to {NEXT_MINOR} ({UNKNOWN});"
        f" the database as it was before is kept as {snapshot}" in later.log()
    )
    assert database_total(snapshot) == 5
    visit(later, 3)
    assert later.stop() == 0

    # A rollback: this version on the database the later one migrated and counted in.
    back = make_server("back", data_dir=data).start().wait_ready()
    assert (
        f"the database has migrations this version ({APP_VERSION}) does not know:"
        f" {UNKNOWN}, applied by version {NEXT_MINOR}. Within a major version"
        " migrations only add, so this version runs on it" in back.log()
    )
    assert back.visits() == 8
    visit(back, 2)
    back.wait_file(10)
    assert back.stop() == 0
    assert "Traceback" not in later.log() + back.log()

    # Back to the schema before the upgrade, as the output says: restore the snapshot. It
    # counts fewer visits than the database (5 of 10), so restore asks for --force.
    assert back.manage("restore", str(snapshot)).returncode == 1
    staged = back.manage("restore", "--force", str(snapshot))
    assert staged.returncode == 0, staged.stderr
    restored = make_server("restored", data_dir=data).start().wait_ready()
    assert restored.visits() == 5
    assert "does not know" not in restored.log()
    visit(restored, 1)
    assert restored.visits() == 6


def test_a_database_a_later_major_version_migrated_is_refused_with_what_to_do(
    make_server, tmp_path
):
    data = tmp_path / "app-python-0"
    first_start(make_server, data, visits=4)
    major = later_version(make_server, tmp_path, data, version=NEXT_MAJOR, migration=RENAMING)
    prepared = major.manage("prepare")
    assert prepared.returncode == 0, prepared.stderr
    (snapshot,) = data.glob(f"db.sqlite3.before-{APP_VERSION}-to-{NEXT_MAJOR}-*Z")

    refused = make_server("refused", data_dir=data)
    assert refused.run_to_exit() == 1
    log = refused.log()
    assert (
        f"cannot start: the database was migrated by version {NEXT_MAJOR}, a later major version"
        f" than this one ({APP_VERSION}), with migrations this version does not know"
        f" ({UNKNOWN})" in log
    )
    assert f"Run version {MAJOR + 1}.x again" in log
    assert "python manage.py restore FILE` with the newest snapshot" in log
    assert snapshot.name in log
    assert "Traceback" not in log

    staged = refused.manage("restore", str(snapshot))
    assert staged.returncode == 0, staged.stderr
    back = make_server("back", data_dir=data).start().wait_ready()
    assert back.visits() == 4
    visit(back, 1)
    assert back.visits() == 5
