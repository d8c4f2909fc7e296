"""A request whose target names a host (absolute form, `GET http://name/ HTTP/1.1`) is checked
against ALLOWED_HOSTS by that host, not by its Host header (visits_site/wsgi.py)."""

import urllib.parse


class AbsoluteFormHost:
    """WSGI middleware: the host of a request whose target is in absolute form (`GET
    http://name/ HTTP/1.1`) is the target's, and its Host header is ignored (RFC 9112, 3.2.2).
    gunicorn passes the Host header on as it came, so a target naming another authority was
    answered, and counted, as if it named this one; now ALLOWED_HOSTS judges the target's."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response):
        target = environ.get("RAW_URI", "")
        # Origin form (`/path?next=http://x`) starts with a slash; only a scheme makes it absolute.
        if not target.startswith("/") and (parts := urllib.parse.urlsplit(target)).scheme:
            environ["HTTP_HOST"] = parts.netloc  # none at all (`http:/x`): Django's 400
        return self.app(environ, start_response)
