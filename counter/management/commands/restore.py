import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from counter.exceptions import SnapshotError
from counter.store.files import STAGED_SNAPSHOT, data_path
from counter.store.snapshots import snapshot_stage


class Command(BaseCommand):
    help = (
        "Check a snapshot made by `manage.py backup` (FILE, or - for stdin) and stage it: the"
        " next start of the server replaces the database with it, keeping the old one aside."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("snapshot", help="the snapshot file, or - to read it from stdin")

    def handle(self, *args: object, snapshot: str, **options: object) -> None:
        try:
            if snapshot == "-":
                total = snapshot_stage(sys.stdin.buffer)
            else:
                with Path(snapshot).open("rb") as source:
                    total = snapshot_stage(source)
        except (SnapshotError, OSError) as error:
            raise CommandError(f"not restored: {error}") from error
        self.stdout.write(
            f"staged a snapshot of {total} visits as {data_path(STAGED_SNAPSHOT)}."
            " It replaces the database at the next start of the server (on Kubernetes:"
            f" kubectl delete pod {settings.POD_NAME}); the current database is kept aside."
        )
