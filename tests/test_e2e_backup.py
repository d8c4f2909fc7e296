"""Backup with Litestream on the project's real Kubernetes (`make e2e`), in its own namespace.

The chart with backup on, one pod, replicating to an in-cluster S3 (moto, e2e/moto/). The pod
loses its volume twice: once gracefully (pod and claim deleted after the visits stopped: the
restored count must be exact), once as a lost node would (every process of the pod frozen at
once while a client counts, then the pod and its claim deleted without a shutdown): the visits
acknowledged after the replica's last sync are lost, and the test says how many. Each step
saves its real output under docs/transcripts/e2e-backup-*.txt, which docs/kubernetes.md quotes.
"""

import datetime
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from support.cluster import (
    BACKUP_VALUES,
    Session,
    e2e_missing,
    namespace_create,
    pod_processes,
    replica,
    start_s3,
    until,
)

pytestmark = pytest.mark.e2e

if reason := e2e_missing():
    pytest.skip(reason, allow_module_level=True)

NAMESPACE = "app-python-backup"
POD = "app-python-0"
CLAIM = f"data-{POD}"
INSTALL = (
    "upgrade", "--install", "app-python", "k8s/chart", "-n", NAMESPACE,
    "-f", "k8s/chart/values-local.yaml", "--set", "replicaCount=1", *BACKUP_VALUES,
)  # fmt: skip

# A steady client: one visit to the pod every 0.1 s; each acknowledged one printed with the time
# and the total it answered. It stops at the first visit that fails (the pod is gone).
CLIENT = """
import re, time, urllib.request
while True:
    started = time.time()
    try:
        page = urllib.request.urlopen("http://app-python-0.app-python-headless:8000/", timeout=2)
        total = re.search(r'id="total">(\\d+)<', page.read().decode()).group(1)
    except Exception as error:
        print("failed", time.time(), type(error).__name__, flush=True)
        break
    print(time.time(), total, flush=True)
    time.sleep(max(0, 0.1 - (time.time() - started)))
"""


TOTAL = re.compile(r'id="total">(\d+)<')


def session() -> Session:
    """kubectl in the backup test's namespace, and helm; transcripts e2e-backup-NAME.txt."""
    return Session(NAMESPACE, prefix="backup-")


def get(*args: str) -> dict:
    return session().get(*args)


def ready(name: str) -> bool:
    return session().is_ready(name)


def count(t: Session) -> int:
    """The pod's /visits, and its visits file once it has caught up."""
    return t.visits(POD, container="app")


def replaced(uid: str, volume: str) -> bool:
    """A new pod, ready, on a new claim bound to another volume."""
    if not ready(POD) or get("pod", POD)["metadata"]["uid"] == uid:
        return False
    claim = get("pvc", CLAIM)
    return claim["status"].get("phase") == "Bound" and claim["spec"]["volumeName"] != volume


def lose_pod_and_volume(t: Session, *, graceful: bool) -> tuple[str, str]:
    """Delete the claim, then the pod (which holds the claim until it is gone)."""
    uid = get("pod", POD)["metadata"]["uid"]
    volume = get("pvc", CLAIM)["spec"]["volumeName"]
    t.kubectl("delete", "pvc", CLAIM, "--wait=false")
    if graceful:
        t.kubectl("delete", "pod", POD)
    else:
        t.kubectl("delete", "pod", POD, "--grace-period=0", "--force")
    return uid, volume


@pytest.fixture(scope="module")
def installed() -> Session:
    t = session()
    namespace_create(t, NAMESPACE)
    start_s3(t)
    t.helm(*INSTALL)
    until(f"{POD} ready", lambda: ready(POD))
    return t


def test_install_restores_nothing_then_replicates(installed):
    t = installed
    t.kubectl("get", "pods,pvc")
    t.kubectl("get", "pod", POD, "-o",
              "jsonpath={range .spec.initContainers[*]}{.name} restartPolicy={.restartPolicy}"
              "{\"\\n\"}{end}{range .spec.containers[*]}{.name}{\"\\n\"}{end}")  # fmt: skip
    restore_log = t.kubectl("logs", POD, "-c", "litestream-restore")
    t.note("1200 visits, enough for the app's own WAL autocheckpoint (1000 pages) to run")
    visit = "import urllib.request as u\nfor _ in range(1200): u.urlopen('http://localhost:8000/')"
    t.kubectl("exec", POD, "-c", "app", "--", "python", "-c", visit)
    total = count(t)
    until("the replica", lambda: replica(session(), POD, record=False))
    sidecar_log = t.kubectl("logs", POD, "-c", "litestream")
    replica(t, POD)
    t.save("install")
    assert "no replica of app-python-0 yet" in restore_log
    assert total == 1200
    assert "error" not in sidecar_log.lower(), sidecar_log


