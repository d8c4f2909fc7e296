"""The app's middlewares, in the order of settings.MIDDLEWARE."""

import base64
import hashlib
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.log import log_response

from counter import metrics
from counter.concurrency import gevent_active
from counter.exceptions import PasswordChecksBusyError
from counter.hashers import PASSWORD_CHECK_WAIT
from counter.login_throttle import client_address, login_retry_after
from counter.store.database import store_database_close

logger = logging.getLogger(__name__)

STYLE_TEMPLATE = Path(__file__).resolve().parent / "templates" / "counter" / "style.html"
REFUSAL_DELAY = 1.0  # seconds before a 429, in gevent workers


class RequestMetricsMiddleware:
    """Every request Django answers, in app_python_http_request_duration_seconds (counter/
    metrics.py): its view's name (`unmatched` when no URL matched), method and status."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        metrics.request_observe(
            view=match.view_name if match is not None else "unmatched",
            method=request.method or "",
            status=response.status_code,
            seconds=time.perf_counter() - started,
        )
        return response


class HeadWithoutBodyMiddleware:
    """A HEAD request gets the headers of the GET response, Content-Length included, and no
    body. Views answer HEAD like GET (Django's own do); gunicorn would drop the body itself,
    but logs a warning for each such response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method != "HEAD":
            return response
        if response.streaming:
            # The streamed file (whitenoise's static files) is still closed with the response.
            response.streaming_content = ()
        else:
            response.headers.setdefault("Content-Length", str(len(response.content)))
            response.content = b""
        return response


def _inline_style_source(template: Path) -> str:
    """The CSP source that allows the one inline <style> of our pages, and nothing else: the
    hash of its text, read from the template (it has no template tags, so it renders as is)."""
    match = re.search(r"<style>(.*?)</style>", template.read_text(), re.DOTALL)
    if match is None:
        raise RuntimeError(f"no <style> element in {template}")
    digest = hashlib.sha256(match.group(1).encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


# No inline script or event handler anywhere (Django 5.2's admin has none either), no plugins,
# no framing, forms post only here, no <base> to redirect relative URLs.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        f"style-src 'self' {_inline_style_source(STYLE_TEMPLATE)}",
        "img-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


class ContentSecurityPolicyMiddleware:
    """Django 5.2's SecurityMiddleware already sends X-Content-Type-Options, Referrer-Policy
    and Cross-Origin-Opener-Policy; the Content-Security-Policy is added here (Django 6.0 has it
    built in; docs/security.md says why not django-csp)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class LoginThrottleMiddleware:
    """A login attempt refused by the throttle answers 429 with Retry-After. A locked one is
    refused before the login view runs (a flood of them stays cheap); one that the backend
    refuses in a race answers 429 too, whatever the view made of it. One that waited too long
    for a password check answers 503 with Retry-After."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path == reverse("admin:login"):
            username = request.POST.get("username", "")
            retry_after = login_retry_after(address=client_address(request), username=username)
            if retry_after:
                return self._refused(request, retry_after)
        response = self.get_response(request)
        retry_after = getattr(request, "login_retry_after", 0)
        return self._refused(request, retry_after) if retry_after else response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, PasswordChecksBusyError):
            return None
        metrics.refusal_count(metrics.PASSWORD_CHECKS_BUSY)
        return _refusal(
            request,
            503,
            PASSWORD_CHECK_WAIT,
            f"Too many password checks at once: try again in {PASSWORD_CHECK_WAIT} s.\n",
            "Service Unavailable: %s (no password check free within %d s, for %s)",
            request.path,
            PASSWORD_CHECK_WAIT,
            client_address(request),
        )

    def _refused(self, request: HttpRequest, retry_after: int) -> HttpResponse:
        if gevent_active():
            # A greenlet's pause costs nothing, and a client looping on refused attempts
            # sends one a second per connection instead of as many as the server can answer.
            time.sleep(REFUSAL_DELAY)
        metrics.refusal_count(metrics.LOGIN_LOCKED)
        return _refusal(
            request,
            429,
            retry_after,
            f"Too many failed logins: try again in {retry_after} s.\n",
            "Too Many Requests: %s (login locked for %s, %d s left)",
            request.path,
            client_address(request),
            retry_after,
        )


def _refusal(
    request: HttpRequest, status: int, retry_after: int, text: str, log: str, *log_args: object
) -> HttpResponse:
    """A plain-text refusal with Retry-After, logged in one line."""
    response = HttpResponse(
        text,
        status=status,
        content_type="text/plain; charset=utf-8",
        headers={"Retry-After": str(retry_after)},
    )
    log_response(log, *log_args, response=response, request=request, logger=logger)
    return response


class DatabaseUnavailableMiddleware:
    """Turn a database failure (disk full, read-only volume, locked too long) into a 503.

    The transaction has already rolled back, so nothing was half counted. The connections are
    closed so the next request opens fresh ones once the cause goes away.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DatabaseError):
            return None
        logger.error("database error on %s %s: %s", request.method, request.path, exception)
        store_database_close()
        return HttpResponse(
            "Service unavailable: the visit database cannot be used right now.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
            headers={"Retry-After": "5"},
        )
