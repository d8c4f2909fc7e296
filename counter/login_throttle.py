"""Admin login throttling and the password hasher's share of the server.

Every login attempt is counted against its client address and username, and against the
address for any username, in the pod's database before its password is checked: every worker
process sees the same counts, they outlive a restart, and parallel attempts cannot all slip
under the limit while their checks run. Past the limit an attempt gets 429 with Retry-After and
never reaches the hasher; a login resets its address's counts. docs/security.md says why this
is not django-axes.

A password check is ~0.2 s of PBKDF2. In a gevent worker it runs in a real thread (hashlib
releases the GIL), at most VISITS_PASSWORD_CHECKS at a time per process, so the worker's other
connections are served meanwhile; elsewhere (sync workers, tests, manage.py) it is a plain call.
A login that finds no check free within PASSWORD_CHECK_WAIT seconds gets 503 with Retry-After,
without its password being hashed.
"""

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Q
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.log import log_response

from counter import process
from counter.exceptions import PasswordChecksBusyError
from counter.models import LoginFailures

logger = logging.getLogger(__name__)

REFUSAL_DELAY = 1.0  # seconds before a 429, in gevent workers
# Seconds a login waits for a password check to be free before it answers 503. Under a flood
# from many addresses (no lockout applies) the queue would otherwise grow without end, and
# logins would wait past their clients' timeouts, each holding a connection. A busy moment's
# queue drains well within this (a check takes a fraction of a second), and a refused login
# hears so long before any client gives up.
PASSWORD_CHECK_WAIT = 5

T = TypeVar("T")


def client_address(request: HttpRequest) -> str:
    """REMOTE_ADDR, or with VISITS_TRUSTED_PROXY_HOPS = n the address that the outermost of
    those n proxies put in X-Forwarded-For (n-th from the right): what a client writes there
    itself is further left and never read, so it cannot spoof its way out of a lockout."""
    remote = request.META.get("REMOTE_ADDR", "")
    hops = settings.VISITS_TRUSTED_PROXY_HOPS
    if hops:
        chain = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if len(chain) >= hops and chain[-hops]:
            return chain[-hops][:100]
    return remote[:100]


def _limits(username: str) -> dict[str | None, int]:
    return {
        username: settings.VISITS_LOGIN_FAILURE_LIMIT,
        None: settings.VISITS_LOGIN_ADDRESS_FAILURE_LIMIT,
    }


# A login attempt's lockouts, read in plain SQL: a 429 costs about a 404 (the ORM tripled it).
_LOCKOUTS = (
    f"SELECT username, failures, last_failure FROM {LoginFailures._meta.db_table}"
    " WHERE address = %s AND (username = %s OR username IS NULL) AND last_failure > %s"
)


def _retry_after(*, address: str, username: str, now: float) -> int:
    lockout = settings.VISITS_LOGIN_LOCKOUT_SECONDS
    with connection.cursor() as cursor:
        cursor.execute(_LOCKOUTS, [address, username, now - lockout])
        counts = {name: (failures, last) for name, failures, last in cursor.fetchall()}
    for name, limit in _limits(username).items():
        failures, last = counts.get(name, (0, 0.0))
        if failures >= limit:
            return max(1, math.ceil(last + lockout - now))
    return 0


def login_retry_after(*, address: str, username: str) -> int:
    """0 if a login attempt may go on, otherwise the seconds until its lockout ends. A read:
    a flood of locked attempts does not queue for the database's write lock."""
    return _retry_after(address=address, username=username[:150], now=time.time())


def login_attempt_admit(*, address: str, username: str) -> int:
    """Count one login attempt, before its password is checked: 0 lets it go on, otherwise
    it is refused, not counted, and this is the seconds until its lockout ends."""
    now = time.time()
    username = username[:150]
    # BEGIN IMMEDIATE (settings): attempts in every process are counted one after the other,
    # so parallel attempts cannot all pass the check before any of them is counted.
    with transaction.atomic():
        forgotten = now - settings.VISITS_LOGIN_LOCKOUT_SECONDS
        LoginFailures.objects.filter(last_failure__lte=forgotten).delete()
        if wait := _retry_after(address=address, username=username, now=now):
            return wait
        counts = {
            row.username: row
            for row in LoginFailures.objects.filter(
                Q(username=username) | Q(username__isnull=True), address=address
            )
        }
        for name in _limits(username):
            row = counts.get(name) or LoginFailures(address=address, username=name)
            row.failures += 1
            row.last_failure = now
            row.save()
    return 0


@receiver(user_logged_in)
def login_failures_clear(sender: object, request: HttpRequest | None, user: Any, **kwargs) -> None:
    if request is None:
        return
    LoginFailures.objects.filter(
        Q(username=user.get_username()[:150]) | Q(username__isnull=True),
        address=client_address(request),
    ).delete()


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend behind the throttle. A refused attempt is marked on the request
    for LoginThrottleMiddleware and stops authenticate() before any password is hashed."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if request is not None and username is not None:
            retry_after = login_attempt_admit(address=client_address(request), username=username)
            if retry_after:
                request.login_retry_after = retry_after  # type: ignore[attr-defined]
                raise PermissionDenied
        return super().authenticate(request, username, password, **kwargs)


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
        if _gevent_active():
            # A greenlet's pause costs nothing, and a client looping on refused attempts
            # sends one a second per connection instead of as many as the server can answer.
            time.sleep(REFUSAL_DELAY)
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


def _gevent_active() -> bool:
    """In a gevent worker (monkey-patched): not in tests, manage.py commands or sync workers."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def _off_event_loop(func: Callable[..., T], *args: Any) -> T:
    if not _gevent_active():
        return func(*args)
    import gevent
    import gevent.lock

    owner = process.state
    if owner.password_checks is None:
        owner.password_checks = gevent.lock.BoundedSemaphore(settings.VISITS_PASSWORD_CHECKS)
    checks = owner.password_checks
    if not checks.acquire(timeout=PASSWORD_CHECK_WAIT):
        raise PasswordChecksBusyError
    try:
        return gevent.get_hub().threadpool.apply(func, args)
    finally:
        checks.release()


class OffLoopPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's default hasher (same algorithm name, so existing hashes verify), with each
    hash computed off the gevent event loop. Unknown usernames go through it too: Django
    hashes the password anyway, to take as long as for a known one."""

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        return _off_event_loop(super().encode, password, salt, iterations)
