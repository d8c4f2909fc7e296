"""The visits site as it runs in production: `manage.py serve` (gunicorn) on 127.0.0.1."""

import contextlib
import fcntl
import http.client
import os
import re
import signal
import sqlite3
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie

import pytest
from django.contrib.auth.hashers import make_password

from support.clients import http_request, wait_for_text
from support.servers import cpu_limit_missing, cpu_limited, open_keepalive_connections
from visits_site.worker import cores_available

pytestmark = pytest.mark.server


class Load:
    """`threads` clients sending GET / in a loop, `per_thread` times each at most."""

    def __init__(self, port: int, *, threads: int, per_thread: int) -> None:
        self.port = port
        self.per_thread = per_thread
        self.statuses: list[int] = []
        self.totals: list[int] = []  # the total each counted visit was shown
        self.failures: list[str] = []  # connection-level: refused, reset, answer cut short
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        for _ in range(self.per_thread):
            if self._stop.is_set():
                return
            try:
                status, body, _ = http_request(self.port, "/")
            except (OSError, http.client.HTTPException) as error:  # refused, reset, cut short
                with self._lock:
                    self.failures.append(type(error).__name__)
                continue
            total = re.search(rb'id="total">(\d+)<', body)
            with self._lock:
                self.statuses.append(status)
                if total:
                    self.totals.append(int(total[1]))

    def start(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def wait_for(self, responses: int) -> None:
        while len(self.statuses) < responses and any(t.is_alive() for t in self._threads):
            self._threads[0].join(0.01)

    def join(self, stop: bool = False) -> "Load":
        if stop:
            self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return self

    @property
    def ok(self) -> int:
        return self.statuses.count(200)


class FileWatcher:
    """Reads the visits file in a tight loop, the way `cat` would, and keeps what it saw."""

    def __init__(self, path) -> None:
        self.path = path
        self.values: list[int] = []
        self.bad: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._read()
        self._read()  # once more after the load: the last value the file settled on

    def _read(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            self.bad.append("missing")
            return
        if re.fullmatch(r"\d+\n", text):
            self.values.append(int(text))
        else:
            self.bad.append(text)

    def __enter__(self) -> "FileWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_concurrent_visits_are_all_counted_and_the_file_keeps_up(make_server):
    server = make_server(WEB_CONCURRENCY="3").start().wait_ready()
    with FileWatcher(server.data_dir / "visits") as watcher:
        load = Load(server.port, threads=16, per_thread=100).start().join()
        server.wait_file(load.ok)
    assert load.statuses == [200] * 1600, set(load.statuses)
    assert load.failures == []
    # Visits waiting together are counted together (counter/store/visits.py): each still gets
    # its own number.
    assert sorted(load.totals) == list(range(1, 1601))
    assert server.visits() == 1600
    assert server.file_count() == "1600\n"
    assert watcher.bad == []
    assert len(watcher.values) > 100
    assert watcher.values == sorted(watcher.values), "the file went backwards"
    assert watcher.values[-1] == 1600


def test_the_last_visits_reach_the_file_without_further_visits(make_server):
    server = make_server(WEB_CONCURRENCY="1").start().wait_ready()
    for _ in range(5):
        assert server.get("/")[0] == 200
    server.wait_file(5)  # written by the worker's keeper, with no visit after


def test_a_worker_killed_right_after_visits_leaves_the_file_exact(make_server):
    server = make_server(WEB_CONCURRENCY="1").start().wait_ready()
    (worker,) = server.worker_pids()
    for _ in range(3):
        assert server.get("/")[0] == 200
    os.kill(worker, signal.SIGKILL)  # before its keeper's next round
    server.wait_ready()  # a new worker answers; its keeper brings the file up to date
    server.wait_file(3)
    assert server.visits() == 3


@pytest.mark.parametrize("damage", ["deleted", "garbage", "empty"])
def test_an_idle_server_rebuilds_a_damaged_visits_file(make_server, damage):
    server = make_server().start().wait_ready()
    for _ in range(4):
        server.get("/")
    server.wait_file(4)
    path = server.data_dir / "visits"
    if damage == "deleted":
        path.unlink()
    else:
        path.write_text("garbage\n" if damage == "garbage" else "")
    server.wait_file(4)  # within a second, with no request at all


def test_a_visits_path_that_cannot_be_written_makes_the_pod_unready_until_fixed(make_server):
    server = make_server().start().wait_ready()
    for _ in range(2):
        server.get("/")
    server.wait_file(2)
    path = server.data_dir / "visits"
    for _ in range(20):  # an operator's mistake: a directory where the file was
        path.unlink()
        with contextlib.suppress(FileExistsError):  # unless a keeper rewrote it in between
            path.mkdir()
            break
    complaint = f"cannot update the visits file {path}: Is a directory"
    # The probe writes nothing: it says what the workers' keepers found at their last tick.
    unready = f"not ready: {complaint}\n"
    wait_for_text(lambda: server.get("/readyz")[1].decode(), unready, "/readyz", timeout=2)
    assert server.get("/")[0] == 200  # visits still count, in the database
    assert server.get("/healthz")[0] == 200  # unready, not dead: no restart
    wait_for_text(lambda: str(complaint in server.log()), "True", "the log", timeout=2)
    path.rmdir()
    server.wait_file(3)
    wait_for_text(lambda: server.get("/readyz")[1].decode(), "ready\n", "/readyz", timeout=2)
    assert server.visits() == 3
    assert server.log().count(complaint) <= 2  # once per worker's keeper, not every 0.25 s


def test_probes_reads_and_head_do_not_count(make_server):
    server = make_server().start().wait_ready()
    for path in [
        "/healthz",
        "/readyz",
        "/visits",
        "/visits?format=json",
        "/metrics",
        "/cluster",
    ] * 5:
        assert server.get(path)[0] == 200
    for path in ["/admin/", "/admin/login/", "/static/admin/css/base.css", "/nope", "/cluster/"]:
        server.get(path)
    status, body, _ = server.get("/", method="HEAD")
    assert (status, body) == (200, b"")
    assert server.get("/", method="POST")[0] == 403  # CSRF protection answers before the view
    assert server.visits() == 0
    assert server.file_count() == "0\n"
    assert server.get("/")[0] == 200
    assert server.visits() == 1


def test_bad_input_gets_clear_errors_never_500(make_server):
    server = make_server().start().wait_ready()
    cases = [
        ("/", {"Host": "evil.example"}, 400),
        ("/visits?format=yaml", {}, 400),
        ("/visits?%zz=%%%&format", {}, 400),
        ("/visits", {"Accept": "\x7f;;q=zz,,"}, 400),  # gunicorn refuses the control character
        ("/visits", {"Accept": ";;q=zz,,/"}, 200),
        ("/visits", {"Accept": "a" * 6000}, 200),
        ("/nope", {}, 404),
        ("/admin/login/?next=%00", {}, 200),
    ]
    for path, headers, expected in cases:
        status, body, _ = server.get(path, headers=headers)
        assert status == expected, (path, headers, status, body[:200])
        assert b"Traceback" not in body
    assert server.get("/healthz", method="DELETE")[0] == 403  # CSRF answers first
    assert server.visits() == 0


def test_admin_css_is_served_with_debug_off(make_server):
    server = make_server().start().wait_ready()
    status, body, _ = server.get("/admin/login/")
    css = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', body)
    assert status == 200 and css, body[:500]
    status, body, response = server.get(css.group(1).decode())
    assert status == 200
    assert b"body" in body
    assert "immutable" in response.getheader("Cache-Control")


def test_count_survives_restart_and_the_file_is_rebuilt_from_the_database(make_server):
    server = make_server().start().wait_ready()
    for _ in range(5):
        server.get("/")
    assert server.stop() == 0
    (server.data_dir / "visits").write_text("garbage, not a number")
    server.start().wait_ready()
    assert server.file_count() == "5\n"
    assert server.visits() == 5
    with contextlib.closing(sqlite3.connect(server.data_dir / "db.sqlite3")) as db:
        assert db.execute("PRAGMA page_size").fetchone() == (1024,)  # set for a new database


def test_a_legacy_visits_file_is_adopted_once(make_server, tmp_path):
    data_dir = tmp_path / "app-python-0"
    data_dir.mkdir()
    (data_dir / "visits").write_text("41\n")
    server = make_server(data_dir=data_dir).start().wait_ready()
    assert server.visits() == 41
    server.get("/")
    assert server.visits() == 42
    assert server.stop() == 0
    # Not adopted again: the database wins. (A number above the database's is refused instead:
    # tests/test_data_files.py.)
    (data_dir / "visits").write_text("7\n")
    server.start().wait_ready()
    assert server.visits() == 42
    assert server.file_count() == "42\n"


def test_a_garbage_legacy_file_stops_the_first_start(make_server, tmp_path):
    data_dir = tmp_path / "app-python-0"
    data_dir.mkdir()
    (data_dir / "visits").write_text("twelve\n")
    server = make_server(data_dir=data_dir)
    assert server.run_to_exit() == 1
    assert "holds 'twelve\\n', not a count of visits" in server.log()
    assert (data_dir / "visits").read_text() == "twelve\n"


def test_a_corrupt_database_is_refused_not_replaced(make_server):
    server = make_server().start().wait_ready()
    server.get("/")
    assert server.stop() == 0
    database = server.data_dir / "db.sqlite3"
    database.write_bytes(b"\x00garbage" * 4096)
    assert server.run_to_exit() == 1
    assert "is damaged (file is not a database). Refusing to start" in server.log()
    assert database.read_bytes() == b"\x00garbage" * 4096


def test_missing_secret_key_refuses_to_start(make_server):
    server = make_server(DJANGO_SECRET_KEY="")
    assert server.run_to_exit() == 1
    assert "DJANGO_SECRET_KEY is not set" in server.log()


def test_read_only_data_dir_fails_fast_with_a_clear_message(make_server, tmpfs):
    server = make_server(data_dir=tmpfs("1m", read_only=True))
    assert server.run_to_exit() == 1
    assert "is not writable by uid" in server.log()
    assert "Read-only file system" in server.log()


def test_sigkill_mid_load_loses_no_acknowledged_visit(make_server):
    server = make_server(WEB_CONCURRENCY="3").start().wait_ready()
    load = Load(server.port, threads=8, per_thread=400).start()
    load.wait_for(600)
    server.kill()
    load.join(stop=True)
    acknowledged, attempted = load.ok, load.ok + len(load.failures)
    assert set(load.statuses) == {200}
    with contextlib.closing(sqlite3.connect(server.data_dir / "db.sqlite3")) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    server.start().wait_ready()
    counted = server.visits()
    # Visits in flight at the kill may be counted without an answer: never fewer than answered.
    assert acknowledged <= counted <= attempted
    assert server.file_count() == f"{counted}\n"


def test_without_web_concurrency_there_is_a_worker_per_core_of_the_cpu_limit(make_server):
    """The image's default: one worker per core the server may use, the CPU limit's when its
    cgroup has one (a pod's `resources.limits.cpu`), else the machine's."""
    if reason := cpu_limit_missing():
        pytest.skip(reason)
    unlimited = make_server("unlimited")
    del unlimited.env["WEB_CONCURRENCY"]  # the tests' servers set 2
    assert len(unlimited.start().wait_ready().worker_pids()) == cores_available()
    with cpu_limited("test-one-core", 1) as prefix:
        server = make_server("one-core")
        del server.env["WEB_CONCURRENCY"]
        server.command = [*prefix, *server.command]
        assert len(server.start().wait_ready().worker_pids()) == 1
        server.stop()


def database_connections(server, pid: int) -> int:
    """The SQLite connections process `pid` holds open on the server's database."""
    database = os.path.realpath(server.data_dir / "db.sqlite3")
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            held += os.readlink(f"/proc/{pid}/fd/{fd}") == database
    return held


def wal_commits(server) -> tuple[bytes, int]:
    """The WAL's salt and the transactions committed in it since SQLite last started it over
    (sqlite.org/fileformat2.html#walformat: a frame that ends a transaction records the
    database's size, the others 0; frames with another salt are left from before)."""
    wal = (server.data_dir / "db.sqlite3-wal").read_bytes()
    page_size = int.from_bytes(wal[8:12], "big")
    salt = wal[16:24]
    commits = 0
    for start in range(32, len(wal) - 24, 24 + page_size):
        if wal[start + 8 : start + 16] == salt:
            commits += wal[start + 4 : start + 8] != bytes(4)
    return salt, commits


def test_a_worker_counts_on_one_connection_and_a_busy_turn_in_one_statement(make_server):
    """Django gives each greenlet a connection of its own: 32 clients' visits kept 34 open
    in the worker, and 32 statements counted them. The counting shares one per worker
    (counter/store/visits.py), and the visits served in one turn of the event loop are counted
    together."""
    server = make_server(WEB_CONCURRENCY="1").start().wait_ready()
    (worker,) = server.worker_pids()
    assert server.get("/")[0] == 200
    salt, before = wal_commits(server)
    connections = open_keepalive_connections(server, 32, path="/")
    held = database_connections(server, worker)
    again, after = wal_commits(server)
    for connection in connections:
        connection.close()
    assert server.visits() == 33
    assert held <= 3, held  # the anchor (counter/store/guard.py), the counting, a probe's
    assert again == salt, "the WAL started over: checkpointed meanwhile"
    assert after - before <= 8, after - before


def test_sigterm_answers_in_flight_requests_and_exits_0(make_server):
    server = make_server(WEB_CONCURRENCY="3").start().wait_ready()
    load = Load(server.port, threads=8, per_thread=400).start()
    load.wait_for(300)
    assert server.stop(signal.SIGTERM) == 0
    load.join(stop=True)
    assert set(load.statuses) == {200}
    server.start().wait_ready()
    assert server.visits() == load.ok


def test_locked_too_long_is_a_503_and_the_site_recovers(make_server):
    server = make_server(WEB_CONCURRENCY="1").start().wait_ready()  # one event loop to stall
    server.get("/")
    with contextlib.closing(sqlite3.connect(server.data_dir / "db.sqlite3")) as db:
        db.execute("BEGIN IMMEDIATE")  # another writer holding the lock past the 5 s wait
        visit: list = []
        waiting = threading.Thread(target=lambda: visit.append(server.get("/")))
        waiting.start()
        # The visit waits without stopping its worker: probes are answered meanwhile.
        probes = [http_request(server.port, "/healthz", timeout=2)[0] for _ in range(10)]
        waiting.join()
        db.rollback()
    assert probes == [200] * 10
    status, body, _ = visit[0]
    assert status == 503
    assert body == b"Service unavailable: the visit database cannot be used right now.\n"
    assert "database is locked" in server.log()
    assert server.get("/")[0] == 200
    assert server.visits() == 2
    server.wait_file(2)


def test_a_visit_waits_for_the_writer_lock_off_the_event_loop(make_server):
    """Another process holds the pod's writer lock (`.count.lock`): the visit waits for it in a
    thread of gevent's pool (counter/store/locks.py), probes are answered meanwhile, and the
    visit is counted as soon as the lock is released. Held past the 5 s wait, the visit fails and
    the lock the thread takes later is released, not kept by a worker with nobody to release
    it."""
    server = make_server(WEB_CONCURRENCY="1").start().wait_ready()  # one event loop to stall
    server.get("/")
    lock_path = server.data_dir / ".count.lock"
    with open(lock_path, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        visit: list = []
        waiting = threading.Thread(target=lambda: visit.append(server.get("/")))
        waiting.start()
        probes = [http_request(server.port, "/healthz", timeout=2)[0] for _ in range(5)]
        assert not visit  # still waiting for the lock
        fcntl.flock(holder, fcntl.LOCK_UN)
        waiting.join(10)
    assert probes == [200] * 5
    assert visit[0][0] == 200
    assert server.visits() == 2

    with open(lock_path, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        waiting = threading.Thread(target=lambda: visit.append(server.get("/")))
        waiting.start()
        probes = [http_request(server.port, "/healthz", timeout=2)[0] for _ in range(10)]
        waiting.join(15)
        assert visit[1][0] != 200
        fcntl.flock(holder, fcntl.LOCK_UN)
    assert probes == [200] * 10
    assert ".count.lock still held after 5.0 s" in server.log()
    with open(lock_path, "a") as other:  # the worker's thread took the lock, then let it go
        deadline = time.monotonic() + 5
        while not _flock_free(other):
            assert time.monotonic() < deadline, "the worker kept the writer lock"
            time.sleep(0.01)
    assert server.get("/")[0] == 200
    assert server.visits() == 3


def _flock_free(file) -> bool:
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(file, fcntl.LOCK_UN)
    return True


def test_disk_full_is_a_503_and_the_site_recovers(make_server, tmpfs):
    server = make_server(data_dir=tmpfs("8m")).start().wait_ready()
    server.get("/")
    database = server.data_dir / "db.sqlite3"
    filler = server.data_dir / "filler"
    # A reader holding a snapshot keeps SQLite from reusing the WAL, so every visit needs new
    # space; then fill the disk.
    with contextlib.closing(sqlite3.connect(database)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT total FROM counter_visitcounter").fetchall()
        with contextlib.suppress(OSError), filler.open("wb") as fill:
            while True:
                fill.write(b"\0" * 65536)
                fill.flush()
        statuses = [server.get("/")[0] for _ in range(200)]
        reader.rollback()
    assert 503 in statuses
    assert set(statuses) <= {200, 503}
    filler.unlink()
    assert server.get("/")[0] == 200
    expected = 1 + statuses.count(200) + 1
    assert server.visits() == expected
    server.wait_file(expected)
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def login(port: int) -> dict[str, str]:
    """Log in through the admin's form, as a browser does; return the cookies it ends with."""
    _, page, response = http_request(port, "/admin/login/")
    cookies = {k: v.value for k, v in SimpleCookie(response.getheader("Set-Cookie")).items()}
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    form = {"username": "admin", "password": "s3cret-pass", "csrfmiddlewaretoken": token}
    status, _, response = http_request(
        port,
        "/admin/login/?next=/admin/",
        method="POST",
        body=urllib.parse.urlencode(form).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookies['csrftoken']}",
            "Referer": f"http://127.0.0.1:{port}/admin/login/",
        },
    )
    assert status == 302, "login failed"
    for header in response.headers.get_all("Set-Cookie"):
        cookies.update({k: v.value for k, v in SimpleCookie(header).items()})
    return cookies


def admin_page(port: int, cookies: dict[str, str]) -> tuple[int, bytes]:
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    status, body, _ = http_request(port, "/admin/", headers={"Cookie": cookie})
    return status, body


def test_admin_stays_logged_in_on_another_process_with_the_same_hash(make_server):
    shared = {"VISITS_ADMIN_PASSWORD_HASH": make_password("s3cret-pass")}
    pod0 = make_server("app-python-0", **shared).start()
    pod1 = make_server("app-python-1", **shared).start()
    pod0.wait_ready(), pod1.wait_ready()
    cookies = login(pod0.port)
    status, body = admin_page(pod1.port, cookies)
    assert status == 200
    assert b"Site administration" in body
    assert b"pod app-python-1" in body


def test_a_plain_password_gives_sessions_only_one_process_accepts(make_server):
    pod0 = make_server("app-python-0", VISITS_ADMIN_PASSWORD="s3cret-pass").start()
    pod1 = make_server("app-python-1", VISITS_ADMIN_PASSWORD="s3cret-pass").start()
    pod0.wait_ready(), pod1.wait_ready()
    cookies = login(pod0.port)
    assert admin_page(pod0.port, cookies)[0] == 200
    assert admin_page(pod1.port, cookies)[0] == 302  # each pod salted its own hash
