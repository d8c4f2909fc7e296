"""/metrics in one process (Django's test client): what each metric reports. That a scrape of
any worker shows the whole pod's is tests/test_metrics_server.py's, with real gunicorn workers."""

import re

from counter import metrics
from counter.store.files import COUNTING_STOPPED, VISITS_FILE, data_path
from support.clients import Samples, metrics_parse


def scrape(client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return metrics_parse(response.content.decode())


def requests(samples: Samples, **labels: str) -> float:
    """How many requests app_python_http_request_duration_seconds counted with these labels."""
    key = ("app_python_http_request_duration_seconds_count", tuple(sorted(labels.items())))
    return samples.get(key, 0.0)


def test_requests_are_counted_by_view_method_and_status(client, counter):
    before = scrape(client)
    client.get("/")
    client.get("/")
    client.head("/")
    client.get("/nope")
    client.generic("BREW", "/healthz")
    after = scrape(client)

    def added(**labels: str) -> float:
        return requests(after, **labels) - requests(before, **labels)

    assert added(view="counter:home", method="GET", status="200") == 2
    assert added(view="counter:home", method="HEAD", status="200") == 1
    assert added(view="unmatched", method="GET", status="404") == 1
    assert added(view="counter:healthz", method="other", status="405") == 1
    assert added(view="counter:metrics", method="GET", status="200") == 1  # the first scrape
    bucket = (
        "app_python_http_request_duration_seconds_bucket",
        (("le", "+Inf"), ("method", "GET"), ("status", "200"), ("view", "counter:home")),
    )
    assert after[bucket] - before.get(bucket, 0.0) == 2


def test_the_pods_own_metrics(client, counter, settings):
    settings.POD_NAME = "app-python-1"
    # The tests' database is not this file: stand-ins of known sizes.
    settings.VISITS_DATABASE = settings.VISITS_DATA_DIR / "db.sqlite3"
    settings.VISITS_DATABASE.write_bytes(b"d" * 4096)
    (settings.VISITS_DATA_DIR / "db.sqlite3-wal").write_bytes(b"w" * 100)
    for _ in range(3):
        client.get("/")
    data_path(VISITS_FILE).write_text("1\n")
    samples = scrape(client)
    assert samples[("visits_total", (("pod", "app-python-1"),))] == 3
    assert samples[("visits_today", (("pod", "app-python-1"),))] == 3
    assert samples[("app_python_visits_file_lag_visits", ())] == 2
    assert samples[("app_python_counting_stopped", ())] == 0
    assert samples[("app_python_database_size_bytes", ())] == 4096
    assert samples[("app_python_database_wal_size_bytes", ())] == 100
    free = samples[("app_python_volume_free_bytes", ())]
    assert 0 < free <= samples[("app_python_volume_size_bytes", ())]
    assert samples[("app_python_password_checks_waiting", ())] == 0


def test_a_pod_that_stopped_counting_says_so_and_still_answers(client, counter):
    data_path(COUNTING_STOPPED).write_text("db.sqlite3-wal was deleted\n")
    samples = scrape(client)
    assert samples[("app_python_counting_stopped", ())] == 1
    assert not any(name == "visits_total" for name, _ in samples)  # not read: it may be lost


def test_a_scrape_that_cannot_read_the_count_still_answers(client, db):
    """No counter row (a store error): the scrape answers without the counts."""
    samples = scrape(client)
    assert not any(name == "visits_total" for name, _ in samples)
    assert samples[("app_python_counting_stopped", ())] == 0
    assert ("app_python_database_size_bytes", ()) in samples


def test_refusals_are_counted_by_reason(client, counter):
    before = scrape(client)
    metrics.refusal_count(metrics.BODY_TOO_LARGE)
    metrics.refusal_count(metrics.BODY_TOO_LARGE)
    after = scrape(client)
    key = ("app_python_requests_refused_total", (("reason", "body_too_large"),))
    assert after[key] - before.get(key, 0.0) == 2


def test_build_info_and_text_format(client, counter, settings):
    text = client.get("/metrics").content.decode()
    version = re.escape(settings.APP_VERSION)
    build = rf'^app_python_build_info\{{django="5\.2\.\d+",.*,version="{version}"\}} 1\.0$'
    assert re.search(build, text, re.M)
    assert "# TYPE visits_total counter\n" in text
    assert "_created" not in text
