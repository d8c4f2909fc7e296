"""VISITS_LOG_FORMAT=json on a real server: every line it writes, from `prepare` to the access
log, is one JSON object."""

import json

import pytest

from support.clients import http_request

pytestmark = pytest.mark.server


def test_json_logs_one_object_per_line_from_start_to_access_log(make_server):
    server = make_server(VISITS_LOG_FORMAT="json", GUNICORN_CMD_ARGS="--access-logfile -").start()
    server.wait_ready()
    assert http_request(server.port, "/?x=1")[0] == 200
    assert http_request(server.port, "/nope")[0] == 404
    server.stop()
    entries = [json.loads(line) for line in server.log().splitlines()]  # every line is one
    for entry in entries:
        assert {"time", "level", "logger", "message", "pod"} <= entry.keys(), entry
        assert entry["pod"] == "app-python-0"
    loggers = {entry["logger"] for entry in entries}
    assert {
        "counter.management.commands.prepare",
        "gunicorn.error",
        "gunicorn.access",
        "django.request",
    } <= loggers
    (ready,) = [e for e in entries if e["message"].startswith("ready: pod app-python-0")]
    assert ready["level"] == "INFO"
    (visit,) = [e for e in entries if e["logger"] == "gunicorn.access" and e["path"] == "/"]
    assert (visit["method"], visit["status"]) == ("GET", 200)
    assert 0 < visit["duration"] < 30
    (missing,) = [e for e in entries if e["logger"] == "django.request"]
    assert (missing["method"], missing["path"], missing["status"]) == ("GET", "/nope", 404)
