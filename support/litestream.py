"""Litestream beside a server, for tests/test_replication.py and `make bench`: `litestream
replicate` (the binary support.tools.litestream_binary() finds) with a file replica, and the
count that a `litestream restore` of that replica holds."""

import contextlib
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

# Litestream's debug lines for a sync that found the WAL changed behind its back (restarted,
# truncated or overwritten by another connection's checkpoint) and had to snapshot the whole
# database: the sign that the app's checkpoints fight the replicator.
RESNAPSHOT = re.compile(r"reason=\"?(wal |full or restart|last page)")


class Replicator:
    """One `litestream replicate` process for `database`, replicating to a file replica."""

    def __init__(
        self,
        binary: Path,
        database: Path,
        replica: Path,
        log_path: Path,
        *,
        interval: str,
        metrics: str = "",
    ) -> None:
        self.binary = binary
        self.database = database
        self.log_path = log_path
        self.config = log_path.with_suffix(".yml")
        # monitor-interval: how often the WAL is copied into LTX files beside the database;
        # sync-interval: how often those are shipped to the replica. Both default to 1s.
        # metrics: the address of Litestream's metrics (and Go's profiler), as the chart's
        # 127.0.0.1:9091.
        self.config.write_text(
            "logging:\n  level: debug\n"
            + (f"addr: {metrics}\n" if metrics else "")
            + f"dbs:\n  - path: {database}\n    monitor-interval: {interval}\n"
            f"    replica:\n      type: file\n      path: {replica}\n"
            f"      sync-interval: {interval}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> "Replicator":
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "replicate", "-config", self.config],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def restored_total(self, output: Path) -> int | None:
        """Restore the replica into `output` (a new file) and read its total; None while the
        replica has nothing to restore yet. The restored database must be intact."""
        result = subprocess.run(
            [self.binary, "restore", "-config", self.config, "-o", output, self.database],
            capture_output=True,
            text=True,
            timeout=60,
        )
        try:
            if result.returncode != 0:
                return None
            with contextlib.closing(sqlite3.connect(output)) as restored:
                check = restored.execute("PRAGMA integrity_check").fetchall()
                assert check == [("ok",)], f"restored database {output}: {check}"
                return restored.execute("SELECT total FROM counter_visitcounter").fetchone()[0]
        finally:
            for leftover in output.parent.glob(output.name + "*"):
                leftover.unlink()

    def resnapshots(self) -> int:
        """How many times Litestream found the WAL changed behind its back (see RESNAPSHOT)."""
        return len(RESNAPSHOT.findall(self.log()))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
