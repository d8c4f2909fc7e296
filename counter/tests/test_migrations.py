"""The rule that lets an older version run on a database a newer one migrated (a canary, a
rollback): within a major version, migrations only add. django-migration-linter refuses, on the
SQL SQLite runs, what an older version could not live with: a dropped or renamed table or
column, a NOT NULL column it would not fill, a changed column.

A new major version may break the rule (an older major then refuses to start on its database:
counter/store/schema.py); refusals() then skips its migration in the linter's `ignore_name`,
naming the version in a comment. Django's own apps' migrations (auth, sessions, ...) come with
a Django upgrade, which is at least a minor version: read them then, as the linter reads ours.

The linter reads the SQL of each migration (sqlmigrate) on a database no migration was applied
to: the test database applies them all first, so a migration that cannot even be applied (one
that drops a column the triggers use) would fail there, with SQLite's error instead of the
rule's.
"""

import contextlib
import io
import shutil
from collections.abc import Iterator

import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from django_migration_linter import MigrationLinter

from support.upgrades import ADDITIVE, MIGRATIONS, RENAMING, migration_write

DROPPING = """\
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("counter", "{latest}")]

    operations = [migrations.RemoveField(model_name="dailyvisits", name="visits")]
"""
# A migration that cannot even be turned into SQL: it removes a field that never existed.
UNREADABLE = DROPPING.replace('name="visits"', 'name="never_there"')


@pytest.fixture
def unmigrated(django_db_blocker, tmp_path) -> Iterator[str]:
    """The alias of an empty database, next to the test database and as configured."""
    alias = "unmigrated"
    # connections.settings is settings.DATABASES, which the linter reads too.
    connections.settings[alias] = {
        **connections.settings[DEFAULT_DB_ALIAS],
        "NAME": str(tmp_path / "unmigrated.sqlite3"),
    }
    with django_db_blocker.unblock():
        try:
            yield alias
        finally:
            connections[alias].close()
            del connections[alias]
            del connections.settings[alias]


def refusals(database: str) -> tuple[dict[str, str], int]:
    """Every migration of the counter app that does more than add, or whose SQL cannot even
    be made, with why; and how many it read."""
    linter = MigrationLinter(
        database=database, include_apps=["counter"], all_warnings_as_errors=True, no_cache=True
    )
    found, read = {}, 0
    for (app, name), migration in sorted(linter.migration_loader.disk_migrations.items()):
        if app != "counter":
            continue
        read += 1
        erroneous = linter.nb_erroneous
        said = io.StringIO()
        try:
            with contextlib.redirect_stdout(said):  # its first line names the migration
                linter.lint_migration(migration)
        except Exception as error:  # whatever it is, this migration is the one to fix
            found[f"{app}.{name}"] = f"cannot be checked: its SQL cannot even be made ({error!r})"
            continue
        if linter.nb_erroneous > erroneous:
            why = "; ".join(line.strip() for line in said.getvalue().splitlines()[1:])
            found[f"{app}.{name}"] = f"does more than add ({why})"
    return found, read


def refusal_message(refused: dict[str, str]) -> str:
    return "\n".join(
        f"migration {name} {why}. Within a major version migrations must"
        " only add (tables, nullable columns, indexes): the previous version runs on the"
        " database this one migrated (counter/store/schema.py)."
        for name, why in refused.items()
    )


def test_every_migration_only_adds(unmigrated):
    refused, read = refusals(unmigrated)
    assert not refused, refusal_message(refused)
    assert read == len(list(MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.py")))


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (ADDITIVE, None),
        (RENAMING, "does more than add (RENAMING columns"),
        (DROPPING, "does more than add (DROPPING columns"),
        (UNREADABLE, "cannot be checked: its SQL cannot even be made (KeyError('never_there'))"),
    ],
    ids=["additive", "renaming", "dropping", "unreadable"],
)
def test_the_rule_names_a_migration_that_does_more_than_add(
    unmigrated, settings, tmp_path, monkeypatch, request, source, reason
):
    package = f"later_migrations_{request.node.callspec.id}"
    shutil.copytree(MIGRATIONS, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    migration_write(tmp_path / package, name="later", source=source)
    (later,) = [path.stem for path in (tmp_path / package).glob("*_later.py")]
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.MIGRATION_MODULES = {"counter": package}
    refused, _ = refusals(unmigrated)
    if reason is None:
        assert f"counter.{later}" not in refused
        return
    assert refused[f"counter.{later}"].startswith(reason)
    message = refusal_message({f"counter.{later}": refused[f"counter.{later}"]})
    assert message.startswith(f"migration counter.{later} {reason}")
    assert "migrations must only add" in message
