"""What /readyz reports: whether this process can count visits and keep the visits file.

A probe writes nothing and closes nothing: it reads the database and asks the modules that do
the work what they found. The visits file is brought up to date by this process's FileKeeper
(counter/store/visits_file.py) every 0.25 s, which also replaces a connection that failed; its
last failure is what /readyz reports about the file.
"""

import os
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

from counter.exceptions import CounterMissingError, CountingStoppedError
from counter.process_local import ProcessLocal
from counter.store.guard import counting_stopped
from counter.store.visits import visits_total
from counter.store.visits_file import visits_file_problem


@dataclass
class _Readiness(ProcessLocal):
    migrations_applied: bool = False  # once true, stays true


_process = _Readiness()


def readiness_problem() -> str | None:
    """Why this process should not get traffic, or None when it is ready: counting stopped,
    migrations not applied, the data directory not writable, the database or the counter
    unreadable, or the visits file that cannot be kept (a directory in its place, read-only):
    an operator's mistake with the file makes the pod unready within a keeper's tick, and ready
    again once it is undone."""
    if (stopped := counting_stopped()) is not None:
        return f"counting stopped: {stopped}; restart the pod"
    try:
        if not _process.migrations_applied:
            executor = MigrationExecutor(connection)
            if executor.migration_plan(executor.loader.graph.leaf_nodes()):
                return "database migrations are not applied"
            _process.migrations_applied = True
        if not os.access(settings.VISITS_DATA_DIR, os.W_OK):
            return f"data directory {settings.VISITS_DATA_DIR} is not writable"
        visits_total()
    except CountingStoppedError as error:  # found here, by opening a connection
        return f"counting stopped: {error}; restart the pod"
    except (DatabaseError, CounterMissingError) as error:
        return f"database unavailable: {error}"
    return visits_file_problem()