def test_a_graceful_loss_of_pod_and_volume_restores_the_exact_count(installed):
    t = session()
    before = count(t)
    t.note(f"{POD} and its claim deleted after the visits stopped: the sidecar's final sync runs")
    uid, volume = lose_pod_and_volume(t, graceful=True)
    until(f"a new {POD} on a new volume", lambda: replaced(uid, volume))
    t.kubectl("get", f"pod/{POD}", f"pvc/{CLAIM}", "-o", "wide")
    t.note(f"the old claim was bound to {volume}; the new one to "
           f"{get('pvc', CLAIM)['spec']['volumeName']}")  # fmt: skip
    restore_exit(t)
    after = count(t)
    t.save("restore")
    assert before == 1200
    assert after == before


def restore_exit(t: Session) -> None:
    """How the restore init container ended (it logs nothing when it restores)."""
    init = ".status.initContainerStatuses[0]"
    columns = f"INIT:{init}.name,REASON:{init}.state.terminated.reason"
    t.kubectl(
        "get", "pod", POD, "-o", f"custom-columns={columns},EXIT:{init}.state.terminated.exitCode"
    )


def level0(objects: list[tuple[float, str]]) -> dict[tuple[int, int], float]:
    """The replica's level-0 files (one per sync): (volume generation, TXID) -> last modified.
    Keys: <path>/<pod>/<generation>/<level>/<min TXID>-<max TXID>.ltx"""
    return {
        (int(key.split("/")[-3]), int(key.rsplit("-", 1)[1].removesuffix(".ltx"), 16)): at
        for at, key in objects
        if key.split("/")[-2] == "0000"
    }


def hard_loss(t: Session, n: int) -> dict:
    """One lost node while a client counts: what was acknowledged, what came back."""
    before = count(session())
    client = subprocess.Popen(
        ["kubectl", "-n", NAMESPACE, "exec", "deploy/s3", "--", "python", "-c", CLIENT],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(client.stdout), daemon=True)
    reader.start()
    until("50 acknowledged visits", lambda: len(lines) >= 50 + 10 * n, timeout=120)
    uid = get("pod", POD)["metadata"]["uid"]
    processes = pod_processes(uid)
    for pid in processes:  # the node stops: no process of the pod runs another instruction
        os.kill(pid, signal.SIGSTOP)
    frozen_at = time.time()
    acknowledged = sum(1 for line in list(lines) if not line.startswith("failed"))
    at_freeze = level0(replica(session(), POD, record=False))
    names = ", ".join(sorted(set(processes.values())))
    t.note(f"round {n}: after {acknowledged} acknowledged visits, every process of {POD} stopped"
           f" at once (SIGSTOP from the node: {names}); the replica's last sync then:"
           " generation {0}, TXID {1:#x}".format(*max(at_freeze)))  # fmt: skip
    assert "litestream" in processes.values() and len(processes) >= 3, processes
    uid, volume = lose_pod_and_volume(t, graceful=False)
    until("the client to stop", lambda: client.poll() is not None, timeout=60)
    reader.join(timeout=10)
    until("the frozen processes to be gone", lambda: not set(processes) & set(pod_processes(uid)))
    until(f"a new {POD} on a new volume", lambda: replaced(uid, volume))
    t.kubectl("get", f"pod/{POD}", f"pvc/{CLAIM}")
    restore_exit(t)
    restored = count(t)

    def sidecar_started() -> float:
        running = get("pod", POD)["status"]["initContainerStatuses"][1]["state"]["running"]
        return datetime.datetime.fromisoformat(running["startedAt"]).timestamp()

    until("the sidecar's status to say it runs", sidecar_started)
    after = level0(replica(session(), POD, record=False))
    record = "/app/data/replica-generation"
    generation = int(t.kubectl("exec", POD, "-c", "app", "--", "cat", record, record=False))

    acked = [(float(at), int(total)) for at, total in
             (line.split() for line in lines if not line.startswith("failed"))]  # fmt: skip
    last_at, last_total = acked[-1]
    kept = [at for at, total in acked if total <= restored]
    lost = last_total - restored
    seconds = last_at - (kept[-1] if kept else acked[0][0] - 0.1)
    t.note(f"round {n}: {len(acked)} visits acknowledged (totals {acked[0][1]}..{last_total}),"
           f" the last {frozen_at - last_at:.2f} s before the freeze; restored {restored}:"
           f" lost {lost} acknowledged visits, the last {seconds:.2f} s of counting")  # fmt: skip
    page = t.kubectl("exec", POD, "-c", "app", "--", "python", "-c",
                     "import urllib.request as u; print(u.urlopen('http://localhost:8000/')"
                     ".read().decode())", record=False)  # fmt: skip
    t.note(f"round {n}: one more visit answers total {TOTAL.search(page).group(1)}")
    assert lines[-1].startswith("failed"), lines[-1]
    assert [total for _, total in acked] == list(range(before + 1, last_total + 1))
    # No final sync from the frozen pod: its generation is as it was at the freeze. The new
    # pod's volume replicates to a generation of its own, the next (k8s/chart/files/litestream.sh).
    frozen_generation = max(at_freeze)[0]
    assert generation == frozen_generation + 1
    assert at_freeze.items() <= after.items()
    assert {gen for gen, _ in after.keys() - at_freeze.keys()} <= {generation}
    # The replica holds a prefix of what the pod committed: never more than the visits sent
    # (the last one may have committed unacknowledged), never less than before the round.
    assert before <= restored <= last_total + 1
    assert TOTAL.search(page).group(1) == str(restored + 1)
    return {"acked": len(acked), "lost": max(lost, 0), "seconds": max(seconds, 0.0)}


