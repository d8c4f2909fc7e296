import shutil
import sqlite3
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from counter.store.files import backup_scratch
from counter.store.snapshots import snapshot_write


class Command(BaseCommand):
    help = (
        "Write a consistent snapshot of this pod's database to stdout (binary) or to --output,"
        " while the server keeps counting. Restore it with `manage.py restore`."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--output", type=Path, help="write the snapshot to this file instead")

    def handle(self, *args: object, output: Path | None = None, **options: object) -> None:
        try:
            if output is not None:
                snapshot_write(output.absolute())
                return
            with backup_scratch() as snapshot:  # streamed, then removed
                snapshot_write(snapshot)
                with snapshot.open("rb") as data:
                    shutil.copyfileobj(data, sys.stdout.buffer)
                sys.stdout.buffer.flush()
        except sqlite3.Error as error:  # mode=rw: a missing database is not made empty
            raise CommandError(f"cannot read {settings.VISITS_DATABASE}: {error}") from error
        except OSError as error:
            raise CommandError(f"cannot write the snapshot: {error}") from error
