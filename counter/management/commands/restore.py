import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from counter.exceptions import SnapshotError, SnapshotRiskError
from counter.store.files import STAGED_SNAPSHOT, data_path
from counter.store.snapshots import snapshot_stage


class Command(BaseCommand):
    help = (
        "Check a snapshot made by `manage.py backup` (FILE, or - for stdin) and stage it: the"
        " next start of the server replaces the database with it, keeping the old one aside."
        " One of another pod, or with fewer visits than this pod counts, needs --force."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("snapshot", help="the snapshot file, or - to read it from stdin")
        parser.add_argument(
            "--force",
            action="store_true",
            help="stage it even if it is another pod's database or counts fewer visits",
        )

    def handle(self, *args: object, snapshot: str, force: bool = False, **options: object) -> None:
        try:
            if snapshot == "-":
                found, risks = snapshot_stage(sys.stdin.buffer, name="the snapshot", force=force)
            else:
                with Path(snapshot).open("rb") as source:
                    found, risks = snapshot_stage(source, name=snapshot, force=force)
        except SnapshotRiskError as error:
            raise CommandError(
                f"not restored: {error}. If that is what you want, run it again with --force."
            ) from error
        except (SnapshotError, OSError) as error:
            raise CommandError(f"not restored: {error}") from error
        for risk in risks:
            self.stderr.write(f"warning (--force): {risk}")
        origin = f"pod {found.pod}'s" if found.pod else "a database that records no pod"
        self.stdout.write(
            f"staged a snapshot of {found.total} visits ({origin}) as"
            f" {data_path(STAGED_SNAPSHOT)}. It replaces the database at the next start of the"
            f" server (on Kubernetes: kubectl delete pod {settings.POD_NAME}); the current"
            " database is kept aside."
        )
