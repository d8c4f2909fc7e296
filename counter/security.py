"""Security headers and quiet logs for rejected requests.

Django 5.2's SecurityMiddleware already sends X-Content-Type-Options, Referrer-Policy and
Cross-Origin-Opener-Policy; the Content-Security-Policy is added here (Django 6.0 has it built
in; docs/security.md says why not django-csp).
"""

import base64
import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

from django.http import HttpRequest, HttpResponse

STYLE_TEMPLATE = Path(__file__).resolve().parent / "templates" / "counter" / "style.html"


def _inline_style_source(template: Path) -> str:
    """The CSP source that allows the one inline <style> of our pages, and nothing else: the
    hash of its text, read from the template (it has no template tags, so it renders as is)."""
    match = re.search(r"<style>(.*?)</style>", template.read_text(), re.DOTALL)
    if match is None:
        raise RuntimeError(f"no <style> element in {template}")
    digest = hashlib.sha256(match.group(1).encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


# No inline script or event handler anywhere (Django 5.2's admin has none either), no plugins,
# no framing, forms post only here, no <base> to redirect relative URLs.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        f"style-src 'self' {_inline_style_source(STYLE_TEMPLATE)}",
        "img-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class QuietRejectionsFilter(logging.Filter):
    """Django logs a request it rejects as suspicious (foreign Host, too many fields, ...) on a
    `django.security.*` logger, with the traceback of the exception that rejected it: dozens of
    lines for a 400 any scanner can cause. Keep the line, drop the traceback. Server errors
    (`django.request`) keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security."):
            record.exc_info = None
            record.exc_text = None
        return True
