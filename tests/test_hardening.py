"""Login throttling, quiet rejections, HEAD, security headers and HTTPS, on real servers."""

import http.client
import os
import subprocess
import sys
import urllib.parse

import pytest
from django.contrib.auth.hashers import make_password

from counter.hashers import PASSWORD_CHECK_WAIT
from support.clients import http_request
from support.login_flood import login_flood
from support.tools import ROOT

pytestmark = pytest.mark.server

PASSWORD = "s3cret-pass"


def request(server, path: str, **kwargs) -> tuple[int, bytes, http.client.HTTPResponse]:
    return http_request(server.port, path, **kwargs)


def csrf_token(server) -> str:
    _, _, response = request(server, "/admin/login/")
    cookie = response.headers["Set-Cookie"]
    return cookie.split("csrftoken=", 1)[1].split(";", 1)[0]


def login(server, token: str, password: str, *, source: str = "127.0.0.1", **headers: str):
    body = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "username": "admin", "password": password, "next": "/admin/"}
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"csrftoken={token}",
        **headers,
    }
    return request(
        server, "/admin/login/", method="POST", body=body, headers=headers, source=source
    )


class LogWatch:
    """The lines a server logs from now on (they are written before the response is sent)."""

    def __init__(self, server) -> None:
        self.server = server
        self.start = len(server.log())

    def lines(self) -> list[str]:
        return self.server.log()[self.start :].splitlines()


@pytest.fixture
def admin_server(make_server):
    return make_server(VISITS_ADMIN_PASSWORD_HASH=make_password(PASSWORD)).start().wait_ready()


def test_ten_failed_logins_lock_the_address_and_username_across_workers_and_a_restart(
    make_server,
):
    server = make_server(VISITS_ADMIN_PASSWORD_HASH=make_password(PASSWORD))
    server.start().wait_ready()
    token = csrf_token(server)
    for _ in range(10):
        status, body, _ = login(server, token, "wrong")
        assert status == 200 and b"Please enter the correct username" in body

    log = LogWatch(server)
    status, body, response = login(server, token, PASSWORD)
    assert status == 429, body
    assert 880 <= int(response.headers["Retry-After"]) <= 900
    lines = log.lines()
    assert len(lines) == 1 and "Too Many Requests: /admin/login/" in lines[0], lines

    # X-Forwarded-For is not trusted without VISITS_TRUSTED_PROXY_HOPS: no way out by spoofing.
    assert login(server, token, PASSWORD, **{"X-Forwarded-For": "203.0.113.9"})[0] == 429
    # Every worker is a new process after a restart: the lockout lives in the database.
    assert server.stop() == 0
    server.start().wait_ready()
    assert login(server, token, PASSWORD)[0] == 429
    # Another client address is not affected.
    status, _, response = login(server, token, PASSWORD, source="127.0.0.2")
    assert status == 302 and response.headers["Location"] == "/admin/"


def test_a_lockout_ends_after_the_configured_time_and_a_login_resets_the_count(make_server):
    server = make_server(
        VISITS_ADMIN_PASSWORD_HASH=make_password(PASSWORD), VISITS_LOGIN_LOCKOUT_SECONDS="3"
    )
    server.start().wait_ready()
    token = csrf_token(server)
    for _ in range(10):
        login(server, token, "wrong")
    status, _, response = login(server, token, PASSWORD)
    assert status == 429 and 1 <= int(response.headers["Retry-After"]) <= 3
    for _ in range(10):  # each refused try waits 1 s before its 429
        status = login(server, token, PASSWORD)[0]
        if status != 429:
            break
    assert status == 302
    for _ in range(9):
        assert login(server, token, "wrong")[0] == 200
    assert login(server, token, PASSWORD)[0] == 302


def test_password_guessing_with_new_usernames_and_addresses_leaves_healthz_answering(
    make_server, admin_server
):
    """30 loops, each try a new username from a new (forwarded) address: no lockout applies,
    every try runs the hasher. /healthz must answer every probe within 2 s meanwhile."""
    server = make_server(
        "app-python-1",
        VISITS_ADMIN_PASSWORD_HASH=make_password(PASSWORD),
        VISITS_TRUSTED_PROXY_HOPS="1",
    )
    server.start().wait_ready()
    base = f"http://127.0.0.1:{server.port}"
    flood = login_flood(base, loops=30, seconds=6, new_usernames=True, spoofed_addresses=True)
    assert flood["healthz"]["failed"] == 0, flood
    assert flood["healthz"]["probes"] >= 20, flood
    assert flood["logins"].get("200", 0) >= 2, flood  # the passwords were checked
    # From one address: 30 parallel loops get 10 password checks for one username, then 20
    # more for new ones (30 per address), and 429s.
    base = f"http://127.0.0.1:{admin_server.port}"
    flood = login_flood(base, loops=30, seconds=3)
    assert 1 <= flood["logins"].get("200", 0) <= 10 and flood["logins_429"] > 0, flood
    assert flood["healthz"]["failed"] == 0, flood
    flood = login_flood(base, loops=30, seconds=3, new_usernames=True)
    assert 1 <= flood["logins"].get("200", 0) <= 20 and flood["logins_429"] > 0, flood
    assert flood["healthz"]["failed"] == 0, flood


