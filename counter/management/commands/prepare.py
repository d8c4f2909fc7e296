from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from counter.admin_user import admin_user_ensure
from counter.exceptions import AdminUserError, CountBackwardsError, StoreError
from counter.log import startup_line
from counter.store.files import VISITS_FILE, data_path
from counter.store.guard import data_files_stopped_clear
from counter.store.schema import schema_migrate
from counter.store.snapshots import snapshot_apply_staged
from counter.store.startup import counter_initialize, data_dir_check, database_check
from counter.store.visits_file import visits_file_sync


class Command(BaseCommand):
    help = (
        "Idempotent start-up work: check the data directory, apply a snapshot staged by"
        " `restore`, check the database, migrate (a snapshot first), or refuse a database a later"
        " major version migrated, adopt a legacy visits file, rebuild the visits file from the"
        " database, ensure the admin user."
    )

    def _write(self, message: str) -> None:
        """A line of start-up output, in the settings' log format."""
        self.stdout.write(startup_line(message, logger=__name__))

    def handle(self, *args: object, **options: object) -> None:
        try:
            data_dir_check()
            restored = snapshot_apply_staged()
            stopped = data_files_stopped_clear()
            database_check(path=settings.VISITS_DATABASE)
            schema = schema_migrate()
            adopted = counter_initialize()
            # A staged snapshot may go back in time on purpose; otherwise a count below the
            # visits file's means the database lost acknowledged visits (guard.py).
            total = visits_file_sync(backwards_ok=restored is not None)
            admin = admin_user_ensure(
                username=settings.VISITS_ADMIN_USERNAME,
                password_hash=settings.VISITS_ADMIN_PASSWORD_HASH,
                password=settings.VISITS_ADMIN_PASSWORD,
            )
        except CountBackwardsError as error:
            raise CommandError(
                f"cannot start: {error}. Refusing to serve a count that went backwards: restore"
                " a snapshot that has those visits (manage.py restore), or accept the loss by"
                f" deleting {data_path(VISITS_FILE)} and starting again."
            ) from error
        except (StoreError, AdminUserError, DatabaseError, OSError) as error:
            raise CommandError(f"cannot start: {error}") from error
        finally:
            connections.close_all()
        if stopped is not None:
            self._write(f"counting had stopped ({stopped}); it starts again")
        if restored is not None:
            total_restored, kept = restored
            self._write(
                f"restored a snapshot of {total_restored} visits; kept aside:"
                f" {', '.join(map(str, kept)) or 'nothing (there was no database)'}"
            )
        if schema.unknown:
            self.stdout.write(
                f"the database has migrations this version ({settings.APP_VERSION}) does not"
                f" know: {', '.join(schema.unknown)}, applied by version {schema.recorded}. Within"
                " a major version migrations only add, so this version runs on it"
            )
        if schema.snapshot is not None:
            self.stdout.write(
                f"migrated from version {schema.recorded} to {settings.APP_VERSION}"
                f" ({', '.join(schema.applied)}); the database as it was before is kept as"
                f" {schema.snapshot} (manage.py restore takes it back)"
            )
        if adopted is not None:
            self._write(f"adopted the count {adopted} from a visits file of an older version")
        self._write(
            f"ready: pod {settings.POD_NAME}, {total} visits, data in {settings.VISITS_DATA_DIR}"
        )
        self._write(admin)
