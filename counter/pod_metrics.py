"""What /metrics answers (docs/metrics.md lists every metric): the requests' metrics of every
worker of the pod (counter/metrics.py), and what the pod's volume holds (the count, the visits
file, the database's size, the free space, whether counting stopped), read when a scrape asks
by whichever worker answers: the volume is the pod's, so every worker reports the same. A scrape
reads; it writes and closes nothing.
"""

import contextlib
import os
import platform
import sqlite3
from collections.abc import Iterator

import django
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from counter.exceptions import StoreError
from counter.metrics import MULTIPROC_DIR, REQUESTS
from counter.store.files import (
    COUNTING_STOPPED,
    VISITS_FILE,
    data_dir,
    data_path,
    database_files,
    database_path,
    visits_file_read,
)
from counter.store.guard import counting_stopped
from counter.store.visits import visits_current

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class PodCollector(Collector):
    """The metrics read from the pod's volume at each scrape."""

    def collect(self) -> Iterator[Metric]:
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

        stopped = counting_stopped() is not None or data_path(COUNTING_STOPPED).exists()
        yield GaugeMetricFamily(
            "app_python_counting_stopped",
            "1 when the pod stopped counting (a database file was deleted or replaced under it:"
            " the log says which, /readyz says to restart the pod), else 0.",
            value=int(stopped),
        )

        tally = None
        if not stopped:
            # A scrape goes on without the counts; the worker's keeper replaces a failed
            # connection (counter/store/visits_file.py).
            with contextlib.suppress(DatabaseError, StoreError):
                tally = visits_current(day=timezone.now().date())
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
