"""The rule that lets an older version run on a database a newer one migrated (a canary, a
rollback): within a major version, migrations only add. django-migration-linter refuses, on the
SQL SQLite runs, what an older version could not live with: a dropped or renamed table or
column, a NOT NULL column it would not fill, a changed column.

A new major version may break the rule (an older major then refuses to start on its database:
counter/store/schema.py); lint() then passes its migration in the linter's `ignore_name`,
naming the version in a comment. Django's own apps' migrations (auth, sessions, ...) come with
a Django upgrade, which is at least a minor version: read them then, as the linter reads ours.
"""

import shutil

import pytest
from django_migration_linter import MigrationLinter

from support.upgrades import ADDITIVE, MIGRATIONS, RENAMING, migration_write


def lint() -> MigrationLinter:
    """The linter over the counter app's migrations (as sqlmigrate renders them for SQLite,
    which cannot happen inside a test's transaction: the tests take transactional_db)."""
    linter = MigrationLinter(include_apps=["counter"], all_warnings_as_errors=True, no_cache=True)
    linter.lint_all_migrations()
    return linter


def test_every_migration_only_adds(transactional_db):
    linter = lint()
    assert (linter.nb_erroneous, linter.nb_warnings) == (0, 0)
    assert linter.nb_valid == len(list(MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.py")))


@pytest.mark.parametrize(
    ("source", "erroneous"), [(ADDITIVE, 0), (RENAMING, 1)], ids=["additive", "renaming"]
)
def test_the_linter_refuses_a_renaming_migration_and_passes_an_additive_one(
    transactional_db, settings, tmp_path, monkeypatch, request, source, erroneous
):
    package = f"later_migrations_{request.node.callspec.id}"
    shutil.copytree(MIGRATIONS, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    migration_write(tmp_path / package, name="later", source=source)
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.MIGRATION_MODULES = {"counter": package}
    linter = lint()
    assert (linter.nb_erroneous, linter.nb_warnings) == (erroneous, 0)
