import platform
import sqlite3
from dataclasses import asdict

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers

from counter.chart import cluster_chart_svg
from counter.exceptions import FormatError
from counter.health import readiness_problem
from counter.home_page import home_page_html
from counter.peers import cluster_counts
from counter.store.visits import visit_record, visits_current, visits_past_days, visits_total

TEXT = "text/plain; charset=utf-8"


def _wants_json(request: HttpRequest) -> bool:
    """`?format=json|text` wins; otherwise JSON only when the client prefers it to text."""
    requested = request.GET.get("format")
    if requested is not None:
        if requested not in ("json", "text"):
            raise FormatError(f"unknown format {requested[:20]!r}: use json or text")
        return requested == "json"
    preferred = request.get_preferred_type(["text/plain", "application/json"])
    return preferred == "application/json"


@never_cache
@require_http_methods(["GET", "HEAD"])
def home(request: HttpRequest) -> HttpResponse:
    """The page. A GET counts one visit; a HEAD shows the headers without counting."""
    today = timezone.now().date()
    tally = visit_record(day=today) if request.method == "GET" else visits_current(day=today)
    return HttpResponse(home_page_html(tally=tally, past=visits_past_days(today=today)))


@never_cache
@vary_on_headers("Accept")
@require_GET
def visits(request: HttpRequest) -> HttpResponse:
    """This pod's count, read-only: `N\\n`, or JSON for clients that ask for it."""
    try:
        as_json = _wants_json(request)
    except FormatError as error:
        return HttpResponseBadRequest(f"{error}\n", content_type=TEXT)
    total = visits_total()
    if as_json:
        return JsonResponse({"pod": settings.POD_NAME, "visits": total})
    return HttpResponse(f"{total}\n", content_type=TEXT)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. No database access, so a database hiccup or a full disk
    makes the pod unready instead of getting it restarted."""
    return HttpResponse("ok\n", content_type=TEXT)


@never_cache
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    problem = readiness_problem()
    if problem:
        return HttpResponse(f"not ready: {problem}\n", status=503, content_type=TEXT)
    return HttpResponse("ready\n", content_type=TEXT)


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. The count is read from the database, so every worker agrees."""
    tally = visits_current(day=timezone.now().date())
    pod = _label(settings.POD_NAME)
    build = ",".join(
        f'{name}="{_label(value)}"'
        for name, value in (
            ("version", settings.APP_VERSION),
            ("django", django.get_version()),
            ("python", platform.python_version()),
            ("sqlite", sqlite3.sqlite_version),
        )
    )
    body = (
        "# HELP visits_total Visits counted by this pod (GET /) since its volume was created.\n"
        "# TYPE visits_total counter\n"
        f'visits_total{{pod="{pod}"}} {tally.total}\n'
        "# HELP visits_today Visits counted by this pod today (UTC).\n"
        "# TYPE visits_today gauge\n"
        f'visits_today{{pod="{pod}"}} {tally.today}\n'
        "# HELP app_python_build_info Versions of the running app and its stack.\n"
        "# TYPE app_python_build_info gauge\n"
        f"app_python_build_info{{{build}}} 1\n"
    )
    return HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")


@never_cache
@vary_on_headers("Accept")
@require_GET
def cluster(request: HttpRequest) -> HttpResponse:
    """Every pod's count, asked of the pods themselves; counts nothing."""
    try:
        as_json = _wants_json(request)
    except FormatError as error:
        return HttpResponseBadRequest(f"{error}\n", content_type=TEXT)
    counts = cluster_counts()
    total = sum(count.visits or 0 for count in counts)
    if as_json:
        return JsonResponse({"total": total, "pods": [asdict(count) for count in counts]})
    context = {
        "pod": settings.POD_NAME,
        "counts": counts,
        "total": total,
        "reachable": sum(count.error is None for count in counts),
        "chart": cluster_chart_svg(counts),
        "version": settings.APP_VERSION,
    }
    return HttpResponse(render_to_string("counter/cluster.html", context))
