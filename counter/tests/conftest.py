from collections.abc import Iterator
from datetime import date

import pytest

from counter.models import VisitCounter
from counter.process import ProcessState, process_state_renew
from counter.store.visits import COUNTER_ID

DAY = date(2026, 11, 24)


@pytest.fixture(autouse=True)
def process_state() -> Iterator[ProcessState]:
    """A fresh ProcessState for each test, as a new worker process starts with."""
    state = process_state_renew()
    yield state
    state.close()


@pytest.fixture
def counter(db) -> VisitCounter:
    """A prepared database: the counter row exists, as `manage.py prepare` leaves it."""
    return VisitCounter.objects.create(pk=COUNTER_ID, total=0)
