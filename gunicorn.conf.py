"""gunicorn settings for `manage.py serve`. GUNICORN_CMD_ARGS overrides any of them.

The limits that keep a pod answering hostile clients are explained in visits_site/worker.py.
"""

import gc
import os

from visits_site.settings import VISITS_BACKUP_METRICS_PORT, VISITS_BACKUP_METRICS_URL
from visits_site.worker import cores_available

bind = ["0.0.0.0:8000"]
# The backup sidecar's metrics, relayed (visits_site/backup_metrics.py).
if VISITS_BACKUP_METRICS_URL:
    bind.append(f"0.0.0.0:{VISITS_BACKUP_METRICS_PORT}")
chdir = os.path.dirname(os.path.abspath(__file__))
# gevent workers (visits_site/worker.py): slow or idle clients each hold a greenlet, not a
# worker. One per core it may use: a worker beyond them only adds a queue of connections that
# waits for a core, and they all queue on SQLite's single writer (docs/performance-history.md).
worker_class = "visits_site.worker.Worker"
workers = int(os.environ.get("WEB_CONCURRENCY") or cores_available())
worker_connections = 1000  # per worker; one more gets 503
keepalive = 5  # seconds for a request head to arrive, and for an idle connection to live
accesslog = "-"
# VISITS_LOG_FORMAT=json: gunicorn's lines, the access log's included, as JSON.
if os.environ.get("VISITS_LOG_FORMAT", "text").lower() == "json":
    logger_class = "visits_site.gunicorn_logger.GunicornLogger"
# The heartbeat file lives in memory, off a read-only root filesystem.
worker_tmp_dir = "/dev/shm"
# A worker whose event loop is stuck this long is killed and replaced by the master.
timeout = 30
# Below the pod's terminationGracePeriodSeconds (30 s), so in-flight requests finish.
graceful_timeout = 20
# gunicorn >= 25.1 opens a control socket under $HOME, which a read-only root cannot hold.
control_socket_disable = True


def post_worker_init(worker):
    """Every worker watches the database files it holds open (counter/store/guard.py) and keeps
    the visits file up to date (counter/store/visits_file.py).

    Then it freezes what it holds once started (Django, the app, the settings): the garbage
    collector no longer walks them, where each full collection stalled every connection of the
    worker (docs/performance-history.md, "Latency under load"). worker_exit unfreezes them, so
    they are finalized as the worker exits."""
    from counter.store.guard import data_files_anchor  # in the worker: Django is set up
    from counter.store.visits_file import visits_file_keep

    data_files_anchor()
    worker.visits_file_keeper = visits_file_keep()
    gc.freeze()


def worker_exit(server, worker):
    """A worker that stops brings the visits file up to date with its last visits. gunicorn
    also calls this in the master for a worker that is already gone: nothing to do there.

    Frozen objects are never finalized: unfrozen here, the worker's SQLite connections close
    as it exits, and the last one checkpoints and removes the WAL. Left frozen, a WAL would stay
    beside the database (tests/test_data_files.py, a database that went backwards)."""
    keeper = getattr(worker, "visits_file_keeper", None)
    if keeper is not None and os.getpid() == worker.pid:
        gc.unfreeze()
        keeper.stop()  # no tick of its own while the process exits
        keeper.check()


def child_exit(server, worker):
    """In the master, once a worker is gone: its gauges stop counting in the pod's metrics
    (counter/metrics.py), its counters and histograms stay in the pod's totals."""
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # set by `manage.py serve`
        multiprocess.mark_process_dead(worker.pid)
