import os
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections


class Command(BaseCommand):
    help = "Run `prepare`, then replace this process with gunicorn (gunicorn.conf.py)."

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG and not (settings.STATIC_ROOT / "staticfiles.json").exists():
            raise CommandError(
                f"static files are not collected in {settings.STATIC_ROOT}: run"
                " `python manage.py collectstatic --noinput` (the image does it at build time)"
            )
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
