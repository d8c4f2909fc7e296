from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import Group, User
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

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


class ReadOnlyMixin:
    """Nothing here is added, changed or deleted through the admin; it is shown only."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnlyMixin, CheckedChangeListMixin, admin.ModelAdmin):
    """Visits are only ever counted, never typed in: editing a total in a form would be a
    read-modify-write that loses the visits counted while the form was open."""


@admin.register(VisitCounter)
class VisitCounterAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "total"]


@admin.register(DailyVisits)
class DailyVisitsAdmin(ReadOnlyAdmin):
    list_display = ["day", "visits"]
    date_hierarchy = "day"


admin.site.unregister(User)
admin.site.unregister(Group)


def password_managed(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    """What the admin's "Change password" and a user's "Reset password" lead to: where the
    password comes from and how to change it. Nothing is changed here, whatever the method."""
    context = {**admin.site.each_context(request), "title": "Password"}
    status = 200 if request.method in ("GET", "HEAD") else 403
    return TemplateResponse(request, "counter/admin_password.html", context, status=status)


# The admin site's own view for the logged-in user's password, replaced on the one site there is
# (visits_site/urls.py routes to it).
admin.site.password_change = password_managed


@admin.register(User)
class UserAdmin(ReadOnlyMixin, CheckedChangeListMixin, auth_admin.UserAdmin):
    """The admin user comes from the environment (counter/admin_user.py): every start of every
    pod puts VISITS_ADMIN_PASSWORD_HASH's password back, and each pod has its own database, so
    a user or a password changed here would hold on one pod, until its next start."""

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        if self.get_object(request, unquote(id)) is None:
            raise Http404("no such user")
        return password_managed(request)


@admin.register(Group)
class GroupAdmin(ReadOnlyMixin, CheckedChangeListMixin, auth_admin.GroupAdmin):
    """Groups only grant permissions to users, and those are read-only too."""
