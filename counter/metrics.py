"""What happens to requests, counted by the process that serves them (docs/metrics.md lists
every metric): their duration and status, the refusals, the password checks waiting.

gunicorn's workers are separate processes: under `manage.py serve` each one writes its values
to memory-mapped files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode), and
a scrape of any worker sums every worker's files, those of workers already gone included, so it
shows the pod's totals (counter/pod_metrics.py). Elsewhere (tests, other commands) they are
plain in-process values.

Only prometheus-client here, no Django: the server counts its refusals here too, and gunicorn's
master imports the worker class before Django is set up (the bench's naive app has no settings
at all), and gevent's monkey-patching inspects every object alive, Django's lazy settings
included.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

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
BODY_TOO_LARGE = "body_too_large"  # 413, visits_site/body_guard.py
BODY_TOO_SLOW = "body_too_slow"  # 408, visits_site/body_guard.py
TOO_MANY_CONNECTIONS = "too_many_connections"  # 503, visits_site/worker.py
ANSWER_NOT_TAKEN = "answer_not_taken"  # connection closed mid-answer, visits_site/worker.py
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