def test_logins_that_cannot_get_a_password_check_in_time_answer_503(make_server):
    """100 loops, each try a new username from a new (forwarded) address: far more password
    checks than one at a time per worker can serve. A login that finds no check free within
    PASSWORD_CHECK_WAIT answers 503 with Retry-After, logged in one line, instead of queueing
    past its client's timeout; /healthz answers every probe within 2 s meanwhile."""
    server = make_server(
        VISITS_ADMIN_PASSWORD_HASH=make_password(PASSWORD), VISITS_TRUSTED_PROXY_HOPS="1"
    )
    server.start().wait_ready()
    log = LogWatch(server)
    flood = login_flood(
        server.url(""), loops=100, seconds=8, new_usernames=True, spoofed_addresses=True
    )
    assert set(flood["logins"]) == {"200", "503"}, flood  # every login answered, none timed out
    assert flood["retry_after"] == {"503": [str(PASSWORD_CHECK_WAIT)]}, flood
    assert flood["healthz"]["failed"] == 0, flood
    assert flood["healthz"]["probes"] >= 20, flood
    refusals = [line for line in log.lines() if "Service Unavailable: /admin/login/" in line]
    assert len(refusals) == flood["logins"]["503"], refusals[:3]
    assert "Traceback" not in server.log()


def test_rejected_requests_log_one_line_without_a_traceback(admin_server):
    server = admin_server
    cases = [
        ("GET", "/", {"Host": "evil.example"}, 400, "Invalid HTTP_HOST header"),
        ("GET", "/visits?" + "&".join(["a="] * 1001), {}, 400, "exceeded"),
        ("POST", "/admin/login/", {}, 403, "CSRF cookie not set"),
    ]
    for method, path, headers, expected, text in cases:
        log = LogWatch(server)
        status, _, _ = request(server, path, method=method, headers=headers)
        assert status == expected, (method, path[:40])
        lines = log.lines()
        assert len(lines) == 1, lines
        assert text in lines[0], lines
    assert "Traceback" not in server.log()


def test_head_answers_like_get_without_a_body_a_warning_or_a_visit(admin_server):
    server = admin_server
    assert request(server, "/")[0] == 200
    log = LogWatch(server)
    for path in ("/", "/admin/login/", "/nowhere"):
        status, body, response = request(server, path, method="HEAD")
        assert status == (404 if path == "/nowhere" else 200)
        assert body == b""
        assert int(response.headers["Content-Length"]) > 0
    status, body, response = request(server, "/", method="HEAD")
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "no-body response" not in "\n".join(log.lines())
    assert server.visits() == 1


@pytest.mark.parametrize("path", ["/", "/cluster", "/admin/login/", "/nowhere"])
def test_pages_send_a_content_security_policy_and_the_other_security_headers(admin_server, path):
    _, _, response = request(admin_server, path)
    policy = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP: no HTTPS settings


def test_without_https_cookies_are_not_secure_and_nothing_redirects(admin_server):
    status, _, response = request(admin_server, "/admin/login/")
    assert status == 200
    assert "Secure" not in response.headers["Set-Cookie"]


def test_with_django_https_the_site_redirects_but_probes_stay_on_plain_http(make_server):
    server = make_server(DJANGO_HTTPS="1").start().wait_ready()
    for path in ("/healthz", "/readyz", "/metrics", "/visits"):
        assert request(server, path)[0] == 200, path
    status, _, response = request(server, "/")
    assert status == 301
    assert response.headers["Location"] == f"https://127.0.0.1:{server.port}/"
    assert server.visits() == 0

    # Behind the Ingress: TLS ended there, X-Forwarded-Proto says so.
    status, _, response = request(server, "/admin/login/", headers={"X-Forwarded-Proto": "https"})
    assert status == 200
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("csrftoken=") and "Secure" in cookie


@pytest.mark.parametrize(("https", "passes"), [("1", True), ("0", False)])
def test_check_deploy_is_clean_with_django_https(https, passes):
    env = {
        **os.environ,
        "DJANGO_HTTPS": https,
        "DJANGO_SECRET_KEY": "x7Kp2-" + "qW9vLm3Rt8Zb4Nc6Yh1Jd5Fg0Ss" * 2,
        "DJANGO_ALLOWED_HOSTS": "visits.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert (result.returncode == 0) is passes, output
    if passes:
        assert "System check identified no issues" in output
