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
"""

import logging
import math
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.log import log_response

from counter.models import LoginFailures

logger = logging.getLogger(__name__)

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


def login_attempt_admit(*, address: str, username: str) -> int:
    """Count one login attempt, before its password is checked; 0 lets it go on, otherwise
    the seconds until its lockout ends (the attempt is then not counted)."""
    now = timezone.now()
    lockout = timedelta(seconds=settings.VISITS_LOGIN_LOCKOUT_SECONDS)
    username = username[:150]
    limits = {username: settings.VISITS_LOGIN_FAILURE_LIMIT}
    limits[None] = settings.VISITS_LOGIN_ADDRESS_FAILURE_LIMIT  # type: ignore[index]
    # BEGIN IMMEDIATE (settings): attempts in every process are counted one after the other.
    with transaction.atomic():
        LoginFailures.objects.filter(last_failure__lte=now - lockout).delete()
        rows = {
            row.username: row
            for row in LoginFailures.objects.filter(
                Q(username=username) | Q(username__isnull=True), address=address
            )
        }
        for name, limit in limits.items():
            row = rows.get(name)
            if row is not None and row.failures >= limit:
                return max(1, math.ceil((row.last_failure + lockout - now).total_seconds()))
        for name in limits:
            row = rows.get(name) or LoginFailures(address=address, username=name)
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
    """A login refused by the throttle answers 429 with Retry-After, whatever the view made
    of it (the admin would show its form again, as for a wrong password)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        retry_after = getattr(request, "login_retry_after", 0)
        if not retry_after:
            return response
        response = HttpResponse(
            f"Too many failed logins: try again in {retry_after} s.\n",
            status=429,
            content_type="text/plain; charset=utf-8",
            headers={"Retry-After": str(retry_after)},
        )
        log_response(
            "Too Many Requests: %s (login locked for %s, %d s left)",
            request.path,
            client_address(request),
            retry_after,
            response=response,
            request=request,
            logger=logger,
        )
        return response


_gate: Any = None  # gevent's semaphore for password checks, made in the worker that needs it


def _off_event_loop(func: Callable[..., T], *args: Any) -> T:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return func(*args)
    import gevent
    import gevent.lock

    global _gate
    if _gate is None:
        _gate = gevent.lock.BoundedSemaphore(settings.VISITS_PASSWORD_CHECKS)
    with _gate:
        return gevent.get_hub().threadpool.apply(func, args)


class OffLoopPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's default hasher (same algorithm name, so existing hashes verify), with each
    hash computed off the gevent event loop. Unknown usernames go through it too: Django
    hashes the password anyway, to take as long as for a known one."""

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        return _off_event_loop(super().encode, password, salt, iterations)
