from collections.abc import Callable

from django.db.backends.sqlite3 import base

from counter.store.locks import sqlite_retry_wrapper

# Run before each new connection opens; one that raises refuses the connection. The guard over
# the database files adds its check when it is imported (counter/store/guard.py): only then can
# it have anything to refuse, since its state is made by its own functions.
connection_checks: list[Callable[[], None]] = []


class DatabaseWrapper(base.DatabaseWrapper):
    """Every connection Django opens on the pod's database, set up in one place: the
    connection_checks pass before it opens, and every statement, BEGIN IMMEDIATE included,
    waits for a locked database cooperatively (counter/store/locks.py; SQLite's own busy
    timeout is 0, settings.py)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.execute_wrappers.append(sqlite_retry_wrapper)

    def get_new_connection(self, conn_params: dict) -> base.Database.Connection:
        for check in connection_checks:
            check()
        return super().get_new_connection(conn_params)
