from django.contrib import admin
from django.http import HttpRequest

from counter.models import DailyVisits, VisitCounter


class ReadOnlyAdmin(admin.ModelAdmin):
    """Visits are only ever counted, never typed in: editing a total in a form would be a
    read-modify-write that loses the visits counted while the form was open."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(VisitCounter)
class VisitCounterAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "total"]


@admin.register(DailyVisits)
class DailyVisitsAdmin(ReadOnlyAdmin):
    list_display = ["day", "visits"]
    date_hierarchy = "day"
