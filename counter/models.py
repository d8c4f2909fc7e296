from django.db import models


class VisitCounter(models.Model):
    """This pod's total number of visits: a single row, id 1, created by `manage.py prepare`."""

    total = models.PositiveBigIntegerField(default=0)
    # The pod whose count this is, written by `prepare` at every start: a snapshot of the
    # database says where it comes from (`manage.py restore` asks before it crosses pods).
    # NULL in a database no version 1.3.0 or later has started on.
    pod = models.CharField(max_length=253, null=True)  # noqa: DJ001

    class Meta:
        verbose_name = "visit counter"

    def __str__(self) -> str:
        return f"{self.total} visits"


class DailyVisits(models.Model):
    """Visits per UTC day: one row a day, so the table grows by 365 rows a year at most."""

    day = models.DateField(primary_key=True)
    visits = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "daily visits"
        verbose_name_plural = "daily visits"
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"{self.day}: {self.visits}"


class LoginFailures(models.Model):
    """Failed admin logins from one client address with one username, or with any username
    (username NULL), counted while each follows the last within the lockout time
    (counter/login_throttle.py). In the pod's database, so every worker process sees them."""

    address = models.CharField(max_length=100)
    # NULL, not "": the row for every username of the address, which no typed name can reach.
    username = models.CharField(max_length=150, null=True)  # noqa: DJ001
    failures = models.PositiveIntegerField(default=0)
    last_failure = models.FloatField(db_index=True)  # Unix time: compared in plain SQL

    class Meta:
        verbose_name_plural = "login failures"
        constraints = [
            models.UniqueConstraint(fields=["address", "username"], name="login_failures_key")
        ]

    def __str__(self) -> str:
        return f"{self.address} {self.username!r}: {self.failures}"