def test_a_lost_node_loses_only_the_visits_after_the_last_sync(installed):
    t = session()
    t.note("a client in the s3 pod visits app-python-0 every 0.1 s; each acknowledged visit is"
           " printed with the total it answered. Three rounds: the freeze falls at another"
           " point of the sync cycle each time")  # fmt: skip
    rounds = [hard_loss(t, n) for n in (1, 2, 3)]
    t.note("lost acknowledged visits per round: "
           f"{[r['lost'] for r in rounds]}; seconds of counting lost: "
           f"{[round(r['seconds'], 2) for r in rounds]}")  # fmt: skip
    t.save("rpo")


def test_a_snapshot_restored_with_backup_on_is_what_the_replica_keeps(installed, tmp_path):
    """`manage.py restore` into a pod whose sidecar replicates: the restart applies the snapshot
    while Litestream already holds the database open. The replica must follow the restored
    database: a later loss of pod and volume brings back the restored count plus what came
    after it, not the old database's."""
    t = session()
    snapshot = tmp_path / "snapshot.sqlite3"
    backup = ["kubectl", "-n", NAMESPACE, "exec", POD, "-c", "app", "--",
              "python", "manage.py", "backup"]  # fmt: skip
    with snapshot.open("wb") as out:
        result = subprocess.run(backup, stdout=out, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 0, result.stderr
    t.lines.append(f"$ {' '.join(backup)} > snapshot.sqlite3\n{result.stderr}")
    taken = count(t)
    visit = "import urllib.request as u\nfor _ in range(50): u.urlopen('http://localhost:8000/')"
    t.note("50 visits after the snapshot, then the snapshot restored")
    t.kubectl("exec", POD, "-c", "app", "--", "python", "-c", visit)
    # 50 visits fewer than the live count: restore asks for --force, and warns with it.
    restore = ["kubectl", "-n", NAMESPACE, "exec", "-i", POD, "-c", "app", "--",
               "python", "manage.py", "restore", "--force", "-"]  # fmt: skip
    with snapshot.open("rb") as source:
        result = subprocess.run(restore, stdin=source, capture_output=True, text=True)
    t.lines.append(f"$ {' '.join(restore)} < snapshot.sqlite3\n{result.stdout}{result.stderr}")
    assert result.returncode == 0, result.stderr
    lost = re.search(r"the (\d+) visits between would be lost", result.stderr)
    assert lost and int(lost[1]) >= 50, result.stderr  # 50, and any visit another client made
    uid = get("pod", POD)["metadata"]["uid"]
    t.kubectl("delete", "pod", POD)
    until(f"a new {POD}", lambda: ready(POD) and get("pod", POD)["metadata"]["uid"] != uid)
    restored = count(t)
    t.note("20 visits after the restore, then the pod and its claim lost (gracefully)")
    visit = visit.replace("range(50)", "range(20)")
    t.kubectl("exec", POD, "-c", "app", "--", "python", "-c", visit)
    before_loss = count(t)
    t.note("the sidecar's log since the restart that applied the snapshot")
    restart_log = t.kubectl("logs", POD, "-c", "litestream")
    uid, volume = lose_pod_and_volume(t, graceful=True)
    until(f"a new {POD} on a new volume", lambda: replaced(uid, volume))
    restore_exit(t)
    after_loss = count(t)
    sidecar_log = session().kubectl("logs", POD, "-c", "litestream", record=False)
    t.save("snapshot")
    assert restored == taken
    assert before_loss == taken + 20
    assert after_loss == before_loss
    # The snapshot was written into the database the sidecar had open: an ordinary write to it.
    assert "error" not in restart_log.lower(), restart_log
    assert "error" not in sidecar_log.lower(), sidecar_log
