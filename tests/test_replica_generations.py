"""The backup's roles (k8s/chart/files/litestream.sh, the chart's backup init container and
sidecar), with real `litestream` processes and a file replica laid out as the chart lays out S3.

The fence against a stale pod: a pod's node is lost while its sidecar has changes it has not
shipped; the pod is restored onto a new volume and counts on; then the old node comes back and
its sidecar ships what it held. A third volume restored after that must hold the recovered pod's
count. With a replica path per volume generation (the chart) it does; with one path per pod (the
chart before generations) the stale sidecar overwrites the recovered pod's replica.

A graceful stop: the sidecar's final sync ships the last visits, and its last line says whether
the replica holds the database's last transaction.
"""

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from support.tools import LITESTREAM_MISSING, ROOT, litestream_binary

LITESTREAM = litestream_binary()
SCRIPT = ROOT / "k8s" / "chart" / "files" / "litestream.sh"

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(LITESTREAM is None, reason=LITESTREAM_MISSING),
]


class Volume:
    """A pod's volume: its database (a table of visits, one row each) and its litestream."""

    def __init__(self, root: Path, name: str, replica: str, settings: str = "") -> None:
        self.data = root / name
        self.data.mkdir()
        self.config = root / f"{name}.yml"
        self.replica = root / "replica"
        # The chart's layout (configmap-litestream.yaml), with a file replica instead of S3.
        self.config.write_text(
            f"{settings}dbs:\n  - path: {self.data}/db.sqlite3\n"
            f"    replica:\n      type: file\n      path: {self.replica}/{replica}\n"
        )
        self.env = {
            **os.environ,
            "PATH": f"{Path(LITESTREAM).parent}:{os.environ['PATH']}",
            "POD_NAME": "app-python-2",
            "LITESTREAM_CONFIG": str(self.config),
            "DATA_DIR": str(self.data),
        }
        self.sidecar: subprocess.Popen | None = None

    def run(self, *args: str) -> str:
        result = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def visit(self, n: int) -> None:
        """n visits, each its own commit (the app commits each one)."""
        with sqlite3.connect(self.data / "db.sqlite3") as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS visit (at REAL)")
            for _ in range(n):
                db.execute("INSERT INTO visit VALUES (?)", (time.time(),))
                db.commit()

    def count(self) -> int:
        with sqlite3.connect(self.data / "db.sqlite3") as db:
            return db.execute("SELECT count(*) FROM visit").fetchone()[0]


