"""The chart's backup verification (backup.verify) run here as its CronJob runs it: its restore
script, taken from the chart's render, restores real Litestream replicas of two real servers,
then `manage.py verify_replicas` checks them against the servers' live counts."""

import os
import subprocess
import sys
import time

import pytest
import yaml

from support.clients import http_request
from support.litestream import Replicator
from support.manifests import CHART, helm, parse
from support.tools import LITESTREAM_MISSING, ROOT, helm_binary, litestream_binary

LITESTREAM = litestream_binary()

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(LITESTREAM is None, reason=LITESTREAM_MISSING),
    pytest.mark.skipif(helm_binary() is None, reason="helm is not installed: `make helm`"),
]

PODS = ["app-python-0", "app-python-1"]


def restore_script(tmp_path) -> str:
    """The CronJob's restore step, with this machine's paths for the pod's: the configuration
    (the sidecar's, with a file replica per pod here) and the scratch space."""
    objs = parse(helm("template", "app-python", str(CHART), "--set", f"replicaCount={len(PODS)}",
                      "--set", "backup.enabled=true", "--set", "backup.s3.bucket=backups",
                      "--set", "backup.credentials.secretName=s3",
                      "--set", "backup.verify.enabled=true").stdout)  # fmt: skip
    pod = objs[("CronJob", "app-python-backup-verify")]["spec"]["jobTemplate"]["spec"]["template"]
    config = tmp_path / "litestream.yml"
    replicas = str(tmp_path / "replicas" / "${POD_NAME}${REPLICA_GENERATION}")
    config.write_text(yaml.safe_dump({"dbs": [{
        "path": "/app/data/db.sqlite3", "replica": {"type": "file", "path": replicas},
    }]}))  # fmt: skip
    script = pod["spec"]["initContainers"][0]["args"][0]
    script = script.replace("/etc/litestream/litestream.sh", str(CHART / "files" / "litestream.sh"))
    return f"export LITESTREAM_CONFIG={config}; " + script.replace(
        "/scratch", str(tmp_path / "scratch")
    )


def verification(tmp_path, script: str, server) -> subprocess.CompletedProcess:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    for old in scratch.iterdir():
        old.unlink()
    path = f"{os.path.dirname(LITESTREAM)}:{os.environ['PATH']}"
    subprocess.run(["sh", "-c", script], check=True, env={**os.environ, "PATH": path})
    return subprocess.run(
        [sys.executable, "manage.py", "verify_replicas", scratch, "--pods", ",".join(PODS),
         "--state", tmp_path / "state.json"],
        cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_cronjobs_restore_and_check_pass_then_fail_on_a_lost_replica(make_server, tmp_path):
    servers = [make_server(pod) for pod in PODS]
    peers = ",".join(server.url("") for server in servers)
    replicas = []
    for server, visits in zip(servers, (5, 3), strict=True):
        server.env["VISITS_PEERS"] = peers
        server.start().wait_ready()
        replica = Replicator(LITESTREAM, server.data_dir / "db.sqlite3",
                             tmp_path / "replicas" / server.data_dir.name / "1",
                             tmp_path / f"{server.data_dir.name}-litestream.log",
                             interval="100ms").start()  # fmt: skip
        replicas.append(replica)
        for _ in range(visits):
            assert http_request(server.port, "/")[0] == 200
    try:
        for replica, visits in zip(replicas, (5, 3), strict=True):
            deadline = time.monotonic() + 30
            while replica.restored_total(tmp_path / "probe.sqlite3") != visits:
                assert time.monotonic() < deadline, replica.log()[-2000:]
        script = restore_script(tmp_path)
        passed = verification(tmp_path, script, servers[0])
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert "app-python-0: the replica restores, intact, 5 visits; the pod counts 5" in (
            passed.stdout
        )
        assert "app-python-1: the replica restores, intact, 3 visits; the pod counts 3" in (
            passed.stdout
        )

        replicas[1].stop()
        subprocess.run(["rm", "-r", tmp_path / "replicas" / PODS[1]], check=True)
        failed = verification(tmp_path, script, servers[0])
    finally:
        for replica in replicas:
            replica.stop()
    assert failed.returncode != 0
    assert f"{PODS[1]}: its replica did not restore" in failed.stderr, failed.stderr
    assert f"{PODS[0]}: the replica restores, intact, 5 visits" in failed.stdout
