"""Start-up checks and set-up for `manage.py prepare`, before any worker serves."""

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction

from counter.exceptions import DataDirError
from counter.models import VisitCounter
from counter.store.database import COUNTER_ID
from counter.store.files import REPLACEMENTS, VISITS_FILE, data_dir, data_path, visits_file_read


def data_dir_check() -> None:
    """Create the data directory if needed and prove it is writable, or raise DataDirError."""
    directory = data_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as probe:
            probe.write(b"ok")
    except OSError as error:
        raise DataDirError(
            f"data directory {directory} is not writable by uid {os.getuid()}: {error}"
        ) from error
    for stale in directory.glob(REPLACEMENTS):  # left by a process killed mid-replace
        stale.unlink(missing_ok=True)


def database_check(*, path: Path) -> None:
    """Refuse a database SQLite cannot read or whose integrity check fails.

    Never replace it: a new empty database would silently reset the count to zero. Checked with
    a plain connection before Django opens (and would start using) the file.
    """
    if not path.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check") if row[0] != "ok"]
    except sqlite3.DatabaseError as error:
        problems = [str(error)]
    if problems:
        raise DataDirError(
            f"database {path} is damaged ({'; '.join(problems[:3])}). Refusing to start rather"
            " than replace it with an empty one: restore it from a backup or move it aside."
        )


def counter_initialize() -> int | None:
    """Create the counter row if this database has none, and record which pod's it is; return
    the adopted legacy count.

    A `visits` file found next to a new database was left by an earlier version of the app:
    its number becomes the starting count, once. Garbage in it stops the start-up rather than
    silently starting from zero.
    """
    with transaction.atomic():
        counter = VisitCounter.objects.filter(pk=COUNTER_ID)
        if counter.exists():
            counter.exclude(pod=settings.POD_NAME).update(pod=settings.POD_NAME)
            return None
        try:
            legacy = visits_file_read(data_path(VISITS_FILE))
        except ValueError as error:
            raise DataDirError(
                f"{error}. The database is new, so that file would be its starting count:"
                " fix the number or delete the file to start from 0."
            ) from error
        VisitCounter.objects.create(pk=COUNTER_ID, total=legacy or 0, pod=settings.POD_NAME)
    return legacy
