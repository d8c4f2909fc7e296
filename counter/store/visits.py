"""Counting visits: the pod's SQLite database is the source of truth.

Hot path (every GET /): writers are serialized by a file lock before they reach SQLite, then one
autocommit upsert counts the visit (with those of the same process waiting beside it) in today's
row and, through triggers, in the total. SQLite
itself is told not to wait for its lock (counter/store/locks.py: its busy handler would stall a
gevent worker), and a file lock wakes the next writer as soon as it is free. The `visits` file
is kept by counter/store/visits_file.py, off the request path. Every statement here runs on
`store_database()`: in a gevent worker, one connection for the whole process.
"""

import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from counter import process
from counter.exceptions import CounterMissingError, CountingStoppedError
from counter.models import DailyVisits, VisitCounter
from counter.store.files import COUNT_LOCK, data_path
from counter.store.locks import FileLock, sqlite_retry

COUNTER_ID = 1
MAX_COUNT = 2**63 - 1

# RETURNING reports values as the statement saw them, before AFTER triggers ran
# (sqlite.org/lang_returning.html): the subquery is the total without this visit.
_VISIT = (  # run on the sqlite3 connection itself, hence `?`
    f"INSERT INTO {DailyVisits._meta.db_table} (day, visits) VALUES (?2, ?1)"
    " ON CONFLICT (day) DO UPDATE SET visits = visits + ?1"
    f" RETURNING visits, (SELECT total FROM {VisitCounter._meta.db_table} WHERE id = {COUNTER_ID})"
)
_TOTAL = f"SELECT total FROM {VisitCounter._meta.db_table} WHERE id = {COUNTER_ID}"
_CURRENT = (
    f"SELECT total, (SELECT visits FROM {DailyVisits._meta.db_table} WHERE day = %s)"
    f" FROM {VisitCounter._meta.db_table} WHERE id = {COUNTER_ID}"
)
_PAST_DAYS = f"SELECT day, visits FROM {DailyVisits._meta.db_table} WHERE day >= %s AND day < %s"
PAST_DAYS_TTL = 10.0


def store_database() -> BaseDatabaseWrapper:
    """The connection this module's statements run on.

    In a gevent worker, one for the whole process, shared by its greenlets. Django's own
    connections are one per greenlet there, so each client connection opened one to count its
    visits: over a millisecond of CPU each, and a page cache of its own that every other
    connection's write made stale (docs/performance.md, "Latency under load").
    Sharing is safe because each statement here is a single autocommit statement that runs to
    its end without yielding to another greenlet, never inside a transaction: the ORM's
    transactions (admin, sessions, logins) stay on Django's connection of their greenlet.
    Elsewhere (sync workers, management commands, tests), Django's connection of this thread.
    """
    if not process.gevent_active():
        return connections[DEFAULT_DB_ALIAS]
    owner = process.state
    if owner.store_database is None:
        database = connections.create_connection(DEFAULT_DB_ALIAS)
        database.inc_thread_sharing()  # to Django, each greenlet is a thread of its own
        owner.store_database = database
    return owner.store_database


def store_database_close() -> None:
    """After a database error: the next statement opens a fresh connection, once the cause is
    gone (this greenlet's Django connection too). A visit waiting for the writer lock with the
    connection closed under it fails with a database error: a 503, nothing counted."""
    connection.close()
    if process.state.store_database is not None:
        process.state.store_database.close()


@dataclass(frozen=True)
class VisitTally:
    total: int
    today: int


def visits_writer_lock() -> FileLock:
    """This process's lock on the data directory's writer lock file: one writer at a time in the
    pod. Opened once per directory (tests change it), compared by identity: building and
    comparing paths cost more than the lock. Open no connection while holding it (a new
    connection may have to take it: counter/store/data_files.py)."""
    owner = process.state
    directory = settings.VISITS_DATA_DIR
    if owner.writer_lock is None or owner.writer_lock_dir is not directory:
        if owner.writer_lock is not None:
            owner.writer_lock.close()
        owner.writer_lock = FileLock(data_path(COUNT_LOCK))
        owner.writer_lock_dir = directory
    return owner.writer_lock


@dataclass(slots=True)
class _Visit:
    """A visit waiting to be counted, with what counting it gave."""

    day: date
    tally: VisitTally | None = None
    error: BaseException | None = None


