from datetime import timedelta

import pytest
from django.db import IntegrityError

from counter.models import DailyVisits, VisitCounter
from counter.store import visits
from counter.store.database import COUNTER_ID
from counter.store.visits import visit_record, visits_current, visits_past_days
from counter.tests.conftest import DAY


def test_visit_record_counts_total_and_day(counter):
    assert visit_record(day=DAY).total == 1
    tally = visit_record(day=DAY)
    assert (tally.total, tally.today) == (2, 2)
    tally = visit_record(day=DAY + timedelta(days=1))
    assert (tally.total, tally.today) == (3, 1)
    assert VisitCounter.objects.get().total == 3
    assert dict(DailyVisits.objects.values_list("day", "visits")) == {
        DAY: 2,
        DAY + timedelta(days=1): 1,
    }


def test_visit_record_keeps_an_adopted_starting_count(counter):
    VisitCounter.objects.filter(pk=counter.pk).update(total=41)
    assert visit_record(day=DAY).total == 42


def test_visit_without_counter_row_is_refused_and_counts_nothing(db):
    with pytest.raises(IntegrityError, match="run manage.py prepare"):
        visit_record(day=DAY)
    assert not DailyVisits.objects.exists()
    # Nor later: the refused visit left the queue of visits waiting to be counted.
    VisitCounter.objects.create(pk=COUNTER_ID, total=0)
    tally = visit_record(day=DAY)
    assert (tally.total, tally.today) == (1, 1)


def test_visits_current_reads_without_counting(counter):
    visit_record(day=DAY)
    assert visits_current(day=DAY) == visits.VisitTally(total=1, today=1)
    assert visits_current(day=DAY + timedelta(days=1)) == visits.VisitTally(total=1, today=0)
    assert VisitCounter.objects.get().total == 1


def test_past_days_window_has_zeros_and_excludes_today(counter):
    visit_record(day=DAY - timedelta(days=2))
    visit_record(day=DAY - timedelta(days=2))
    visit_record(day=DAY)
    past = visits_past_days(today=DAY, days=3)
    assert past.days == (
        (DAY - timedelta(days=3), 0),
        (DAY - timedelta(days=2), 2),
        (DAY - timedelta(days=1), 0),
    )


def test_past_days_are_read_again_on_a_new_day(counter):
    visits_past_days(today=DAY, days=2)
    visit_record(day=DAY)
    assert visits_past_days(today=DAY + timedelta(days=1), days=2).days[-1] == (DAY, 1)
