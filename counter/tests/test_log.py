import io
import json
import logging
from collections.abc import Iterator

import pytest
from django.http import HttpRequest, HttpResponse
from django.urls import path

from counter.log import JsonFormatter, startup_line
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


def test_json_lines_carry_the_request_and_the_traceback(client, stderr_log, settings):
    (handler,) = (h for h in logging.getLogger().handlers if h.get_name() == "stderr")
    text = handler.formatter
    handler.setFormatter(JsonFormatter())
    try:
        client.raise_request_exception = False
        assert client.get("/broken").status_code == 500
    finally:
        handler.setFormatter(text)
    (entry,) = [json.loads(line) for line in stderr_log.getvalue().splitlines()]
    assert entry["logger"] == "django.request"
    assert entry["level"] == "ERROR"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/broken", 500)
    assert entry["message"] == "Internal Server Error: /broken"
    assert "RuntimeError: a bug in a view" in entry["exception"]
    assert entry["time"].endswith("Z")


def test_prepare_writes_json_only_when_asked(settings):
    assert startup_line("ready", logger="counter.management.commands.prepare") == "ready"
    settings.VISITS_LOG_FORMAT = "json"
    entry = json.loads(startup_line("ready", logger="counter.management.commands.prepare"))
    assert (entry["logger"], entry["level"], entry["message"]) == (
        "counter.management.commands.prepare",
        "INFO",
        "ready",
    )
