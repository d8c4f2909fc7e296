"""What /readyz reports: whether this process can count visits and keep the visits file."""

import os

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

from counter import process
from counter.exceptions import CountBackwardsError, CounterMissingError, CountingStoppedError
from counter.store.files import VISITS_FILE, data_path
from counter.store.visits import store_database_close
from counter.store.visits_file import visits_file_sync


def readiness_problem() -> str | None:
    """Why this process should not get traffic, or None when it is ready.

    Syncing the visits file proves at once that the database answers, the counter exists and
    the file can be written (not a directory, not read-only): an operator's mistake with the
    file makes the pod unready at the next probe, and ready again once it is undone.
    """
    owner = process.state
    try:
        if owner.data_files_problem is not None:
            raise CountingStoppedError(owner.data_files_problem)
        if not owner.migrations_applied:
            executor = MigrationExecutor(connection)
            if executor.migration_plan(executor.loader.graph.leaf_nodes()):
                return "database migrations are not applied"
            owner.migrations_applied = True
        if not os.access(settings.VISITS_DATA_DIR, os.W_OK):
            return f"data directory {settings.VISITS_DATA_DIR} is not writable"
        visits_file_sync()
    except CountingStoppedError as error:  # found here by opening a connection, or before
        return f"counting stopped: {error}; restart the pod"
    except (DatabaseError, CounterMissingError) as error:
        store_database_close()
        return f"database unavailable: {error}"
    except OSError as error:
        return f"cannot write the visits file {data_path(VISITS_FILE)}: {error}"
    except CountBackwardsError as error:
        return str(error)
    return None
