from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User
from django.http import HttpRequest

from counter.models import DailyVisits, VisitCounter


class CheckedChangeList(ChangeList):
    """A query parameter that only fails when its query runs (a number too big for SQLite, a
    year 0 or 99999999999999999999 in the date drill-down) is a wrong parameter, like those
    Django catches itself: the admin redirects to its error page (?e=1) instead of a 500."""

    def get_filters(self, request: HttpRequest) -> tuple:
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error

    def get_results(self, request: HttpRequest) -> None:
        try:
            super().get_results(request)
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error


class CheckedChangeListMixin:
    def get_changelist(self, request: HttpRequest, **kwargs: object) -> type[ChangeList]:
        return CheckedChangeList


class ReadOnlyAdmin(CheckedChangeListMixin, admin.ModelAdmin):
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


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(CheckedChangeListMixin, auth_admin.UserAdmin):
    pass


@admin.register(Group)
class GroupAdmin(CheckedChangeListMixin, auth_admin.GroupAdmin):
    pass
