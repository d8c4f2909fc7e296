"""The backup sidecar's metrics, relayed on a port of the app's own.

Litestream serves its metrics on Go's default HTTP mux, where it also serves Go's profiler
(/debug/pprof/: heap dumps, goroutine stacks, CPU profiles). So the chart binds Litestream to the
pod's loopback only, and the app answers GET /metrics on the pod's backup-metrics port with what
Litestream's /metrics says: the profiler never leaves the pod, and the metrics reach Prometheus
through the same server that holds off hostile clients on the app's port. Any other path on that
port is a 404; Litestream not answering is a 503 (the scrape fails, as it did when Prometheus
scraped the sidecar itself).

gunicorn listens on the extra port when VISITS_BACKUP_METRICS_URL is set (gunicorn.conf.py,
settings.py); a request is the relay's by the port its connection came in on, never by its Host
header. Nothing of Django runs for it.
"""

import http.client
import logging
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

TIMEOUT = 2.0  # seconds Litestream gets to answer
MAX_BYTES = 4 * 1024 * 1024  # what a scrape can relay; Litestream's is some tens of kilobytes


def by_port(app, *, port: int, url: str):
    """WSGI: requests that came in on `port` go to the relay of `url`, the others to `app`."""

    def dispatch(environ: dict, start_response):
        sock = environ.get("gunicorn.socket")
        if sock is not None and sock.getsockname()[1] == port:
            return _relay(environ, start_response, url)
        return app(environ, start_response)

    return dispatch


def _relay(environ: dict, start_response, url: str) -> list[bytes]:
    if environ.get("PATH_INFO") != "/metrics" or environ["REQUEST_METHOD"] != "GET":
        return _text(start_response, "404 Not Found", "only GET /metrics is served on this port\n")
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        connection.request("GET", parts.path or "/")
        answer = connection.getresponse()
        body = answer.read(MAX_BYTES + 1)
    except OSError as error:
        logger.warning("the backup sidecar's metrics (%s) did not answer: %s", url, error)
        return _text(start_response, "503 Service Unavailable",
                     f"the backup sidecar's metrics did not answer: {error}\n")  # fmt: skip
    finally:
        connection.close()
    if answer.status != 200 or len(body) > MAX_BYTES:
        why = f"HTTP {answer.status}" if answer.status != 200 else f"over {MAX_BYTES} bytes"
        logger.warning("the backup sidecar's metrics (%s): %s", url, why)
        return _text(start_response, "502 Bad Gateway", f"the backup sidecar's metrics: {why}\n")
    kind = answer.getheader("Content-Type", "text/plain; version=0.0.4")
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


def _text(start_response, status: str, text: str) -> list[bytes]:
    body = text.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]
