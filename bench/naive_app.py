"""The baseline: count visits the way typical implementations do, reading the file, adding one
and writing it back, with no lock. Served by the same gunicorn settings as the real site
(bench/naive.gunicorn.conf.py)."""

import os
from pathlib import Path

VISITS = Path(os.environ["VISITS_DATA_DIR"]) / "visits"


def application(environ, start_response):
    try:
        count = int(VISITS.read_text())
    except (FileNotFoundError, ValueError):
        count = 0
    VISITS.write_text(f"{count + 1}\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{count + 1}\n".encode()]
