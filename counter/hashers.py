"""The password hasher's share of the server.

A password check is ~0.2 s of PBKDF2. In a gevent worker it runs in a real thread (hashlib
releases the GIL), at most VISITS_PASSWORD_CHECKS at a time per process, so the worker's other
connections are served meanwhile; elsewhere (sync workers, tests, manage.py) it is a plain call.
A login that finds no check free within PASSWORD_CHECK_WAIT seconds gets 503 with Retry-After,
without its password being hashed (counter/middleware.py).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from counter import metrics
from counter.concurrency import gevent_active, greenlet_semaphore, in_thread
from counter.exceptions import PasswordChecksBusyError
from counter.process_local import ProcessLocal

# Seconds a login waits for a password check to be free before it answers 503. Under a flood
# from many addresses (no lockout applies) the queue would otherwise grow without end, and
# logins would wait past their clients' timeouts, each holding a connection. A busy moment's
# queue drains well within this (a check takes a fraction of a second), and a refused login
# hears so long before any client gives up.
PASSWORD_CHECK_WAIT = 5

T = TypeVar("T")


@dataclass
class _Checks(ProcessLocal):
    semaphore: Any = None  # gevent only: VISITS_PASSWORD_CHECKS slots, made at first use


_process = _Checks()


def _off_event_loop(func: Callable[..., T], *args: Any) -> T:
    if not gevent_active():
        return func(*args)
    if _process.semaphore is None:
        _process.semaphore = greenlet_semaphore(settings.VISITS_PASSWORD_CHECKS)
    checks = _process.semaphore
    metrics.PASSWORD_CHECKS_WAITING.inc()
    try:
        free = checks.acquire(timeout=PASSWORD_CHECK_WAIT)
    finally:
        metrics.PASSWORD_CHECKS_WAITING.dec()
    if not free:
        raise PasswordChecksBusyError
    try:
        return in_thread(func, *args)
    finally:
        checks.release()


class OffLoopPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's default hasher (same algorithm name, so existing hashes verify), with each
    hash computed off the gevent event loop. Unknown usernames go through it too: Django
    hashes the password anyway, to take as long as for a known one."""

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        return _off_event_loop(super().encode, password, salt, iterations)
