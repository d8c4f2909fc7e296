import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User

from counter.models import VisitCounter
from counter.store.files import data_path
from counter.store.visits_file import visits_file_keep


def total() -> int:
    return VisitCounter.objects.get().total


def test_get_home_counts_one_visit_and_shows_it(client, counter, settings):
    settings.POD_NAME = "app-python-1"
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<span class="pod" id="pod">app-python-1</span>' in page
    assert '<strong id="total">1</strong>' in page
    assert '<strong id="today">1</strong>' in page
    assert "<svg" in page
    assert "no-store" in response["Cache-Control"]
    client.get("/")
    assert total() == 2


def test_head_home_does_not_count(client, counter):
    response = client.head("/")
    assert response.status_code == 200
    assert total() == 0


def test_home_escapes_the_pod_name(client, counter, settings):
    settings.POD_NAME = "<script>alert(1)</script>"
    page = client.get("/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_home_rejects_other_methods_without_counting(client, counter, method):
    response = getattr(client, method)("/")
    assert response.status_code == 405  # the test client skips CSRF checks; a server says 403
    assert total() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/visits",
        "/visits?format=json",
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/",
        "/admin/login/",
        "/static/admin/css/base.css",
        "/favicon.ico",
        "/nope",
        "/visits/",
        "/?x=%ff%fe",
    ],
)
def test_nothing_but_get_home_counts(client, counter, path):
    client.get(path)
    expected = 1 if path.startswith("/?") else 0
    assert total() == expected


def test_visits_is_plain_text_by_default(client, counter):
    client.get("/")
    response = client.get("/visits")
    assert response.status_code == 200
    assert response.content == b"1\n"
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert "Accept" in response["Vary"]


@pytest.mark.parametrize(
    ("query", "accept"),
    [("?format=json", "*/*"), ("", "application/json"), ("", "text/plain;q=0.5, application/json")],
)
def test_visits_json_for_clients_that_ask(client, counter, settings, query, accept):
    settings.POD_NAME = "app-python-2"
    client.get("/")
    response = client.get("/visits" + query, headers={"Accept": accept})
    assert response.json() == {"pod": "app-python-2", "visits": 1}


@pytest.mark.parametrize(
    "accept", ["text/html,application/xhtml+xml,*/*;q=0.8", "*/*", "", ";;;,,=q", "\x00garbage"]
)
def test_visits_text_for_browsers_and_odd_accept_headers(client, counter, accept):
    response = client.get("/visits", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.content == b"0\n"


def test_visits_unknown_format_is_a_clear_400(client, counter):
    response = client.get("/visits?format=xml")
    assert response.status_code == 400
    assert response.content == b"unknown format 'xml': use json or text\n"


def test_healthz_needs_no_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"


def test_readyz_ready_when_prepared(client, counter):
    response = client.get("/readyz")
    assert (response.status_code, response.content) == (200, b"ready\n")


def test_readyz_unready_without_counter(client, db):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.content.startswith(b"not ready: database unavailable: ")


def test_readyz_unready_when_data_dir_is_gone(client, counter, settings, tmp_path):
    settings.VISITS_DATA_DIR = tmp_path / "gone"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert b"is not writable" in response.content


def test_readyz_writes_nothing_and_reports_what_the_keeper_found(client, counter):
    client.get("/")
    assert client.get("/readyz").content == b"ready\n"
    assert not data_path("visits").exists()  # the keeper writes the file, never the probe
    keeper = visits_file_keep(period=3600)  # this process's, checked by hand below
    data_path("visits").mkdir()  # an operator's mistake
    keeper.check()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert (
        response.content
        == (
            f"not ready: cannot update the visits file {data_path('visits')}: Is a directory\n"
        ).encode()
    )
    data_path("visits").rmdir()
    keeper.check()
    assert client.get("/readyz").content == b"ready\n"
    assert data_path("visits").read_text() == "1\n"


def test_readyz_is_unready_when_the_keeper_stopped_checking(client, counter):
    keeper = visits_file_keep(period=3600)
    keeper.began_at -= 60
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.content == b"not ready: the visits file has not been checked for 60 s\n"


def test_metrics_in_prometheus_format(client, counter, settings):
    settings.POD_NAME = 'pod"with\\quotes'
    client.get("/")
    client.get("/")
    response = client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert 'visits_total{pod="pod\\"with\\\\quotes"} 2.0\n' in text
    assert "# TYPE visits_total counter\n" in text
    # app_python_build_info: counter/tests/test_metrics.py


def test_unknown_path_is_404_without_debug_page(client, counter):
    response = client.get("/nope")
    assert response.status_code == 404
    assert b"Traceback" not in response.content
    assert b"URLconf" not in response.content


def test_foreign_host_is_400(client, counter):
    response = client.get("/", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert total() == 0


def test_database_failure_is_a_503_and_counts_nothing(client, counter):
    VisitCounter.objects.all().delete()  # the visit statement aborts without its counter row
    response = client.get("/")
    assert response.status_code == 503
    assert response.content.startswith(b"Service unavailable: the visit database cannot be used")
    assert response["Retry-After"] == "5"


@pytest.fixture
def admin_client_for(client, counter):
    User.objects.create(
        username="admin", password=make_password("s3cret-pass"), is_staff=True, is_superuser=True
    )
    client.login(username="admin", password="s3cret-pass")
    return client


def test_admin_shows_pod_and_read_only_counts(admin_client_for, counter):
    admin_client_for.get("/")
    page = admin_client_for.get("/admin/").content.decode()
    assert "app-python admin · pod" in page
    listing = admin_client_for.get("/admin/counter/dailyvisits/")
    assert listing.status_code == 200
    assert b"Add daily visits" not in listing.content
    change_url = f"/admin/counter/visitcounter/{counter.pk}/change/"
    change = admin_client_for.post(change_url, {"total": 5})
    assert change.status_code == 403
    assert total() == 1


def test_login_sets_a_short_lived_httponly_signed_cookie(client, admin_client_for):
    client.logout()
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "admin", "password": "s3cret-pass"}
    )
    assert response.status_code == 302
    cookie = response.cookies["sessionid"]
    assert cookie.value.count(":") >= 2  # signed data, no database row
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == 1800
