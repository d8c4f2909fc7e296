from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from counter.admin_user import AdminUserError, admin_user_ensure
from counter.snapshots import SnapshotError, snapshot_apply_staged
from counter.startup import DataDirError, counter_initialize, data_dir_check, database_check
from counter.visits_file import visits_file_sync


class Command(BaseCommand):
    help = (
        "Idempotent start-up work: check the data directory, apply a snapshot staged by"
        " `restore`, check the database, migrate, adopt a legacy visits file, rebuild the visits"
        " file from the database, ensure the admin user."
    )

    def handle(self, *args: object, **options: object) -> None:
        try:
            data_dir_check()
            restored = snapshot_apply_staged()
            database_check(path=Path(settings.DATABASES["default"]["NAME"]))
            call_command("migrate", interactive=False, verbosity=0)
            adopted = counter_initialize()
            total = visits_file_sync()
            admin = admin_user_ensure(
                username=settings.VISITS_ADMIN_USERNAME,
                password_hash=settings.VISITS_ADMIN_PASSWORD_HASH,
                password=settings.VISITS_ADMIN_PASSWORD,
            )
        except (DataDirError, SnapshotError, AdminUserError, DatabaseError, OSError) as error:
            raise CommandError(f"cannot start: {error}") from error
        finally:
            connections.close_all()
        if restored is not None:
            total_restored, kept = restored
            self.stdout.write(
                f"restored a snapshot of {total_restored} visits; the replaced database is {kept}"
            )
        if adopted is not None:
            self.stdout.write(f"adopted the count {adopted} from a visits file of an older version")
        self.stdout.write(
            f"ready: pod {settings.POD_NAME}, {total} visits, data in {settings.VISITS_DATA_DIR}"
        )
        self.stdout.write(admin)
