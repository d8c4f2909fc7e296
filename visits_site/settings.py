"""Settings for the visits site: one module, configured from the environment.

`DJANGO_*` variables are Django's own knobs, `VISITS_*` are the app's, `POD_NAME` comes from the
Kubernetes downward API. docs/configuration.md lists every variable.
"""

import os
import socket
import tomllib
import urllib.parse
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ImproperlyConfigured(f"{name}={value!r}: use 1/true/yes/on or 0/false/no/off")


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = _env_flag("DJANGO_DEBUG")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        # Sessions are signed cookies: a built-in key would let anyone forge an admin session.
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. It is required when DJANGO_DEBUG is off; make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = "insecure-key-for-local-debug-only"

ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

APP_VERSION = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]["version"]
POD_NAME = os.environ.get("POD_NAME") or socket.gethostname()
POD_IP = os.environ.get("POD_IP", "")  # downward API: which headless-Service address is this pod
VISITS_DATA_DIR = Path(os.environ.get("VISITS_DATA_DIR", BASE_DIR / "data")).absolute()
VISITS_DATABASE = VISITS_DATA_DIR / "db.sqlite3"
# `serve` starts gunicorn with this set, once `prepare` has made the database: the server's
# connections then open an existing file only, so a database deleted under a running server is
# not re-created empty beside the one its older connections still use
# (counter/store/guard.py).
VISITS_DATABASE_MUST_EXIST = _env_flag("VISITS_DATABASE_MUST_EXIST")

# NORMAL in WAL mode: a committed visit survives the crash or SIGKILL of any process; only a
# power loss or kernel crash can roll back the last commits. FULL adds an fsync per visit.
VISITS_SQLITE_SYNCHRONOUS = os.environ.get("VISITS_SQLITE_SYNCHRONOUS", "NORMAL").upper()
if VISITS_SQLITE_SYNCHRONOUS not in ("NORMAL", "FULL"):
    raise ImproperlyConfigured(
        f"VISITS_SQLITE_SYNCHRONOUS={VISITS_SQLITE_SYNCHRONOUS!r}: use NORMAL or FULL"
    )

# /cluster asks these pods for their counts: base URLs (local runs, containers), or every address
# of the StatefulSet's headless Service (Kubernetes).
VISITS_PEERS = _env_list("VISITS_PEERS", "")
VISITS_PEER_SERVICE = os.environ.get("VISITS_PEER_SERVICE", "")
VISITS_PEER_PORT = int(os.environ.get("VISITS_PEER_PORT", "8000"))

# With backup on, the sidecar's metrics, which Litestream serves on the pod's loopback only, are
# relayed on this port of the app's (visits_site/backup_metrics.py); empty: no relay.
VISITS_BACKUP_METRICS_URL = os.environ.get("VISITS_BACKUP_METRICS_URL", "")
VISITS_BACKUP_METRICS_PORT = int(os.environ.get("VISITS_BACKUP_METRICS_PORT", "9090"))

