"""What a process keeps between requests, besides the count (the database holds that): caches,
an open lock file, a thread pool. One ProcessState owns all of it, `process.state`.

A process forked from one that has a state starts with a fresh one: threads do not survive a
fork, and a lock file opened before it would be shared with the parent. Each unit test gets a
fresh one too (counter/tests/conftest.py), so no test resets a module's globals by hand.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    from django.db.backends.base.base import BaseDatabaseWrapper
    from gevent.lock import BoundedSemaphore

    from counter.home_page import Frame
    from counter.store.locks import FileLock
    from counter.store.visits import PastDays


@dataclass(slots=True)
class ProcessState:
    """Each attribute is made by the module that uses it, when it first needs it."""

    past_days: PastDays | None = None  # counter/store/visits.py: the history window, a few seconds
    home_frame: Frame | None = None  # counter/home_page.py: the page rendered for that window
    writer_lock: FileLock | None = None  # counter/store/visits.py: the data directory's writer lock
    writer_lock_dir: object = None  # the VISITS_DATA_DIR it was opened for
    migrations_applied: bool = False  # counter/health.py: once true, stays true
    data_files_problem: str | None = None  # counter/store/data_files.py: set once, counting stops
    anchor: sqlite3.Connection | None = None  # counter/store/data_files.py: open for the lifetime
    anchor_names: tuple = ()  # the paths of the database, WAL and index it opened, resolved
    anchor_files: tuple = ()  # (st_dev, st_ino) of those files
    peer_pool: ThreadPoolExecutor | None = None  # counter/peers.py: asks the other pods
    password_checks: BoundedSemaphore | None = None  # counter/hashers.py, gevent only
    # counter/store/visits.py: the visits waiting to be counted, and the lock of who counts them
    # (made at first use: gevent patches threading after the fork that made this state)
    visits_queue: deque = field(default_factory=deque)
    counting_lock: threading.Lock | None = None
    store_database: BaseDatabaseWrapper | None = None  # counter/store/visits.py, gevent only

    def close(self) -> None:
        """Release the open file and the idle threads (a test's state, once the test is done)."""
        if self.writer_lock is not None:
            self.writer_lock.close()
        if self.anchor is not None:
            self.anchor.close()
        if self.store_database is not None:
            self.store_database.close()
        if self.peer_pool is not None:
            self.peer_pool.shutdown(wait=False)


state = ProcessState()


def process_state_renew() -> ProcessState:
    """Start this process over with a fresh state, and return it. The old one is left as it
    is: in a forked child its lock and threads belong to the parent."""
    global state
    state = ProcessState()
    return state


os.register_at_fork(after_in_child=process_state_renew)


def gevent_active() -> bool:
    """In a gevent worker (monkey-patched): not in tests, manage.py commands or sync workers."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")
