import logging
from collections.abc import Callable

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """Turn a database failure (disk full, read-only volume, locked too long) into a 503.

    The transaction has already rolled back, so nothing was half counted. The connection is
    closed so the next request opens a fresh one once the cause goes away.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DatabaseError):
            return None
        logger.error("database error on %s %s: %s", request.method, request.path, exception)
        connection.close()
        return HttpResponse(
            "Service unavailable: the visit database cannot be used right now.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
            headers={"Retry-After": "5"},
        )
