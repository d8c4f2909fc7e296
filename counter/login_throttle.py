"""Admin login throttling.

Every login attempt is counted against its client address and username, and against the
address for any username, in the pod's database before its password is checked: every worker
process sees the same counts, they outlive a restart, and parallel attempts cannot all slip
under the limit while their checks run. Past the limit an attempt gets 429 with Retry-After and
never reaches the hasher; a login resets its address's counts. docs/security.md says why this
is not django-axes.

The pieces Django calls: ThrottledModelBackend (counter/backends.py) counts an attempt,
LoginThrottleMiddleware (counter/middleware.py) refuses a locked one, and CounterConfig.ready()
(counter/apps.py) connects login_failures_clear to user_logged_in.
"""

import math
import time
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest

from counter.models import LoginFailures


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


# A login attempt's lockouts, read in plain SQL: a refused flood must stay as cheap as 404s, and
# the ORM's query building costs more than the query.
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


def login_failures_clear(sender: object, request: HttpRequest | None, user: Any, **kwargs) -> None:
    """On user_logged_in (connected in counter/apps.py): a login resets its address's counts."""
    if request is None:
        return
    LoginFailures.objects.filter(
        Q(username=user.get_username()[:150]) | Q(username__isnull=True),
        address=client_address(request),
    ).delete()