# Request bodies are read into memory up to this size, larger ones refused with 413
# (visits_site/body_guard.py); Django then never spools an upload to disk.
VISITS_MAX_BODY_BYTES = int(os.environ.get("VISITS_MAX_BODY_BYTES", str(64 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = FILE_UPLOAD_MAX_MEMORY_SIZE = VISITS_MAX_BODY_BYTES

VISITS_ADMIN_USERNAME = os.environ.get("VISITS_ADMIN_USERNAME", "admin")
VISITS_ADMIN_PASSWORD_HASH = os.environ.get("VISITS_ADMIN_PASSWORD_HASH", "")
VISITS_ADMIN_PASSWORD = os.environ.get("VISITS_ADMIN_PASSWORD", "")

# Admin login throttling (counter/login_throttle.py): failures counted per client address and
# username in the pod's database, shared by its worker processes and kept across restarts.
VISITS_LOGIN_FAILURE_LIMIT = int(os.environ.get("VISITS_LOGIN_FAILURE_LIMIT", "10"))
VISITS_LOGIN_LOCKOUT_SECONDS = int(os.environ.get("VISITS_LOGIN_LOCKOUT_SECONDS", "900"))
# One address trying many usernames (Django hashes the password for unknown ones too).
VISITS_LOGIN_ADDRESS_FAILURE_LIMIT = 3 * VISITS_LOGIN_FAILURE_LIMIT
# Password checks at once per worker process, each ~0.2 s of one core, off the event loop.
VISITS_PASSWORD_CHECKS = 1
# Proxies in front of the pods that append to X-Forwarded-For (1 behind an Ingress); 0 trusts
# no such header, so a client cannot pick the address it is throttled as.
VISITS_TRUSTED_PROXY_HOPS = int(os.environ.get("VISITS_TRUSTED_PROXY_HOPS", "0"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "counter",
]

MIDDLEWARE = [
    # Outermost: a request's duration includes every other middleware's share.
    "counter.middleware.RequestMetricsMiddleware",
    # Then this, so it drops the body of a HEAD response after every other one has run.
    "counter.middleware.HeadWithoutBodyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "counter.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "counter.middleware.LoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "counter.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "visits_site.urls"
WSGI_APPLICATION = "visits_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "counter.store.sqlite",  # Django's, set up by the store (sqlite/base.py)
        "NAME": (
            f"file:{urllib.parse.quote(str(VISITS_DATABASE))}?mode=rw"
            if VISITS_DATABASE_MUST_EXIST
            else VISITS_DATABASE
        ),
        # Persistent connections, opened after gunicorn forks: one per thread (per greenlet in a
        # gevent worker, whose counting shares one: counter/store/database.py).
        "CONN_MAX_AGE": None,
        "OPTIONS": {
            # A DEFERRED transaction that reads then writes fails at once with "database is
            # locked" instead of waiting for the lock.
            "transaction_mode": "IMMEDIATE",
            # SQLite does not wait for its lock: its busy handler would stall every connection
            # of a gevent worker. counter/store/locks.py retries instead, cooperatively, for 5 s.
            "timeout": 0,
            "init_command": (
                # Small pages for a new database (an existing one keeps its own): a visit
                # writes two pages to the WAL, and 1 KiB ones count faster (measured in
                # docs/performance-history.md). It must come before WAL mode is set.
                "PRAGMA page_size=1024;"
                "PRAGMA journal_mode=WAL;"
                f"PRAGMA synchronous={VISITS_SQLITE_SYNCHRONOUS};"
                "PRAGMA temp_store=MEMORY;"
                "PRAGMA journal_size_limit=4194304"
            ),
        },
    }
}

# One database per pod and a load-balanced Service in front: sessions live in signed cookies so
# an admin stays logged in whichever pod answers. They cannot be revoked server-side, hence the
# short age.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
SESSION_COOKIE_AGE = 30 * 60
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# TLS ends in front of the pods (an Ingress, docs/kubernetes.md), which says so in
# X-Forwarded-Proto. The kubelet's probes, Prometheus and /cluster's peers reach the pods over
# plain HTTP: their paths are not redirected.
HTTPS = _env_flag("DJANGO_HTTPS")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics|visits)$"]
    SECURE_HSTS_SECONDS = 365 * 24 * 60 * 60
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading hard-codes the domain into browsers: its owner's decision, not a default.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]

AUTHENTICATION_BACKENDS = ["counter.backends.ThrottledModelBackend"]
# Django's default (PBKDF2), run off the event loop; the only one, so every check is bounded.
PASSWORD_HASHERS = ["counter.hashers.OffLoopPBKDF2PasswordHasher"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# `text` (the default) for people, `json` for log pipelines: one object per line, the same for
# the app, gunicorn (gunicorn.conf.py) and `prepare` (counter/log.py).
VISITS_LOG_FORMAT = os.environ.get("VISITS_LOG_FORMAT", "text").lower()
if VISITS_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"VISITS_LOG_FORMAT={VISITS_LOG_FORMAT!r}: use text or json")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "counter.log.JsonFormatter"},
    },
    # A rejected request (foreign Host, too many fields, ...) is one line: no traceback.
    "filters": {"quiet_rejections": {"()": "counter.log.QuietRejectionsFilter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": VISITS_LOG_FORMAT,
            "filters": ["quiet_rejections"],
        }
    },
    "root": {"handlers": ["stderr"], "level": "INFO"},
}
