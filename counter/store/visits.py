"""Counting visits: the pod's SQLite database is the source of truth.

Hot path (every GET /): writers are serialized by a file lock before they reach SQLite, then one
autocommit upsert counts the visit (with those of the same process waiting beside it) in today's
row and, through triggers, in the total. SQLite itself is told not to wait for its lock
(counter/store/locks.py: its busy handler would stall a gevent worker), and a file lock wakes
the next writer as soon as it is free. The `visits` file is kept by counter/store/visits_file.py,
off the request path. Every statement here runs on `store_database()` (database.py).
"""

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import date, timedelta

from counter.concurrency import gevent_active
from counter.exceptions import CounterMissingError, CountingStoppedError
from counter.models import DailyVisits, VisitCounter
from counter.process_local import ProcessLocal
from counter.store.database import COUNTER_ID, store_database, visits_writer_lock
from counter.store.guard import counting_stopped, data_files_guard
from counter.store.locks import sqlite_retry

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


@dataclass(frozen=True)
class VisitTally:
    total: int
    today: int


@dataclass(frozen=True)
class PastDays:
    """The days before `today` in a history window, oldest first. They no longer change (but
    for visits that were in flight at midnight), so each process reads them every few seconds
    rather than on every visit."""

    today: date
    days: tuple[tuple[date, int], ...]
    read_at: float


@dataclass
class _Counting(ProcessLocal):
    queue: deque = field(default_factory=deque)  # the visits waiting to be counted
    lock: "threading.Lock | None" = None  # held by the visit that counts the queue
    past_days: PastDays | None = None


_process = _Counting()


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
    of every connection served in the turn, where without the yield nearly every statement
    counted one (docs/performance-history.md, "Latency under load"). The visits that arrive while
    another process holds the writer lock are counted together too; the rest get the lock only
    to find their tally. One visit alone (sync workers, a management command) is counted alone.
    """
    visit = _Visit(day)
    _process.queue.append(visit)
    with _counting_lock():
        if visit.tally is None and visit.error is None:
            try:
                if gevent_active():
                    time.sleep(0)  # gevent's: the greenlets ready now run first
                _visits_count()
            except BaseException:
                # Nothing was taken from the queue: this visit must not be counted later.
                _process.queue.remove(visit)
                raise
    if visit.error is not None:
        raise visit.error
    return visit.tally


def _counting_lock() -> threading.Lock:
    """Made at the first visit, as the writer lock is: gevent's by then in a gevent worker (it
    patches threading after the fork). Two threads racing here could each make one; the writer
    lock still serializes what they count."""
    if _process.lock is None:
        _process.lock = threading.Lock()
    return _process.lock


def _visits_count() -> None:
    """Count every queued visit, under the pod's writer lock; each gets its tally or the error.

    Per day, one autocommit statement: the upsert of the day's row by the number of its visits,
    whose triggers add them to the total (migration 0001). It returns the total from before its
    triggers ran; writers are serialized, so the visits of the batch are exactly the next ones.
    The statement runs on the sqlite3 connection under Django's, inside Django's translation of
    database errors: Django's cursor cost more than the statement itself
    (docs/performance-history.md).
    """
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
            while _process.queue:
                batch.append(_process.queue.popleft())
            # Under the lock: a rescue (counter/store/guard.py) holds it too, so a visit is
            # either in its copy or refused.
            if (problem := counting_stopped()) is not None:
                raise CountingStoppedError(problem)
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


def visits_past_days(*, today: date, days: int = 13) -> PastDays:
    """The `days` days before `today` with their visits, zeros included."""
    cached = _process.past_days
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
    past = _process.past_days = PastDays(today=today, days=window, read_at=time.monotonic())
    return past
