from datetime import date

import pytest
from django.contrib import admin
from django.urls import reverse

from counter.models import DailyVisits

# Values a scanner or a mistyped bookmark sends: out of range, not numbers, huge, empty, odd.
BAD_VALUES = [
    "",
    "0",
    "-1",
    "abc",
    "1e9",
    "99999999999999999999",
    "-99999999999999999999",
    "2026-13-45",
    "\x00",
    "%",
    "[]",
    "1,2,x",
    "ä" * 300,
]
# Django's own changelist parameters (paging, ordering, search, the date drill-down, popups)
# and lookups on every field of every registered model.
CHANGELIST_PARAMETERS = ["p", "o", "q", "all", "e", "_popup", "_to_field", "_changelist_filters"]
LOOKUPS = ["", "__exact", "__gt", "__lte", "__in", "__isnull", "__year", "__month", "__day"]


def changelists() -> list[tuple[str, list[str]]]:
    pages = []
    for model, model_admin in admin.site._registry.items():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        names = [field.name for field in model._meta.get_fields() if field.concrete]
        if model_admin.date_hierarchy:
            names.append(model_admin.date_hierarchy)
        pages.append((url, names))
    return pages


@pytest.fixture
def some_days(counter) -> None:
    # Counting goes through the counter's triggers; rows are enough for the changelist.
    for day in (date(2026, 11, 1), date(2026, 11, 24), date(2025, 2, 3)):
        DailyVisits.objects.create(day=day, visits=3)


def test_every_registered_changelist_is_fuzzed():
    urls = [url for url, _ in changelists()]
    assert "/admin/counter/dailyvisits/" in urls
    assert "/admin/counter/visitcounter/" in urls


@pytest.mark.parametrize(("url", "fields"), changelists())
def test_no_bad_query_parameter_makes_a_changelist_fail(admin_client, some_days, url, fields):
    admin_client.raise_request_exception = False
    names = CHANGELIST_PARAMETERS + [f + lookup for f in fields for lookup in LOOKUPS]
    failures = []
    for name in names:
        for value in BAD_VALUES:
            status = admin_client.get(url, {name: value}).status_code
            if status >= 500:
                failures.append(f"{name}={value[:20]!r}: {status}")
    # Combinations the date drill-down reads together.
    for year, month, day in [("2026", "13", "1"), ("2026", "2", "30"), ("99999", "1", "1")]:
        for field in fields:
            query = {f"{field}__year": year, f"{field}__month": month, f"{field}__day": day}
            if admin_client.get(url, query).status_code >= 500:
                failures.append(f"{query}")
    assert not failures, f"{url}: " + ", ".join(failures)


def test_the_reported_url_is_a_redirect_to_the_error_page_not_a_500(admin_client, some_days):
    admin_client.raise_request_exception = False
    response = admin_client.get("/admin/counter/dailyvisits/?day__year=99999999999999999999")
    assert response.status_code == 302
    assert response["Location"] == "/admin/counter/dailyvisits/?e=1"
