import io
import logging
from collections.abc import Iterator

import pytest
from django.http import HttpRequest, HttpResponse
from django.urls import path

from visits_site.urls import urlpatterns as site_urlpatterns


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


urlpatterns = [path("broken", broken), *site_urlpatterns]


@pytest.fixture
def stderr_log(settings) -> Iterator[io.StringIO]:
    """What the settings' stderr handler writes, and a view that fails."""
    settings.ROOT_URLCONF = __name__
    (handler,) = (h for h in logging.getLogger().handlers if h.get_name() == "stderr")
    written = io.StringIO()
    stream = handler.setStream(written)
    yield written
    handler.setStream(stream)


def test_a_server_error_keeps_its_traceback_a_rejection_is_one_line(client, stderr_log):
    client.raise_request_exception = False
    assert client.get("/broken").status_code == 500
    logged = stderr_log.getvalue()
    assert "Internal Server Error: /broken" in logged
    assert "Traceback" in logged and "RuntimeError: a bug in a view" in logged

    stderr_log.truncate(0)
    stderr_log.seek(0)
    assert client.get("/healthz", HTTP_HOST="evil.example").status_code == 400
    logged = stderr_log.getvalue()
    assert len(logged.splitlines()) == 1, logged
    assert "django.security.DisallowedHost: Invalid HTTP_HOST header: 'evil.example'" in logged
