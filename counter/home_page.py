"""The home page: its Django template is rendered once per process and history window, with
slots for the three numbers that change on every visit, which each visit then fills in.

Rendering the template and the chart for every visit costs far more than the counting
statement; filling the slots, a small fraction of it (docs/performance-history.md, "What was
tried on the counting path"). Between two visits
only the total, today's count and the chart's scale change, and they are digits: nothing to
escape, so filling them into the rendered page gives the same bytes as rendering it again (a
unit test compares the two).
"""

from dataclasses import dataclass

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from counter.process_local import ProcessLocal
from counter.store.visits import PastDays, VisitTally
from counter.svg import history_scale, history_svg

# A slot is its name between NULs: NUL cannot occur in the template, in an environment
# variable (the pod name) or in the version, so the rendered page holds no other.
SLOTS = ("total", "today", "scale")


def _slot(name: str) -> SafeString:
    return mark_safe(f"\0{name}\0")


@dataclass(frozen=True)
class Frame:
    """The page rendered for one history window."""

    past: PastDays
    pod: str
    version: str
    past_peak: int  # the busiest past day, for the chart's scale
    pieces: tuple[str, ...]  # the rendered page split at its slots: text, slot name, text, ...


@dataclass
class _Page(ProcessLocal):
    frame: Frame | None = None  # this process's, for the latest history window


_process = _Page()


def _frame_render(past: PastDays) -> Frame:
    html = render_to_string(
        "counter/home.html",
        {
            "pod": settings.POD_NAME,
            "total": _slot("total"),
            "today": _slot("today"),
            "chart": history_svg(
                past=past.days, today=past.today, visits=_slot("today"), scale=_slot("scale")
            ),
            "days": len(past.days) + 1,
            "version": settings.APP_VERSION,
        },
    )
    pieces = tuple(html.split("\0"))
    names = pieces[1::2]
    if len(pieces) % 2 == 0 or set(names) != set(SLOTS):
        raise RuntimeError(f"counter/home.html rendered with slots {names}, expected {SLOTS}")
    return Frame(
        past=past,
        pod=settings.POD_NAME,
        version=settings.APP_VERSION,
        past_peak=max((visits for _, visits in past.days), default=0),
        pieces=pieces,
    )


def home_page_html(*, tally: VisitTally, past: PastDays) -> str:
    """The page for `tally`, with the history chart of `past` (visits_past_days) and today."""
    frame = _process.frame
    if (
        frame is None
        or frame.past is not past
        or frame.pod != settings.POD_NAME
        or frame.version != settings.APP_VERSION
    ):
        frame = _process.frame = _frame_render(past)
    values = {
        "total": str(tally.total),
        "today": str(tally.today),
        "scale": history_scale(busiest=max(frame.past_peak, tally.today)),
    }
    pieces = list(frame.pieces)
    pieces[1::2] = [values[name] for name in pieces[1::2]]
    return "".join(pieces)
