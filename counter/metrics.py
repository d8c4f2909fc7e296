"""What /metrics reports (docs/metrics.md lists every metric).

Two kinds of metrics:

- what happens to requests (their duration and status, the refusals, the password checks
  waiting) is counted by the process that serves them, with prometheus-client. gunicorn's
  workers are separate processes: under `manage.py serve` each one writes its values to memory-
  mapped files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode), and a scrape
  of any worker sums every worker's files, those of workers already gone included, so it shows
  the pod's totals. Elsewhere (tests, other commands) they are plain in-process values;
- what the pod's volume holds (the count, the visits file, the database's size, the free
  space, whether counting stopped) is read when a scrape asks, by whichever worker answers: the
  volume is the pod's, so every worker reports the same.

Nothing of Django is imported here at import time: gunicorn's master imports this module through
visits_site/server.py, where Django may not be set up (the bench's naive app has no settings at
all), and gevent's monkey-patching inspects every object alive, Django's lazy settings included.
"""

import os
import platform
import sqlite3
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

if os.environ.get(MULTIPROC_DIR):  # each metric below opens its file there at once
    os.makedirs(os.environ[MULTIPROC_DIR], exist_ok=True)

# `_created` series double what a scrape sends and no rule here needs them.
disable_created_metrics()

REQUESTS = CollectorRegistry()
# The probes and most pages answer in a few milliseconds; a login's password check takes
# ~0.2 s, a refused one waits 1 s, a visit waits for the database's lock at most 5 s.
REQUEST_DURATION = Histogram(
    "app_python_http_request_duration_seconds",
    "Requests Django answered, by view, method and status, and how long each took.",
    ["view", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REQUESTS,
)
REFUSED = Counter(
    "app_python_requests_refused_total",
    "Requests refused by the server's limits or the login throttle, by reason.",
    ["reason"],
    registry=REQUESTS,
)
PASSWORD_CHECKS_WAITING = Gauge(
    "app_python_password_checks_waiting",
    "Logins waiting for a password check to be free, in every worker of the pod.",
    multiprocess_mode="livesum",
    registry=REQUESTS,
)

# The reasons of app_python_requests_refused_total, and the status each answers.
BODY_TOO_LARGE = "body_too_large"  # 413, visits_site/server.py
BODY_TOO_SLOW = "body_too_slow"  # 408, visits_site/server.py
TOO_MANY_CONNECTIONS = "too_many_connections"  # 503, visits_site/server.py
ANSWER_NOT_TAKEN = "answer_not_taken"  # connection closed mid-answer, visits_site/server.py
LOGIN_LOCKED = "login_locked"  # 429, counter/middleware.py
PASSWORD_CHECKS_BUSY = "password_checks_busy"  # 503, counter/middleware.py

# A label value per method Django knows; anything else a client invents is "other", so a
# hostile client cannot make a new series per request.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"))


def request_observe(*, view: str, method: str, status: int, seconds: float) -> None:
    REQUEST_DURATION.labels(view, method if method in METHODS else "other", str(status)).observe(
        seconds
    )


def refusal_count(reason: str) -> None:
    REFUSED.labels(reason).inc()


class PodCollector(Collector):
    """The metrics read from the pod's volume at each scrape."""

    def collect(self) -> Iterator[Metric]:
        # Imported here, not at the top: see the module's docstring.
        import django
        from django.conf import settings
        from django.db import DatabaseError
        from django.utils import timezone

        from counter import process
        from counter.exceptions import StoreError
        from counter.store.files import (
            COUNTING_STOPPED,
            VISITS_FILE,
            data_dir,
            data_path,
            database_files,
            database_path,
        )
        from counter.store.visits import store_database_close, visits_current
        from counter.store.visits_file import visits_file_read

        build = GaugeMetricFamily(
            "app_python_build_info",
            "Versions of the running app and its stack.",
            labels=["version", "django", "python", "sqlite"],
        )
        versions = [
            settings.APP_VERSION,
            django.get_version(),
            platform.python_version(),
            sqlite3.sqlite_version,
        ]
        build.add_metric(versions, 1)
        yield build

        stopped = (
            process.state.data_files_problem is not None or data_path(COUNTING_STOPPED).exists()
        )
        yield GaugeMetricFamily(
            "app_python_counting_stopped",
            "1 when the pod stopped counting (a database file was deleted or replaced under it:"
            " the log says which, /readyz says to restart the pod), else 0.",
            value=int(stopped),
        )

        tally = None
        if not stopped:
            try:
                tally = visits_current(day=timezone.now().date())
            except (DatabaseError, StoreError):
                store_database_close()  # a fresh one next time; the scrape goes on without counts
        if tally is not None:
            total = CounterMetricFamily(
                "visits",
                "Visits counted by this pod (GET /) since its volume was created.",
                labels=["pod"],
            )
            total.add_metric([settings.POD_NAME], tally.total)
            yield total
            today = GaugeMetricFamily(
                "visits_today", "Visits counted by this pod today (UTC).", labels=["pod"]
            )
            today.add_metric([settings.POD_NAME], tally.today)
            yield today
            try:
                in_file = visits_file_read(data_path(VISITS_FILE)) or 0
            except (ValueError, OSError):  # garbage, a directory: it holds nothing usable
                in_file = 0
            yield GaugeMetricFamily(
                "app_python_visits_file_lag_visits",
                "Visits in the database that the visits file does not show yet.",
                value=tally.total - in_file,
            )

        sizes = [_size(name) for name in database_files(database_path())[:2]]
        yield GaugeMetricFamily(
            "app_python_database_size_bytes", "Size of db.sqlite3.", value=sizes[0]
        )
        yield GaugeMetricFamily(
            "app_python_database_wal_size_bytes", "Size of db.sqlite3-wal.", value=sizes[1]
        )
        try:
            volume = os.statvfs(data_dir())
        except OSError:  # no data directory: /readyz says so
            return
        yield GaugeMetricFamily(
            "app_python_volume_free_bytes",
            "Bytes free for the app on the data volume.",
            value=volume.f_bavail * volume.f_frsize,
        )
        yield GaugeMetricFamily(
            "app_python_volume_size_bytes",
            "Size of the data volume.",
            value=volume.f_blocks * volume.f_frsize,
        )


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def metrics_exposition() -> bytes:
    """Every metric in Prometheus' text format: the pod's, and the requests' of every worker
    (from their files) or of this process alone (no PROMETHEUS_MULTIPROC_DIR)."""
    registry = CollectorRegistry()
    registry.register(PodCollector())
    if os.environ.get(MULTIPROC_DIR):
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(registry) + generate_latest(REQUESTS)
