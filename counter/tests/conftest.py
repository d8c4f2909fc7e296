from collections.abc import Iterator
from datetime import date

import pytest

from counter.models import VisitCounter
from counter.process_local import process_local_close, process_local_renew
from counter.store.database import COUNTER_ID

DAY = date(2026, 11, 24)


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Every module's per-process state fresh for each test, as a new worker process starts with
    it (counter/process_local.py); what a test opened is closed after it."""
    process_local_renew()
    yield
    process_local_close()


@pytest.fixture
def counter(db) -> VisitCounter:
    """A prepared database: the counter row exists, as `manage.py prepare` leaves it."""
    return VisitCounter.objects.create(pk=COUNTER_ID, total=0)
