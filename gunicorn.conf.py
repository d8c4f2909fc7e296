"""gunicorn settings for `manage.py serve`. GUNICORN_CMD_ARGS overrides any of them."""

import os

bind = ["0.0.0.0:8000"]
chdir = os.path.dirname(os.path.abspath(__file__))
# Few workers: they all queue on SQLite's single writer, so more only add memory.
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
accesslog = "-"
# The heartbeat file lives in memory, off a read-only root filesystem.
worker_tmp_dir = "/dev/shm"
timeout = 30
# Below the pod's terminationGracePeriodSeconds (30 s), so in-flight requests finish.
graceful_timeout = 20
# gunicorn >= 25.1 opens a control socket under $HOME, which a read-only root cannot hold.
control_socket_disable = True


def child_exit(server, worker):
    """A worker killed between a commit and its write of the visits file (SIGKILL, OOM) leaves
    the file behind the database: bring it up to date from the master. Never raises: an
    exception here would stop the master."""
    try:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "visits_site.settings")
        django.setup()
        from counter.visits import visits_file_resync

        visits_file_resync()
    except Exception:
        server.log.exception("could not bring the visits file up to date after a worker exit")
