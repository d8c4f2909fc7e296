"""The pod's database as the store uses it: the connection its statements run on, the writer
lock that lets one process of the pod write at a time, and the counter row's id.

Every statement of the store that counts or reads the count runs on `store_database()`: in a
gevent worker, one connection for the whole process. The ORM's own work (admin, sessions,
logins) stays on Django's connection of its thread or greenlet.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from counter.concurrency import gevent_active
from counter.process_local import ProcessLocal
from counter.store.files import COUNT_LOCK, data_path
from counter.store.locks import FileLock

COUNTER_ID = 1  # the counter's single row (counter/models.py)


@dataclass
class _Database(ProcessLocal):
    shared: BaseDatabaseWrapper | None = None  # gevent only: the greenlets' one connection
    writer_lock: FileLock | None = None
    writer_lock_dir: object = None  # the VISITS_DATA_DIR it was opened for

    def close(self) -> None:
        if self.writer_lock is not None:
            self.writer_lock.close()
        if self.shared is not None:
            self.shared.close()


_process = _Database()


def store_database() -> BaseDatabaseWrapper:
    """The connection the store's statements run on.

    In a gevent worker, one for the whole process, shared by its greenlets: Django's own connections
    are one per greenlet there, and a connection per client connection cost more CPU to open than
    its visits' statements, with a page cache that every other connection's write made stale
    (docs/performance-history.md, "Latency under load"). Sharing is safe because each statement of
    the store is a single autocommit statement that runs to its end without yielding to another
    greenlet, never inside a transaction. Elsewhere (sync workers, management commands, tests),
    Django's connection of this thread.
    """
    if not gevent_active():
        return connections[DEFAULT_DB_ALIAS]
    if _process.shared is None:
        database = connections.create_connection(DEFAULT_DB_ALIAS)
        database.inc_thread_sharing()  # to Django, each greenlet is a thread of its own
        _process.shared = database
    return _process.shared


def store_database_close() -> None:
    """After a database error: the next statement opens a fresh connection, once the cause is
    gone (this greenlet's Django connection too). A visit waiting for the writer lock with the
    connection closed under it fails with a database error: a 503, nothing counted."""
    connection.close()
    if _process.shared is not None:
        _process.shared.close()


def visits_writer_lock() -> FileLock:
    """This process's lock on the data directory's writer lock file: one writer at a time in the
    pod. Opened once per directory (tests change it), compared by identity: building and
    comparing paths on every visit cost more than the lock. Open no connection while holding
    it: opening one may need the guard, whose rescue takes it (counter/store/guard.py)."""
    directory = settings.VISITS_DATA_DIR
    if _process.writer_lock is None or _process.writer_lock_dir is not directory:
        if _process.writer_lock is not None:
            _process.writer_lock.close()
        _process.writer_lock = FileLock(data_path(COUNT_LOCK))
        _process.writer_lock_dir = directory
    return _process.writer_lock
