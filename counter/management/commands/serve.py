import glob
import hashlib
import os
import sys
import tempfile

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from counter.metrics import MULTIPROC_DIR


class Command(BaseCommand):
    help = "Run `prepare`, then replace this process with gunicorn (gunicorn.conf.py)."

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG and not (settings.STATIC_ROOT / "staticfiles.json").exists():
            raise CommandError(
                f"static files are not collected in {settings.STATIC_ROOT}: run"
                " `python manage.py collectstatic --noinput` (the image does it at build time)"
            )
        os.environ[MULTIPROC_DIR] = _metrics_dir_empty(os.environ.get(MULTIPROC_DIR))
        call_command("prepare")
        # SQLite connections must not cross fork(): close them before gunicorn forks workers.
        connections.close_all()
        sys.stdout.flush()
        sys.stderr.flush()
        config = str(settings.BASE_DIR / "gunicorn.conf.py")
        os.execve(
            sys.executable,
            [sys.executable, "-m", "gunicorn", "--config", config, "visits_site.wsgi"],
            {**os.environ, "VISITS_DATABASE_MUST_EXIST": "1"},  # prepare made it (settings.py)
        )


def _metrics_dir_empty(path: str | None) -> str:
    """The workers' metrics directory (counter/metrics.py), emptied: the files of an earlier
    server's workers would be summed with this one's. By default one per data directory in the
    temporary directory: in the pod, its /tmp volume (the root filesystem is read-only), which
    outlives a restart of the container, hence emptied rather than made anew."""
    if not path:
        key = hashlib.sha256(str(settings.VISITS_DATA_DIR).encode()).hexdigest()[:12]
        path = os.path.join(tempfile.gettempdir(), f"app-python-metrics-{os.getuid()}-{key}")
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        os.remove(name)
    return path
