"""Logging for the settings' LOGGING: quiet lines for rejected requests."""

import logging


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
