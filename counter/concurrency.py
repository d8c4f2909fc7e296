"""How this process serves its connections, asked in one place: as greenlets of one thread in
a gevent worker (gunicorn.conf.py's worker class, visits_site/worker.py), or one thread each
(sync workers, management commands, tests). The only module of the app that imports gevent
(`make lint` checks it); the store, the hasher and the middleware ask here.

In a gevent worker a call that blocks in C (a `flock` held by another process, PBKDF2) stalls
every connection of the worker, the probes included: such a call runs in a real thread of
gevent's pool while the event loop serves the others. gevent is imported only where it is
used, in a gevent worker, which has loaded it already.
"""

import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def gevent_active() -> bool:
    """In a gevent worker (monkey-patched): not in tests, manage.py commands or sync workers."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def in_thread(func: Callable[..., T], *args: Any) -> T:
    """func(*args) in a thread of gevent's pool; this greenlet waits, the others run."""
    import gevent

    return gevent.get_hub().threadpool.apply(func, args)


class ThreadCall:
    """func(*args) started in a thread of gevent's pool, for a greenlet to wait on."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        import gevent

        self._result = gevent.get_hub().threadpool.spawn(func, *args)

    def wait(self, timeout: float) -> bool:
        """Whether the call ended within `timeout` seconds (this greenlet waits, the others
        run); raises what the call raised."""
        import gevent

        try:
            self._result.get(timeout=timeout)
        except gevent.Timeout:
            return False
        return True

    def ended(self) -> bool:
        """Whether the call returned or raised."""
        return self._result.ready()


def os_lock() -> Any:
    """A lock that blocks the whole thread that waits for it, not only a greenlet: for a pool
    thread and the event loop to hand something over."""
    from gevent.monkey import get_original

    return get_original("_thread", "allocate_lock")()


def greenlet_semaphore(value: int) -> Any:
    """A semaphore for the greenlets of this worker (`acquire(timeout=...)`, `release()`)."""
    import gevent.lock

    return gevent.lock.BoundedSemaphore(value)
