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


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda model: model.__name__)
def test_every_model_in_the_admin_is_read_only(rf, admin_user, model):
    request = rf.get("/admin/")
    request.user = admin_user
    model_admin = admin.site._registry[model]
    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


def test_users_and_groups_cannot_be_added_changed_or_deleted(admin_client, admin_user):
    assert admin_client.get("/admin/auth/user/add/").status_code == 403
    assert admin_client.get("/admin/auth/group/add/").status_code == 403
    change = f"/admin/auth/user/{admin_user.pk}/change/"
    page = admin_client.get(change)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    response = admin_client.post(change, {"username": "renamed", "is_superuser": ""})
    assert response.status_code == 403
    assert admin_client.post(f"/admin/auth/user/{admin_user.pk}/delete/").status_code == 403
    admin_user.refresh_from_db()
    assert admin_user.username == "admin" and admin_user.is_superuser
    assert b"Add user" not in admin_client.get("/admin/auth/user/").content


@pytest.mark.parametrize("url", ["/admin/password_change/", "/admin/auth/user/{pk}/password/"])
def test_the_password_pages_say_where_the_password_comes_from_and_change_nothing(
    admin_client, admin_user, url
):
    url = url.format(pk=admin_user.pk)
    page = admin_client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Passwords are not changed here" in text and "VISITS_ADMIN_PASSWORD_HASH" in text
    assert "make password-hash" in text and "<form" not in text.split('id="content"')[1]
    new = "a-new-s3cret-pass"
    fields = {"old_password": "password", "new_password1": new, "new_password2": new}
    assert admin_client.post(url, {**fields, "password1": new, "password2": new}).status_code == 403
    admin_user.refresh_from_db()
    assert admin_user.check_password("password")


def test_the_password_pages_need_a_login(client, admin_user):
    response = client.get("/admin/password_change/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get(f"/admin/auth/user/{admin_user.pk}/password/").status_code == 302
    assert client.get("/admin/auth/user/999/password/").status_code == 302


def test_a_missing_users_password_page_is_a_404(admin_client):
    assert admin_client.get("/admin/auth/user/999/password/").status_code == 404
