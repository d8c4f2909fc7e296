from dataclasses import asdict

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers

from counter.exceptions import FormatError
from counter.health import readiness_problem
from counter.home_page import home_page_html
from counter.peers import cluster_counts
from counter.pod_metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from counter.pod_metrics import metrics_exposition
from counter.store.visits import visit_record, visits_current, visits_past_days, visits_total
from counter.svg import cluster_svg

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


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, the whole pod's from any of its workers (counter/pod_metrics.py)."""
    return HttpResponse(metrics_exposition(), content_type=METRICS_CONTENT_TYPE)


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
        "chart": cluster_svg(counts),
        "version": settings.APP_VERSION,
    }
    return HttpResponse(render_to_string("counter/cluster.html", context))
