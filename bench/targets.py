"""What `make bench` measures: the servers it starts and the targets wrk drives on them, in the
order of each round."""

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.servers import Server


class NaiveCounter(Server):
    """bench/naive_app.py under the site's gunicorn settings (bench/naive.gunicorn.conf.py)."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "gunicorn", "--config", "bench/naive.gunicorn.conf.py",
                   "bench.naive_app:application"]  # fmt: skip
        # Every path counts a visit: a 200 on /healthz only says that it answers.
        super().__init__(data_dir, log_path, env, command=command, ready_path="/healthz")

    def start(self) -> "NaiveCounter":
        self.data_dir.mkdir(exist_ok=True)  # `manage.py serve` makes its own; this app does not
        return super().start()

    def visits(self) -> int:
        """The count in its file, which may be mid-write: read until it parses (0 if never)."""
        for _ in range(100):
            with contextlib.suppress(ValueError, FileNotFoundError):
                return int((self.data_dir / "visits").read_text())
            time.sleep(0.01)
        return 0


class Granian(Server):
    """The same app (visits_site.wsgi, once `manage.py prepare` has run, as `serve` does) on
    granian's WSGI server with its access log on, as ours has: the server a user would pick
    instead, with the same worker count (WEB_CONCURRENCY) and granian's defaults otherwise.
    No FileKeeper runs there (gunicorn.conf.py starts it), so the visits file is left as it is."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str]) -> None:
        # As `serve` does: the server opens only the database that `prepare` made.
        serve = (
            '"$0" manage.py prepare && VISITS_DATABASE_MUST_EXIST=1 exec "$0" -m granian'
            ' --interface wsgi --access-log "$1"'
        )
        command = ["sh", "-c", serve, sys.executable, "visits_site.wsgi:application"]
        super().__init__(data_dir, log_path, env, command=command)
        self.env |= {
            "GRANIAN_HOST": "127.0.0.1",
            "GRANIAN_PORT": str(self.port),
            "GRANIAN_WORKERS": self.env["WEB_CONCURRENCY"],
        }


@dataclass(frozen=True)
class Site:
    """A server started in a fresh data directory named `name`, which is also its POD_NAME."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    kind: type[Server] = Server  # `manage.py serve`, as the image starts it
    replicated: bool = False  # Litestream replicates its database, as the chart's sidecar does


@dataclass(frozen=True)
class Target:
    """One URL that wrk loads in every round."""

    name: str  # how the code refers to it
    label: str  # how the results show it: the key of its figures in the JSON, table and chart
    site: Site
    path: str
    counts: bool = True  # every request counts a visit: lost visits are measured
    # Each request on a new connection, as a browser's first visit or a probe: wrk sends
    # `Connection: close`. Otherwise wrk's connections are kept alive.
    new_connections: bool = False


# Also where the hostile, login, memory and restart measurements run.
SITE = Site("site")
GRANIAN = Site("granian", kind=Granian)
TARGETS = [
    Target("counting", "GET / (counting)", SITE, "/"),
    Target(
        "replicated",
        "GET / (counting, Litestream replicating)",
        Site("site-replicated", replicated=True),
        "/",
    ),
    Target("no_database", "GET /healthz (no database)", SITE, "/healthz", counts=False),
    Target(
        "counting_new", "GET / (counting), a new connection each", SITE, "/", new_connections=True
    ),
    Target(
        "no_database_new",
        "GET /healthz, a new connection each",
        SITE,
        "/healthz",
        counts=False,
        new_connections=True,
    ),
    # What a Prometheus scrape costs, with the series the rounds before it left.
    Target("scrape", "GET /metrics (a scrape)", SITE, "/metrics", counts=False),
    Target("naive", "GET / naive file counter", Site("naive", kind=NaiveCounter), "/"),
    # The reference: the same app on granian.
    Target("granian", "GET / (counting), granian", GRANIAN, "/"),
    Target("granian_no_database", "GET /healthz, granian", GRANIAN, "/healthz", counts=False),
    Target(
        "full",
        "GET / synchronous=FULL",
        Site("site-full", env={"VISITS_SQLITE_SYNCHRONOUS": "FULL"}),
        "/",
    ),
]
