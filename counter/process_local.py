"""State a module keeps for the life of its process besides the count (the database holds that):
caches, open files, connections, threads. Each module owns its own, a dataclass deriving from
ProcessLocal, and no other module reaches into it.

A forked child starts with every such state fresh, reset in place: threads do not survive a
fork, a lock file opened before it would be shared with the parent, and a SQLite connection
must never cross it. What the parent held is left as it is, the parent's. Each unit test starts
fresh too (counter/tests/conftest.py), so no test resets a module's globals by hand.
"""

import dataclasses
import os

_every: list["ProcessLocal"] = []


class ProcessLocal:
    """Base of a module's per-process state: a dataclass whose fields all have defaults, made
    once at import. Anything that depends on gevent (its locks) is made at first use: gevent
    patches threading in a worker after the fork that reset the state."""

    def __post_init__(self) -> None:
        _every.append(self)

    def renew(self) -> None:
        """Every field back to its default, in place."""
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            fresh = (
                field.default
                if field.default_factory is dataclasses.MISSING
                else field.default_factory()
            )
            setattr(self, field.name, fresh)

    def close(self) -> None:
        """Release what the state holds (files, connections, threads): a test's, once it is
        done. Nothing by default."""


def process_local_renew() -> None:
    """Every module's state as a new process starts with it."""
    for state in _every:
        state.renew()


def process_local_close() -> None:
    for state in _every:
        state.close()


os.register_at_fork(after_in_child=process_local_renew)
