"""Every exception the app raises of its own. The storage refusals share StoreError, so a caller
that handles them all alike catches one class; the others keep the base their handlers rely on.
Each message says what is wrong and, where an operator can act, what to do."""

from django.db import DatabaseError


class StoreError(RuntimeError):
    """The data directory or something in it cannot be used as it is (counter/store/)."""


class CounterMissingError(StoreError):
    """The counter row does not exist: `manage.py prepare` has not run on this database."""


class CountBackwardsError(StoreError):
    """The database counts fewer visits than the visits file says: it lost acknowledged ones."""


class SnapshotError(StoreError):
    """A snapshot that must not be restored; the message says why."""


class SnapshotRiskError(SnapshotError):
    """A snapshot that may be restored only on purpose (`restore --force`): it would replace
    this pod's count by another pod's, or by a lower one. `risks` says what would be lost."""

    def __init__(self, risks: list[str]) -> None:
        super().__init__("; ".join(risks))
        self.risks = risks


class SchemaError(StoreError):
    """The database was migrated by a later major version of the app (counter/store/schema.py);
    the message says how to go back."""


class DataDirError(StoreError):
    """prepare's checks found the data directory, the database or a legacy visits file
    unusable; the message says why."""


class CountingStoppedError(DatabaseError):
    """This process stopped counting: a database file it uses was deleted or replaced
    (counter/store/guard.py). A DatabaseError, so a visit answers 503."""


class AdminUserError(ValueError):
    """VISITS_ADMIN_PASSWORD_HASH is not a Django password hash."""


class PasswordChecksBusyError(Exception):
    """No password check came free within PASSWORD_CHECK_WAIT seconds (counter/hashers.py): the
    login answers 503."""


class FormatError(ValueError):
    """A `?format=` that /visits and /cluster do not know (they answer 400)."""
