"""Other versions of the app for the upgrade tests.

The previous release: a git worktree of its commit (scripts/versions.env), from which the
upgrade e2e builds its image and takes its chart and kustomize base.

Later versions, made for the tests: a copy of the app's code under another version number,
with a migration this checkout does not have. ADDITIVE is what a later minor version may ship
(a nullable column on the table every visit writes); RENAMING is what only a new major version
may (a column the current code reads, renamed). Each follows the newest migration on disk,
whatever it is by then.
"""

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from support.tools import ROOT, VERSIONS

PREVIOUS_VERSION = VERSIONS["PREVIOUS_VERSION"]
PREVIOUS_COMMIT = VERSIONS["PREVIOUS_COMMIT"]

MIGRATIONS = ROOT / "counter" / "migrations"
MIGRATION_NAME = "upgrade_test"  # the later versions' migration: next_migration(MIGRATION_NAME)
# What the copy needs to run `manage.py prepare` and `serve`: no tests, no caches, no data.
APP_FILES = ["manage.py", "pyproject.toml", "gunicorn.conf.py", "visits_site", "counter"]

ADDITIVE = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("counter", "{latest}")]

    operations = [
        migrations.AddField(
            model_name="dailyvisits", name="referrer", field=models.TextField(null=True)
        ),
    ]
"""

RENAMING = """\
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("counter", "{latest}")]

    operations = [
        migrations.RenameField(
            model_name="loginfailures", old_name="failures", new_name="failed_logins"
        ),
    ]
"""


def latest_migration() -> str:
    """The name of the newest migration of the counter app in this checkout."""
    return max(path.stem for path in MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


def next_migration(name: str) -> str:
    """The full name of the next migration called `name`: 0003_name, ..."""
    return f"{int(latest_migration()[:4]) + 1:04d}_{name}"


def migration_write(folder: Path, *, name: str, source: str) -> None:
    """Write `source` (ADDITIVE, RENAMING) as next_migration(name) in `folder`, a copy of
    counter/migrations/."""
    (folder / f"{next_migration(name)}.py").write_text(source.format(latest=latest_migration()))


def app_copy(folder: Path, *, version: str, migration: str | None = None) -> Path:
    """This checkout's app as version `version` in `folder`, with the next migration written
    from `migration` (ADDITIVE, RENAMING) if given, and the static files collected here."""
    folder.mkdir(parents=True)
    for name in APP_FILES:
        source = ROOT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("tests", "__pycache__")
            shutil.copytree(source, folder / name, ignore=ignore)
        else:
            shutil.copy2(source, folder / name)
    pyproject = folder / "pyproject.toml"
    text = pyproject.read_text()
    current = text.split('version = "', 1)[1].split('"', 1)[0]
    pyproject.write_text(text.replace(f'version = "{current}"', f'version = "{version}"', 1))
    if migration is not None:
        migration_write(folder / "counter" / "migrations", name=MIGRATION_NAME, source=migration)
    (folder / "staticfiles").symlink_to(ROOT / "staticfiles")  # the tests' collectstatic
    return folder


@contextlib.contextmanager
def previous_release(folder: Path) -> Iterator[Path]:
    """A git worktree of the previous release's commit in `folder`, removed afterwards;
    LookupError, saying why, when this clone's history does not hold that commit."""
    path = folder / f"app-python-{PREVIOUS_VERSION}"
    added = subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), PREVIOUS_COMMIT],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if added.returncode != 0:
        raise LookupError(
            f"no worktree of the previous release {PREVIOUS_VERSION} ({PREVIOUS_COMMIT}):"
            f" {added.stderr.strip()}. A shallow clone lacks it: git fetch --unshallow"
        )
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
