"""gunicorn settings for bench/naive_app.py: every setting of the site's gunicorn.conf.py, so
the baseline is served by the same workers with the same limits, and none of its hooks, which
keep the Django app's visits file and would find no Django here."""

import runpy
from pathlib import Path

_site = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update(
    {
        name: value
        for name, value in _site.items()
        if not name.startswith("_") and not callable(value)
    }
)