def visit_record(*, day: date) -> VisitTally:
    """Count one visit on `day` and return the new totals.

    The visits of a process are counted together: a visit joins the process's queue, and the
    first of the waiting visits to get the process's counting lock takes the pod's writer lock
    and counts every visit queued by then, one statement per day, then hands each its tally.
    In a gevent worker, that first visit first lets the other greenlets ready in this turn of
    the event loop run up to their own visit: under load, one statement then counts the visits
    of every connection served in the turn (a batch of 1.05 visits on average became 15 to 32
    with 32 connections: docs/performance.md, "Latency under load"). The visits that
    arrive while another process holds the writer lock are counted together too; the rest get
    the lock only to find their tally. One visit alone (sync workers, a management command) is
    counted as before, alone.
    """
    owner = process.state
    visit = _Visit(day)
    owner.visits_queue.append(visit)
    with _counting_lock(owner):
        if visit.tally is None and visit.error is None:
            try:
                if process.gevent_active():
                    time.sleep(0)  # gevent's: the greenlets ready now run first
                _visits_count(owner)
            except BaseException:
                # Nothing was taken from the queue: this visit must not be counted later.
                owner.visits_queue.remove(visit)
                raise
    if visit.error is not None:
        raise visit.error
    return visit.tally


def _counting_lock(owner: process.ProcessState) -> threading.Lock:
    """Made at the first visit, as the writer lock is: gevent's by then in a gevent worker (it
    patches threading after the fork). Two threads racing here could each make one; the writer
    lock still serializes what they count."""
    if owner.counting_lock is None:
        owner.counting_lock = threading.Lock()
    return owner.counting_lock


def _visits_count(owner: process.ProcessState) -> None:
    """Count every queued visit, under the pod's writer lock; each gets its tally or the error.

    Per day, one autocommit statement: the upsert of the day's row by the number of its visits,
    whose triggers add them to the total (migration 0001). It returns the total from before its
    triggers ran; writers are serialized, so the visits of the batch are exactly the next ones.
    The statement runs on the sqlite3 connection under Django's, inside Django's translation of
    database errors: Django's cursor cost more than the statement itself (docs/performance.md).
    """
    from counter.store.data_files import data_files_guard  # it imports this module

    db = store_database()
    batch: list[_Visit] = []
    try:
        db.ensure_connection()
        # The connection stays open for the worker's life: the check its opening made is made
        # for each batch too (three `stat`s), so a file deleted or replaced stops the counting
        # at this worker's next visit, not only at its FileKeeper's next tick.
        data_files_guard()
        raw = db.connection  # kept: another greenlet may close `db` while this one waits
        with db.wrap_database_errors, visits_writer_lock():
            # Taken under the lock: the visits that came while it was awaited count too.
            while owner.visits_queue:
                batch.append(owner.visits_queue.popleft())
            # Under the lock: a rescue (counter/store/data_files.py) holds it too, so a visit is
            # either in its copy or refused.
            if owner.data_files_problem is not None:
                raise CountingStoppedError(owner.data_files_problem)
            days: dict[date, list[_Visit]] = {}
            for visit in batch:
                days.setdefault(visit.day, []).append(visit)
            for day, visits in days.items():
                arguments = (len(visits), day.isoformat())
                today, total_before = sqlite_retry(
                    lambda arguments=arguments: raw.execute(_VISIT, arguments).fetchone()
                )
                today_before = today - len(visits)
                for number, visit in enumerate(visits, start=1):
                    visit.tally = VisitTally(
                        total=total_before + number, today=today_before + number
                    )
    except BaseException as error:
        for visit in batch:
            if visit.tally is None:
                visit.error = error
        if not batch:  # nothing taken from the queue: the lock or the connection failed
            raise
        # Each visit of the batch raises it where it waits (visit_record), this one's too.


def visits_total() -> int:
    with store_database().cursor() as cursor:
        cursor.execute(_TOTAL)
        row = cursor.fetchone()
    if row is None:
        raise CounterMissingError("the visit counter does not exist: run manage.py prepare")
    return row[0]


def visits_current(*, day: date) -> VisitTally:
    """The totals as they are, without counting (one statement, so they agree)."""
    with store_database().cursor() as cursor:
        cursor.execute(_CURRENT, [day])
        row = cursor.fetchone()
    if row is None:
        raise CounterMissingError("the visit counter does not exist: run manage.py prepare")
    return VisitTally(total=row[0], today=row[1] or 0)


@dataclass(frozen=True)
class PastDays:
    """The days before `today` in a history window, oldest first. They no longer change (but
    for visits that were in flight at midnight), so each process reads them every few seconds
    rather than on every visit."""

    today: date
    days: tuple[tuple[date, int], ...]
    read_at: float


def visits_past_days(*, today: date, days: int = 13) -> PastDays:
    """The `days` days before `today` with their visits, zeros included."""
    owner = process.state
    cached = owner.past_days
    if (
        cached is not None
        and cached.today == today
        and len(cached.days) == days
        and time.monotonic() - cached.read_at < PAST_DAYS_TTL
    ):
        return cached
    first = today - timedelta(days=days)
    with store_database().cursor() as cursor:
        cursor.execute(_PAST_DAYS, [first, today])
        counts = dict(cursor.fetchall())  # Django converts DATE columns to date objects
    window = tuple((first + timedelta(n), counts.get(first + timedelta(n), 0)) for n in range(days))
    past = owner.past_days = PastDays(today=today, days=window, read_at=time.monotonic())
    return past
