"""Every file the app keeps in its data directory (VISITS_DATA_DIR, the pod's volume), how one
is replaced whole, and how the `visits` file is read. Only this module names them: no other
builds a path in the directory. The bottom of the store (docs/how-it-works.md, "Architecture").

- `db.sqlite3`, with SQLite's `db.sqlite3-wal` and `db.sqlite3-shm` beside it: the count. Its
  path is settings.VISITS_DATABASE, as Django's DATABASES needs it before any app loads;
- `visits`: the total as plain text, for `cat` (visits_file.py keeps it, visits_file_read reads
  it);
- `.count.lock`, `.visits.lock`, `.cluster.lock`: file locks, for the visit writers
  (database.py), the `visits` file's writers (visits_file.py) and the cluster's counts
  (counter/peers.py);
- `.cluster.json`: every pod's count, kept for a moment for every worker (counter/peers.py);
- `restore.sqlite3`: a snapshot staged for the next start (snapshots.py, guard.py);
- `counting-stopped`: why counting stopped, for every worker of the pod (guard.py);
- `db.sqlite3.<kind>-<UTC time>`: copies of the database kept aside (database_aside); among
  them `db.sqlite3.before-<from>-to-<to>-<UTC time>`, the database as it was before the version
  <to> migrated it (schema.py, migration_snapshots);
- `.<name>.*.tmp`: the new content of `<name>` while it is written (file_replacement);
- `tmp*/snapshot.sqlite3`: a snapshot on its way to `backup`'s stdout (backup_scratch).
"""

import contextlib
import datetime
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

VISITS_FILE = "visits"
COUNT_LOCK = ".count.lock"
VISITS_LOCK = ".visits.lock"
CLUSTER_CACHE = ".cluster.json"
CLUSTER_LOCK = ".cluster.lock"
STAGED_SNAPSHOT = "restore.sqlite3"
COUNTING_STOPPED = "counting-stopped"
REPLACEMENTS = ".*.tmp"  # what file_replacement leaves behind when its process is killed
DATABASE_SUFFIXES = ("", "-wal", "-shm")  # the database, its WAL, its shared-memory index
MAX_COUNT = 2**63 - 1  # SQLite's largest integer: a count beyond it is garbage


def data_dir() -> Path:
    return Path(settings.VISITS_DATA_DIR)


def data_path(name: str) -> Path:
    return data_dir() / name


def database_path() -> Path:
    return Path(settings.VISITS_DATABASE)


def database_files(database: Path | str) -> list[str]:
    """The database's own file, its WAL and its index, named as SQLite names them."""
    return [f"{database}{suffix}" for suffix in DATABASE_SUFFIXES]


def data_file_of(path: Path) -> str | None:
    """What `path` is of the data directory, with symlinks followed and hard links and bind
    mounts found: "the live database /app/data/db.sqlite3", "in the data directory /app/data",
    ...; None for a path that is none of it (what an operator may overwrite)."""
    directory, target = data_dir().resolve(), path.resolve()
    whats = ["the live database", "the live database's WAL", "the live database's index"]
    named = dict(zip(database_files(database_path()), whats, strict=True))
    named[str(data_path(VISITS_FILE))] = "the visits file"
    for name, what in named.items():
        if Path(name).resolve() == target or _same_file(name, target):
            return f"{what} {name}"
    if target == directory or _same_file(target, directory):
        return f"the data directory {directory}"
    if any(_same_file(parent, directory) for parent in target.parents):
        return f"in the data directory {directory}"
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            if _same_file(entry, target):
                return f"a hard link to {entry}"
    return None


def _same_file(a: Path | str, b: Path | str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing
        return False


def database_aside(kind: str) -> Path:
    """Where a copy of the database is kept aside: `db.sqlite3.<kind>-<UTC time>`."""
    database = database_path()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return database.with_name(f"{database.name}.{kind}-{stamp}")


def migration_snapshot(*, old: str, new: str) -> Path:
    """Where the database is kept before version `new` migrates it from version `old`'s schema."""
    return database_aside(f"before-{old}-to-{new}")


def migration_snapshots() -> list[Path]:
    """The snapshots kept before migrations, oldest first."""
    found = database_path().parent.glob(f"{database_path().name}.before-*")
    return sorted(found, key=lambda path: path.stat().st_mtime_ns)


@contextlib.contextmanager
def file_replacement(path: Path) -> Iterator[Path]:
    """A new, empty temporary file beside `path` (`.<name>.*.tmp`, mode 0600) to write the new
    content into; it replaces `path` at once when the block ends, or is removed if the block
    fails. A reader sees the old content or the new, never part of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_replace(path: Path, text: str) -> None:
    """Replace `path` with `text` at once, readable by all (file_replacement)."""
    with file_replacement(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)


@contextlib.contextmanager
def backup_scratch() -> Iterator[Path]:
    """Where `backup` writes a snapshot on its way to stdout: on the volume (the pod's /tmp is
    small), in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(dir=data_dir()) as work:
        yield Path(work) / "snapshot.sqlite3"


def visits_file_read(path: Path) -> int | None:
    """The count a visits file holds; None if there is no file. Raises ValueError if garbage."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    value = text.strip()
    if not value.isdigit() or int(value) > MAX_COUNT:
        raise ValueError(f"{path} holds {text[:40]!r}, not a count of visits")
    return int(value)