def replica_count(volume: Volume, tmp: Path) -> int | None:
    """What a restore of the replica the volume writes to holds now; None: nothing yet."""
    record = volume.data / "replica-generation"
    env = (
        {**volume.env, "REPLICA_GENERATION": "/" + record.read_text().strip()}
        if record.exists()
        else volume.env
    )
    out = tmp / f"probe-{time.monotonic_ns()}.sqlite3"
    command = [
        LITESTREAM,
        "restore",
        "-config",
        volume.config,
        "-o",
        out,
        volume.data / "db.sqlite3",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    if "no matching backup" in result.stderr:
        return None
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(out) as db:
        return db.execute("SELECT count(*) FROM visit").fetchone()[0]


def until_replica_holds(volume: Volume, total: int, tmp: Path) -> None:
    deadline = time.monotonic() + 30
    while replica_count(volume, tmp) != total:
        assert time.monotonic() < deadline, f"the replica never held {total} visits"
        time.sleep(0.2)


def lose_a_node_and_bring_it_back(tmp: Path, *, start, replica: str) -> dict[str, int]:
    """The scenario; `start(volume)` is how a pod's litestream starts on a volume: it restores
    (when it can) and returns the running sidecar."""
    old, new, third = (Volume(tmp, name, replica) for name in ("old", "new", "third"))
    old_sidecar = start(old)
    old.visit(10)
    until_replica_holds(old, 10, tmp)
    old_sidecar.send_signal(signal.SIGSTOP)  # the node is lost: the sidecar stops mid-flight
    old.visit(3)  # counted on the old node, not yet shipped
    new_sidecar = start(new)  # the pod recovered onto another node, a new volume
    restored = new.count()
    with sqlite3.connect(new.data / "db.sqlite3") as db:  # 2 visits in one commit: one LTX file
        db.executemany("INSERT INTO visit VALUES (?)", [(time.time(),)] * 2)
    until_replica_holds(new, restored + 2, tmp)
    old_sidecar.send_signal(signal.SIGCONT)  # the old node is back: its sidecar ships its 3,
    for _ in range(3):  # and its pod counts on until its kubelet stops it: 3 more, one a sync
        time.sleep(1.5)
        old.visit(1)
    until_replica_holds(old, 16, tmp)
    for sidecar in (old_sidecar, new_sidecar):
        sidecar.terminate()
        sidecar.wait(timeout=30)
    start(third).terminate()  # the recovered pod loses its volume in turn
    return {"restored": restored, "recovered": new.count(), "third": third.count()}


@pytest.fixture
def sidecars():
    running: list[subprocess.Popen] = []
    yield running
    for process in running:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()


def test_a_stale_sidecar_cannot_write_into_the_recovered_pods_generation(tmp_path, sidecars):
    def start(volume: Volume) -> subprocess.Popen:
        volume.run("sh", str(SCRIPT), "restore")
        replicate = ["sh", str(SCRIPT), "replicate"]
        sidecar = subprocess.Popen(replicate, env=volume.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        sidecars.append(sidecar)
        return sidecar

    counts = lose_a_node_and_bring_it_back(
        tmp_path, start=start, replica="app-python-2${REPLICA_GENERATION}"
    )
    assert counts == {"restored": 10, "recovered": 12, "third": 12}
    generations = {volume: (tmp_path / volume / "replica-generation").read_text().strip()
                   for volume in ("old", "new", "third")}  # fmt: skip
    assert generations == {"old": "1", "new": "2", "third": "3"}


def test_without_generations_the_stale_sidecar_overwrites_the_recovered_replica(tmp_path, sidecars):
    """The chart's commands before generations: restore if there is no database, replicate."""

    def start(volume: Volume) -> subprocess.Popen:
        volume.run(LITESTREAM, "restore", "-config", str(volume.config), "-if-db-not-exists",
                   "-if-replica-exists", str(volume.data / "db.sqlite3"))  # fmt: skip
        sidecar = subprocess.Popen([LITESTREAM, "replicate", "-config", str(volume.config)],
                                   env=volume.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        sidecars.append(sidecar)
        return sidecar

    counts = lose_a_node_and_bring_it_back(tmp_path, start=start, replica="app-python-2")
    # The third volume gets the stale pod's 16: the recovered pod's 2 visits are gone.
    assert counts == {"restored": 10, "recovered": 12, "third": 16}


def test_a_new_volume_restores_a_replica_of_chart_1_0_0_then_takes_generation_1(tmp_path):
    """Chart 1.0.0 replicated to one path per pod, <path>/<pod>: the config's
    ${REPLICA_GENERATION} empty. A pod that loses its volume after the upgrade, before any
    generation exists, must find that replica, not start from 0."""
    old, new = (
        Volume(tmp_path, name, "app-python-2${REPLICA_GENERATION}") for name in ("old", "new")
    )
    old.visit(7)
    old.run(LITESTREAM, "replicate", "-config", str(old.config), "-once")  # chart 1.0.0's sidecar
    output = new.run("sh", str(SCRIPT), "restore")
    assert "from its replica of chart 1.0.0" in output, output
    assert new.count() == 7
    assert (new.data / "replica-generation").read_text() == "1\n"
    assert replica_count(new, tmp_path) == 7  # generation 1 claimed before the app starts


def stop_after_visits(volume: Volume, log: Path, *, before_stop=lambda: None) -> list[str]:
    """A volume with a database of 1 visit, its sidecar started and through its first sync of
    a visit (from then on it holds the read lock that keeps a closing connection from
    removing the WAL under it, as in a pod, whose sidecar starts before the app), 25 visits
    (each a commit), `before_stop()`, then SIGTERM as the kubelet sends it once the app has
    exited; the sidecar's last log lines."""
    volume.visit(1)
    volume.run("sh", str(SCRIPT), "restore")
    local = volume.data / ".db.sqlite3-litestream" / "ltx" / "0"
    with log.open("w") as output:
        sidecar = subprocess.Popen(["sh", str(SCRIPT), "replicate"], env=volume.env,
                                   stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        try:
            volume.visit(1)
            deadline = time.monotonic() + 10
            while len(list(local.glob("*.ltx"))) < 2:  # the claim's snapshot, then this visit
                assert time.monotonic() < deadline, "the sidecar never synced"
                time.sleep(0.05)
            volume.visit(25)
            before_stop()
            sidecar.terminate()
            sidecar.wait(timeout=30)
        finally:  # the script and its litestream, whatever happened
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sidecar.pid, signal.SIGKILL)
    return log.read_text().strip().splitlines()


# No sync before the stop: only the final one can ship the visits.
NO_SYNC_UNTIL_STOP = "shutdown-sync-timeout: 2s\n"
INTERVAL = "      sync-interval: 1h\n"


def test_a_stopping_sidecar_ships_the_last_visits_and_its_last_line_says_so(tmp_path):
    volume = Volume(tmp_path, "pod", "app-python-2${REPLICA_GENERATION}", NO_SYNC_UNTIL_STOP)
    volume.config.write_text(volume.config.read_text() + INTERVAL)
    lines = stop_after_visits(volume, tmp_path / "sidecar.log")
    final = re.fullmatch(
        r"final sync: the replica holds the database's last transaction, TXID (\w{16})",
        lines[-1],
    )
    assert final, lines[-3:]
    out = tmp_path / "as-of.sqlite3"
    env = {**volume.env, "REPLICA_GENERATION": "/1"}
    volume.env = env
    volume.run(LITESTREAM, "restore", "-config", str(volume.config), "-txid", final.group(1),
               "-o", str(out), str(volume.data / "db.sqlite3"))  # fmt: skip
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT count(*) FROM visit").fetchone()[0] == 27


def test_a_sidecar_that_cannot_ship_at_its_stop_says_what_stays_on_the_volume(tmp_path):
    volume = Volume(tmp_path, "pod", "app-python-2${REPLICA_GENERATION}", NO_SYNC_UNTIL_STOP)
    volume.config.write_text(volume.config.read_text() + INTERVAL)

    def replica_unwritable() -> None:  # a file where the replica's folder was: every write fails
        shutil.rmtree(volume.replica)
        volume.replica.write_text("not a folder\n")

    lines = stop_after_visits(volume, tmp_path / "sidecar.log", before_stop=replica_unwritable)
    assert re.fullmatch(
        r"final sync: the replica's newest transaction is TXID none, the database's last is"
        r" TXID \w{16}: what lies between is on this volume only until the pod's next start"
        r" ships it",
        lines[-1],
    ), lines[-3:]
