from django.db import models


class VisitCounter(models.Model):
    """This pod's total number of visits: a single row, id 1, created by `manage.py prepare`."""

    total = models.PositiveBigIntegerField(default=0)

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
