"""Logging for the settings' LOGGING and gunicorn's logger: quiet lines for rejected requests,
and the JSON lines of VISITS_LOG_FORMAT=json.

Nothing of Django is imported at the top: gunicorn's master imports this module through its
logger class (visits_site/gunicorn_logger.py) before Django is set up (counter/metrics.py says
why that matters).
"""

import datetime
import json
import logging
import os
import socket


class QuietRejectionsFilter(logging.Filter):
    """Django logs a request it rejects as suspicious (foreign Host, too many fields, ...) on a
    `django.security.*` logger, with the traceback of the exception that rejected it: dozens of
    lines for a 400 any scanner can cause. Keep the line, drop the traceback. Server errors
    (`django.request`) keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security."):
            record.exc_info = None
            record.exc_text = None
        return True


def _pod() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


def log_time(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """VISITS_LOG_FORMAT=json: one JSON object per line, for log pipelines. Always `time`,
    `level`, `logger`, `message`, `pod`; for a request (gunicorn's access log, Django's request
    logs) also what is known of `method`, `path`, `status` and `duration` (seconds); a traceback
    in `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": log_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pod": _pod(),
        }
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            atoms = record.args  # gunicorn's access log atoms (docs: access_log_format)
            entry |= {
                "method": atoms.get("m"),
                "path": atoms.get("U"),
                "status": int(atoms["s"]) if str(atoms.get("s", "")).isdigit() else None,
                "duration": float(atoms["L"]) if "L" in atoms else None,
            }
        request = getattr(record, "request", None)
        if request is not None and hasattr(request, "method"):
            entry |= {"method": request.method, "path": request.path}
        if hasattr(record, "status_code"):
            entry["status"] = record.status_code
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def startup_line(message: str, *, logger: str) -> str:
    """A line `prepare` writes on its standard output, in the log format of the settings."""
    from django.conf import settings  # not at the top: see the module's docstring

    if settings.VISITS_LOG_FORMAT != "json":
        return message
    record = logging.LogRecord(logger, logging.INFO, "", 0, message, None, None)
    return JsonFormatter().format(record)
