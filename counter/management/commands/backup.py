import shutil
import sqlite3
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from counter.store.files import backup_scratch, data_dir, data_file_of
from counter.store.snapshots import snapshot_write


class Command(BaseCommand):
    help = (
        "Write a consistent snapshot of this pod's database to stdout (binary) or to --output,"
        " a file outside the data directory, while the server keeps counting. Restore it with"
        " `manage.py restore`."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--output", type=Path, help="write the snapshot to this file instead")

    def handle(self, *args: object, output: Path | None = None, **options: object) -> None:
        if output is not None and (ours := data_file_of(output)) is not None:
            raise CommandError(
                f"not written: {output} is {ours}. A backup never writes into the data"
                " directory, where it could replace the live database or the visits file."
                f" Write it outside {data_dir()}, or to stdout: python manage.py backup > FILE"
                f" (from outside the pod: kubectl exec {settings.POD_NAME} -- python manage.py"
                " backup > FILE)."
            )
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
