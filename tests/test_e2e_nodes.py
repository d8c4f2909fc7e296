"""The StatefulSet across several nodes (`make e2e` starts three), in its own namespace, with
the chart's defaults and backup on: the pods spread over the nodes; the routine operations
(a changed setting, a rolling restart, a deleted pod, a drain that the PodDisruptionBudget holds
to one pod at a time) each fail no visit of either client (support/visitors.py: a new
connection for each visit, and kept-alive connections), and the rolling restart's final syncs
leave every acknowledged visit in the pods' replicas; the same restart without the chart's
preStop pause, for what the pause costs and saves; then a node lost the way a machine that
loses power is (`e2e/cluster.sh freeze`: its kubelet, its runtime and every container on it stop
at once), the lost pod recovered onto another node from its backup (scripts/recover-pod.sh), the
old node coming back with its stale pod, and the same loss without backup. Every visit a client
saw acknowledged must be counted. Last, in a namespace of its own, the strict spread
(DoNotSchedule) with a node cordoned. Each step saves its real output under
docs/transcripts/e2e-nodes-*.txt, which docs/kubernetes.md quotes.
"""

import os
import re
import shlex
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from support.cluster import (
    BACKUP_VALUES,
    BUCKET,
    Session,
    doc_figures,
    e2e_missing,
    namespace_create,
    pod_processes,
    replica,
    start_s3,
    until,
)
from support.tools import ROOT, litestream_binary
from support.visitors import ServiceVisitors, Visit, assert_every_visit_counted

pytestmark = pytest.mark.e2e

if reason := e2e_missing():
    pytest.skip(reason, allow_module_level=True)

CLUSTER = ["bash", str(ROOT / "e2e" / "cluster.sh")]
NODES = subprocess.run([*CLUSTER, "nodes"], capture_output=True, text=True).stdout.split()
if len(NODES) < 3:
    pytest.skip(f"needs three nodes; this cluster has {NODES}", allow_module_level=True)

NAMESPACE = "app-python-nodes"
PODS = ["app-python-0", "app-python-1", "app-python-2"]
SELECTOR = "app.kubernetes.io/name=app-python,app.kubernetes.io/instance=app-python"
DNS_NODE = "node-1"  # CoreDNS's and S3's (e2e/cluster.sh, e2e/moto): never drained or lost here
INSTALL = ("upgrade", "--install", "app-python", "k8s/chart", "-f", "k8s/chart/values-local.yaml")
WITH_BACKUP = (*INSTALL, "-n", NAMESPACE, *BACKUP_VALUES)
RECOVER = ["bash", str(ROOT / "scripts" / "recover-pod.sh"), "-n", NAMESPACE]
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
# The chart's spread (ScheduleAnyway), made strict: a pod that cannot have a node of its own waits.
SPREAD = {
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
         "whenUnsatisfiable": "DoNotSchedule"},
    ]
}  # fmt: skip
# From an endpoint's removal to kube-proxy's rules without it: its minimum sync period (1 s)
# and the watch between. A visit sent within this may still go to the removed pod.
PROPAGATION = 3.0


def session() -> Session:
    """kubectl in the namespace, and helm; transcripts e2e-nodes-NAME.txt."""
    return Session(NAMESPACE, prefix="nodes-")


def counts(t: Session) -> dict[str, int]:
    return {pod: t.visits(pod, container="app") for pod in PODS}


def placement() -> dict[str, str]:
    """Each pod's node."""
    pods = session().get("pods", "-l", SELECTOR)["items"]
    return {pod["metadata"]["name"]: pod["spec"].get("nodeName") for pod in pods}


def node_ready(node: str) -> str:
    """The node's Ready condition: True, False or Unknown (no word from its kubelet)."""
    conditions = session().get("node", node)["status"]["conditions"]
    return next(c["status"] for c in conditions if c["type"] == "Ready")


def ready_addresses() -> set[str]:
    """The pod addresses the Service sends visits to (its EndpointSlices' ready endpoints)."""
    slices = session().get("endpointslices", "-l", "kubernetes.io/service-name=app-python")
    return {
        address
        for piece in slices["items"]
        for endpoint in piece.get("endpoints") or []
        if endpoint.get("conditions", {}).get("ready")
        for address in endpoint["addresses"]
    }


def service_address(t: Session) -> str:
    return t.get("service", "app-python")["spec"]["clusterIP"]


def failed_between(visitors: ServiceVisitors, start: float, end: float) -> list[Visit]:
    return [v for v in visitors.failed() if start <= v.sent <= end]


@pytest.fixture(scope="module")
def installed() -> Iterator[Session]:
    """The chart with its defaults and backup on (S3 on node-1)."""
    t = session()
    namespace_create(t, NAMESPACE)
    start_s3(t)
    t.helm(*WITH_BACKUP)
    t.kubectl("rollout", "status", "statefulset/app-python", "--timeout=300s", record=False)
    until("3 ready pods", lambda: t.ready_pods(SELECTOR) == PODS)
    yield t
    # The other e2e modules need neither these pods nor the CPU they take.
    Session().kubectl("delete", "namespace", NAMESPACE, "--wait=false", record=False)


def test_the_pods_spread_over_the_nodes_and_the_service_reaches_each(installed):
    t = session()
    t.kubectl("get", "nodes")
    t.kubectl("get", "pods", "-o", "wide")
    where = placement()
    claims = {}
    for pod in PODS:
        volume = t.get("pvc", f"data-{pod}")["spec"]["volumeName"]
        terms = t.get("pv", volume)["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        claims[pod] = terms[0]["matchExpressions"][0]["values"]
    affinity = ".spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]"
    volumes = [t.get("pvc", f"data-{pod}")["spec"]["volumeName"] for pod in PODS]
    columns = f"custom-columns=VOLUME:.metadata.name,CLAIM:.spec.claimRef.name,NODE:{affinity}"
    t.kubectl("get", "pv", *volumes, "-o", columns)
    before = counts(session())
    sender = next(pod for pod in PODS if where[pod] == DNS_NODE)
    t.note(f"60 visits to the app-python Service, sent from {sender} on {where[sender]}")
    t.python(sender, 'import urllib.request as u\n'
             'for _ in range(60): u.urlopen("http://app-python/").read()')  # fmt: skip
    after = counts(t)
    t.save("spread")
    assert sorted(where.values()) == sorted(NODES[:3]), where
    assert all(claims[pod] == [where[pod]] for pod in PODS), (claims, where)
    received = {pod: after[pod] - before[pod] for pod in PODS}
    assert sum(received.values()) == 60, received
    others = [pod for pod in PODS if pod != sender]
    assert all(received[pod] > 0 for pod in others), received


def settled(t: Session, uids: dict[str, str]) -> bool:
    """Every pod replaced (a new UID), ready, and the StatefulSet's rollout done: the last new
    pod ready for minReadySeconds (available)."""
    status = t.get("statefulset", "app-python")["status"]
    return (
        all(t.is_ready(pod) and t.uid(pod) != uids[pod] for pod in PODS)
        and status.get("availableReplicas") == len(PODS)
        and status.get("updatedReplicas") == len(PODS)
        and status.get("currentRevision") == status.get("updateRevision")
    )


def rollout(t: Session, name: str, change, *, followed: list[str] = ()) -> dict:
    """`change` made while both clients visit, until every pod was replaced and the rollout is
    done; then the transcript: the pods, how long it took, what the clients saw. `followed`:
    containers whose logs are read from their start to their end (`kubectl logs -f`), here for
    the last lines an old pod writes."""
    uids = {pod: t.uid(pod) for pod in PODS}
    before = counts(session())
    logs = {
        (pod, container): subprocess.Popen(
            ["kubectl", "-n", NAMESPACE, "logs", "-f", pod, "-c", container],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for pod in PODS for container in followed
    }  # fmt: skip
    try:
        with ServiceVisitors(service_address(t), PODS) as visitors:
            until("20 answered visits", lambda: len(visitors.answered()) >= 20, timeout=60)
            started = time.time()
            change(t)
            until("every pod replaced and the rollout done", lambda: settled(t, uids),
                  timeout=420)  # fmt: skip
            took = time.time() - started
        # Each old container has ended: its log is whole.
        ended = {key: follower.communicate(timeout=60)[0] for key, follower in logs.items()}
    finally:
        for follower in logs.values():
            follower.kill()
    after = counts(t)
    t.kubectl("get", "pods", "-o", "wide")
    t.note(f"every pod replaced, the last one available, {took:.0f} s after the change")
    t.note(visitors.summary())
    t.save(name)
    created = {pod: t.get("pod", pod)["metadata"]["creationTimestamp"] for pod in PODS}
    return {
        "visitors": visitors, "before": before, "after": after, "took": took, "logs": ended,
        "created": {pod: datetime.fromisoformat(at).timestamp() for pod, at in created.items()},
    }  # fmt: skip


def restart(t: Session) -> None:
    t.kubectl("rollout", "restart", "statefulset/app-python")


def assert_no_visit_failed_and_each_counted(rolled: dict, stopped: int = len(PODS)) -> None:
    """No visit failed, each was counted, and each of the `stopped` pods closed a kept-alive
    connection between visits (the client holds one to every pod: support/visitors.py)."""
    visitors = rolled["visitors"]
    assert_every_visit_counted(visitors, rolled["before"], rolled["after"])
    assert not visitors.failed(), visitors.summary()
    assert visitors.answered("new") and visitors.answered("kept"), visitors.summary()
    assert visitors.closed_by_server >= stopped, visitors.summary()


def test_a_changed_setting_rolls_every_pod_and_fails_no_visit(installed):
    """`helm upgrade` that changes a configuration value only: the ConfigMap's checksum rolls
    the pods, one at a time, each stopping after its preStop pause."""
    setting = ("--set", "config.VISITS_LOG_FORMAT=json")
    rolled = rollout(session(), "config-change", lambda t: t.helm(*WITH_BACKUP, *setting))
    assert_no_visit_failed_and_each_counted(rolled)


FINAL_SYNC = re.compile(
    r"final sync: the replica holds the database's last transaction, TXID (\w+)"
)


def replica_at(t: Session, pod: str, txid: str, folder: Path) -> int:
    """The count in the pod's replica as of TXID `txid`, restored on this machine by the
    Litestream built here, from the bucket through its Service."""
    s3 = t.get("service", "s3")["spec"]["clusterIP"]
    generation = volume_generation(t, pod)
    config = folder / f"{pod}.yml"
    config.write_text(yaml.safe_dump({"dbs": [{"path": "/app/data/db.sqlite3", "replica": {
        "type": "s3", "bucket": BUCKET, "path": f"app-python/{pod}/{generation}",
        "endpoint": f"http://{s3}:5000", "region": "us-east-1"}}]}))  # fmt: skip
    restored = folder / f"{pod}.sqlite3"
    command = [litestream_binary(), "restore", "-config", str(config), "-txid", txid,
               "-o", str(restored), "/app/data/db.sqlite3"]  # fmt: skip
    # The bucket's key pair (e2e/moto), and no CA bundle of this machine's: plain HTTP.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(AWS_ACCESS_KEY_ID="e2e", AWS_SECRET_ACCESS_KEY="e2e")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    t.lines.append(f"$ litestream restore -config {pod}.yml -txid {txid} -o {pod}.sqlite3"
                   f" /app/data/db.sqlite3\n{result.stdout}{result.stderr}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(restored) as db:
        return db.execute("SELECT total FROM counter_visitcounter").fetchone()[0]


def test_a_rolling_restart_fails_no_visit_and_each_replica_holds_every_acknowledged_one(
    installed, tmp_path
):
    """`kubectl rollout restart` with backup on: each old pod's sidecar makes its final sync
    after the app stopped and says so in its last log line, naming the database's last
    transaction; a restore of the replica as of that transaction holds every visit the old pod
    acknowledged."""
    t = session()
    rolled = rollout(t, "restart", restart, followed=["litestream"])
    assert_no_visit_failed_and_each_counted(rolled)
    t = session()
    t.note(
        "each old pod's last log lines (its sidecar's), and its replica restored as of the"
        " transaction they name, against the visits it acknowledged"
    )
    held = {}
    for pod in PODS:
        last_lines = rolled["logs"][(pod, "litestream")].strip().splitlines()[-2:]
        t.lines.append(f"# {pod}, old: " + "\n# ".join(last_lines) + "\n")
        final = FINAL_SYNC.search(last_lines[-1] if last_lines else "")
        assert final, (pod, last_lines)
        txid = final.group(1)
        acknowledged = [v.total for v in rolled["visitors"].answered()
                        if v.pod == pod and v.sent < rolled["created"][pod]]  # fmt: skip
        held[pod] = (replica_at(t, pod, txid, tmp_path), max(acknowledged, default=0))
        t.note(f"{pod}: the replica as of TXID {txid} counts {held[pod][0]}; the old pod's last"
               f" acknowledged visit was number {held[pod][1]}")  # fmt: skip
    t.save("restart-replicas")
    assert all(replica >= acknowledged for replica, acknowledged in held.values()), held


def test_a_deleted_pod_comes_back_and_fails_no_visit(installed):
    t = session()
    pod = PODS[1]
    uid = t.uid(pod)
    before = counts(session())
    with ServiceVisitors(service_address(t), PODS) as visitors:
        until("20 answered visits", lambda: len(visitors.answered()) >= 20, timeout=60)
        t.kubectl("delete", "pod", pod)
        until(f"{pod} back and ready", lambda: t.is_ready(pod) and t.uid(pod) != uid)
        back = time.time()
        until(f"{pod} to answer the clients again",
              lambda: any(v.sent > back and v.pod == pod for v in visitors.answered()),
              timeout=60)  # fmt: skip
    after = counts(t)
    t.kubectl("get", "pods", "-o", "wide")
    t.note(visitors.summary())
    t.save("delete-pod")
    assert_no_visit_failed_and_each_counted(
        {"visitors": visitors, "before": before, "after": after}, stopped=1
    )


def test_a_drain_evicts_one_pod_and_the_disruption_budget_refuses_a_second(installed):
    t = session()
    where = placement()
    first, second = sorted(pod for pod in PODS if where[pod] != DNS_NODE)[:2]
    uid = {pod: t.uid(pod) for pod in PODS}
    before = counts(session())
    service = service_address(t)
    with ServiceVisitors(service, PODS) as visitors:
        until("20 answered visits", lambda: len(visitors.answered()) >= 20, timeout=60)
        t.note(f"two clients visit the Service ({service}); drain {where[first]}"
               f" ({first}), and while its pod is away, {where[second]} ({second})")  # fmt: skip
        drain = ["kubectl", "-n", NAMESPACE, "drain", where[first], "--ignore-daemonsets",
                 "--delete-emptydir-data", "--timeout=180s"]  # fmt: skip
        draining = subprocess.Popen(drain, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)  # fmt: skip
        try:
            until(f"{first} evicted", lambda: t.uid(first) != uid[first])
        except AssertionError as error:  # say what the drain said
            draining.kill()
            output = draining.communicate()[0]
            raise AssertionError(f"{error}; {shlex.join(drain)}: {output}") from None
        try:
            # kubectl tells why it cannot evict on stderr, while it retries for 15 s.
            second_drain = [*drain[:4], where[second], *drain[5:-1], "--timeout=15s"]
            refused = subprocess.run(second_drain, capture_output=True, text=True)
            t.lines.append(f"$ {' '.join(second_drain)}\n{refused.stdout}{refused.stderr}")
            t.kubectl("uncordon", where[second])
            still = t.get("pod", second)
            t.kubectl("get", "pods", "-o", "wide")

            def waiting() -> str:
                scheduled = next(c for c in t.get("pod", first)["status"]["conditions"]
                                 if c["type"] == "PodScheduled")  # fmt: skip
                return scheduled["status"] == "False" and scheduled["message"]

            until(f"{first}'s replacement to say why it waits", waiting)
            why = waiting()
            t.note(f"{first}'s replacement waits: {why}")
            output, _ = draining.communicate(timeout=180)
            t.lines.append(f"$ {' '.join(drain)}\n{output}")
            t.kubectl("uncordon", where[first])
            until(f"{first} back and ready", lambda: t.is_ready(first))
            back = time.time()
            t.kubectl("get", "pods", "-o", "wide")
            until(f"{first} to answer the clients again",
                  lambda: any(v.sent > back and v.pod == first for v in visitors.answered()),
                  timeout=60)  # fmt: skip
        finally:
            for node in (where[first], where[second]):  # whatever failed, no node stays cordoned
                session().kubectl("uncordon", node, record=False)
    after = counts(t)
    t.note(visitors.summary())
    t.save("drain")
    assert draining.returncode == 0, output
    assert refused.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in refused.stderr
    assert still["metadata"]["uid"] == uid[second]
    # Its volume is on the drained node, and the node is cordoned.
    assert "1 node(s) were unschedulable" in why, why
    assert "2 node(s) didn't match PersistentVolume's node affinity" in why, why
    assert placement()[first] == where[first]
    assert_no_visit_failed_and_each_counted(
        {"visitors": visitors, "before": before, "after": after}, stopped=1
    )


def test_without_the_pause_a_restart_is_faster_and_fails_visits(installed):
    """What the preStop pause and minReadySeconds cost and give: the chart with both at 0 (the
    pods rolled onto it still stopped with their pause), then the same restart as
    test_a_rolling_restart_...: how long it takes, and the visits it fails (recorded, not
    asserted: whether kube-proxy lags on a given stop is chance; nothing here depends on it)."""
    t = session()
    off = ("--set", "preStopSleepSeconds=0", "--set", "minReadySeconds=0")
    rollout(t, "pause-off", lambda t: t.helm(*WITH_BACKUP, *off))
    rollout(session(), "restart-without-pause", restart)


def test_a_lost_node_keeps_its_pod_out_of_the_service_and_makes_no_twin(installed):
    t = session()
    where = placement()
    pod = max(p for p in PODS if where[p] != DNS_NODE)
    node = where[pod]
    uid = t.uid(pod)
    address = t.get("pod", pod)["status"]["podIP"]
    before = counts(session())
    with ServiceVisitors(service_address(t), PODS) as visitors:
        until("20 answered visits", lambda: len(visitors.answered()) >= 20, timeout=60)
        subprocess.run([*CLUSTER, "freeze", node], check=True, capture_output=True)
        frozen = time.time()
        t.note(f"{node} frozen ({pod} on it): its kubelet, containerd and containers stopped")
        marks: dict[str, float] = {}

        def watch() -> bool:
            if "not ready" not in marks and node_ready(node) != "True":
                marks["not ready"] = time.time()
            if "out of the service" not in marks and address not in ready_addresses():
                marks["out of the service"] = time.time()
            return len(marks) == 2

        try:
            until(f"{node} NotReady and {pod} out of the Service", watch, timeout=240)
            t.kubectl("get", "nodes")
            t.kubectl("get", "pods", "-o", "wide")
            # The StatefulSet makes no second app-python-N while the first may still run.
            twins = []
            deadline = time.time() + 30
            while time.time() < deadline:
                twins.append([p["metadata"]["uid"] for p in t.get("pods", "-l", SELECTOR)["items"]
                              if p["metadata"]["name"] == pod])  # fmt: skip
                time.sleep(2)
            gone_at = marks["out of the service"]
            counted_after = [v for v in visitors.answered() if v.sent > gone_at]
            failed_after = failed_between(visitors, gone_at + PROPAGATION, time.time())
            subprocess.run([*CLUSTER, "thaw", node], check=True, capture_output=True)
            t.note(f"{node} thawed")
            until(f"{node} Ready", lambda: node_ready(node) == "True")
            until(f"{pod} ready again", lambda: t.is_ready(pod) and address in ready_addresses())
            t.kubectl("get", "pods", "-o", "wide")
        finally:
            subprocess.run([*CLUSTER, "thaw", node], capture_output=True)
    after = counts(t)
    in_between = failed_between(visitors, frozen, gone_at + PROPAGATION)
    errors = sorted({v.error for v in in_between})
    t.note(f"frozen at 0 s; NotReady after {marks['not ready'] - frozen:.1f} s; {pod} out of"
           f" the Service's endpoints after {gone_at - frozen:.1f} s; {len(in_between)} visits"
           f" sent until {PROPAGATION:g} s after that failed ({errors}), {len(failed_after)}"
           f" sent later; {len(counted_after)} answered by the other pods meanwhile")  # fmt: skip
    t.save("lost")
    doc_figures("runbooks.md", "lost-node", (
        f"In the last run ([e2e-nodes-lost.txt](transcripts/e2e-nodes-lost.txt)) the node was"
        f" NotReady {marks['not ready'] - frozen:.0f} s after it froze and its pod out of the"
        f" Service {gone_at - frozen:.0f} s after; {len(in_between)} visits sent until then (and"
        f" {PROPAGATION:g} s more, for kube-proxy) failed, each after the client's 2 s timeout,"
        f" {len(failed_after)} later; the other pods answered {len(counted_after)} meanwhile."
    ))  # fmt: skip
    assert all(found == [uid] for found in twins), twins
    assert t.uid(pod) == uid
    assert counted_after and not failed_after, failed_after
    assert_every_visit_counted(visitors, before, after)


def alone_on_a_node(where: dict[str, str]) -> str:
    """A pod with a node to itself, not the node that CoreDNS and S3 run on: the one to lose."""
    candidates = [pod for pod, node in where.items()
                  if node != DNS_NODE and list(where.values()).count(node) == 1]  # fmt: skip
    assert candidates, where
    return max(candidates)


def volume_generation(t: Session, pod: str) -> int:
    """The replica generation the pod's volume writes to (k8s/chart/files/litestream.sh)."""
    record = "/app/data/replica-generation"
    return int(t.kubectl("exec", pod, "-c", "app", "--", "cat", record, record=False))


def run(t: Session, command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """A command, recorded with its output, as a terminal shows it."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    shown = " ".join(part.removeprefix(f"{ROOT}/") for part in command)
    t.lines.append(f"$ {shown}\n{result.stdout}{result.stderr}")
    return result


def freeze(t: Session, node: str) -> float:
    """Freeze the node, then wait until the control plane has given up on it (Ready Unknown)."""
    subprocess.run([*CLUSTER, "freeze", node], check=True, capture_output=True)
    frozen = time.time()
    t.note(f"{node} frozen: its kubelet, containerd and containers stopped")
    until(f"{node} NotReady", lambda: node_ready(node) == "Unknown", timeout=240)
    t.note(f"{node} Ready=Unknown after {time.time() - frozen:.1f} s")
    return frozen


def thaw(t: Session, node: str) -> None:
    subprocess.run([*CLUSTER, "thaw", node], check=True, capture_output=True)
    t.note(f"{node} thawed")
    until(f"{node} Ready", lambda: node_ready(node) == "True")


@pytest.fixture(scope="module")
def recovered(installed) -> dict:
    """A node lost while a client counts; scripts/recover-pod.sh, refused while the node still
    answers, then run once it does not: the pod on a new volume on another node."""
    t = session()
    where = placement()
    pod = alone_on_a_node(where)
    node = where[pod]
    uid = t.uid(pod)
    generation = volume_generation(t, pod)
    refused = run(t, [*RECOVER, pod])
    before = counts(session())
    with ServiceVisitors(service_address(t), PODS) as visitors:
        until("20 answered visits", lambda: len(visitors.answered()) >= 20, timeout=60)
        frozen = freeze(t, node)
        recovery = run(t, [*RECOVER, pod])
        done = time.time()
        until(f"{pod} to answer the clients again",
              lambda: any(v.sent > done and v.pod == pod for v in visitors.answered()),
              timeout=60)  # fmt: skip
    after = counts(t)
    t.kubectl("get", "pods", "-o", "wide")
    # In the pod's order (its totals): the two clients' visits are listed as they were answered.
    old = sorted(((v.sent, v.total) for v in visitors.answered()
                  if v.pod == pod and v.sent <= frozen), key=lambda visit: visit[1])  # fmt: skip
    new = [v.total for v in visitors.answered() if v.pod == pod and v.sent > frozen]
    last_at, last_total = old[-1]
    restored = min(new) - 1  # the only visitors: their first visit there is restored + 1
    kept = [at for at, total in old if total <= restored]  # the lost ones: sent after these
    facts = {
        "pod": pod, "node": node, "uid": uid, "generation": generation, "refused": refused,
        "recovery": recovery, "before": before, "after": after, "visitors": visitors,
        "restored": restored, "last acknowledged": last_total, "lost": last_total - restored,
        "seconds": last_at - max(kept) if kept else None,
        "last before the freeze": frozen - last_at, "recovery took": done - frozen,
    }  # fmt: skip
    t.note(f"{pod}'s last acknowledged visit before the freeze: total {last_total},"
           f" {frozen - last_at:.2f} s before it; restored {restored}: {facts['lost']}"
           f" acknowledged visits lost, the last"
           f" {facts['seconds'] or 0:.2f} s of counting; from the freeze to the recovered pod:"
           f" {done - frozen:.0f} s; {visitors.summary()}")  # fmt: skip
    t.save("recover")
    doc_figures("runbooks.md", "recovery", (
        f"In the last run ([e2e-nodes-recover.txt](transcripts/e2e-nodes-recover.txt)):"
        f" {facts['lost']} acknowledged visits lost, the last {facts['seconds'] or 0:.1f} s of"
        f" counting, and {done - frozen:.0f} s from the node's freeze to the pod counting again"
        f" on another node."
    ))  # fmt: skip
    return facts


def test_the_recovery_command_refuses_while_the_node_still_answers(recovered):
    refused = recovered["refused"]
    assert refused.returncode == 1, refused.stdout
    assert f"refusing: {recovered['node']} still answers (Ready=True" in refused.stderr
    assert "drain it instead" in refused.stderr


def test_a_pod_on_a_lost_node_is_recovered_on_another_from_its_backup(recovered):
    t = session()
    pod, node = recovered["pod"], recovered["node"]
    assert recovered["recovery"].returncode == 0, recovered["recovery"].stderr
    assert placement()[pod] != node
    assert t.uid(pod) != recovered["uid"]
    # The restored count lies between the count before the loss and the last acknowledged visit.
    assert recovered["before"][pod] <= recovered["restored"] <= recovered["last acknowledged"]
    claim = t.get("pvc", f"data-{pod}")
    volume = t.get("pv", claim["spec"]["volumeName"])
    terms = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [placement()[pod]]
    assert volume_generation(t, pod) == recovered["generation"] + 1
    # The other pods counted every visit they acknowledged; the lost ones are the recovered pod's.
    visitors = recovered["visitors"]
    for other in PODS:
        if other != pod:
            seen = [v for v in visitors.answered() if v.pod == other]
            grown = recovered["after"][other] - recovered["before"][other]
            assert grown >= len(seen), (other, grown, len(seen))


def test_the_old_node_comes_back_and_its_stale_pod_writes_only_its_own_generation(recovered):
    """Thawed, the old node's kubelet finds its pod deleted and stops it; until then its sidecar
    may ship what it held, into the old volume's generation only. Then the recovered pod loses
    its volume too: the restore brings back its count, not the stale one's."""
    t = session()
    pod, node = recovered["pod"], recovered["node"]
    old_generation = str(recovered["generation"])
    objects = replica(session(), pod, record=False)
    thaw(t, node)
    until(f"the stale {pod}'s containers on {node} to stop",
          lambda: not pod_processes(recovered["uid"]), timeout=120)  # fmt: skip
    after_thaw = replica(session(), pod, record=False)
    written = sorted(key for at, key in set(after_thaw) - set(objects))
    stale = [key for key in written if key.split("/")[2] == old_generation]
    # The same TXIDs in the recovered volume's generation: what a path per pod would have lost.
    new_generation = str(int(old_generation) + 1)
    keys = {key for _, key in after_thaw}
    clashes = [key for key in stale if key.replace(f"/{old_generation}/", f"/{new_generation}/")
               in keys]  # fmt: skip
    t.note(f"written to {pod}'s replica since the thaw: {len(written)} objects,"
           f" {len(stale)} of them by the stale sidecar into the old volume's generation"
           f" {old_generation}: {[key.rsplit('/', 1)[1] for key in stale]}; {len(clashes)} of"
           f" these TXIDs are also in generation {new_generation}, the recovered pod's, which"
           f" one path per pod would have overwritten")  # fmt: skip
    t.kubectl("taint", "node", node, f"{OUT_OF_SERVICE}-")
    t.python(pod, "import urllib.request as u\nfor _ in range(30): u.urlopen('http://localhost:8000/')",
             container="app")  # fmt: skip
    at_loss = t.visits(pod, container="app")
    uid = t.uid(pod)
    volume = t.get("pvc", f"data-{pod}")["spec"]["volumeName"]
    t.note(f"30 visits to {pod}, then its claim and the pod deleted: it loses its volume")
    t.kubectl("delete", "pvc", f"data-{pod}", "--wait=false")
    t.kubectl("delete", "pod", pod)

    def replaced() -> bool:
        claim = t.get("pvc", f"data-{pod}")
        return t.is_ready(pod) and t.uid(pod) != uid and claim["spec"]["volumeName"] != volume

    until(f"{pod} on a new volume", replaced, timeout=300)
    t.kubectl("get", "pods", "-o", "wide")
    t.kubectl("logs", pod, "-c", "litestream-restore")
    restored = t.visits(pod, container="app")
    t.save("comeback")
    # Nothing but the two volumes' own generations; the stale pod's writes stayed in the old one.
    assert {key.split("/")[2] for key in written} <= {old_generation, new_generation}
    assert restored == at_loss


def test_without_backup_a_lost_nodes_pod_waits_for_its_node(installed):
    """The chart without backup: the same loss leaves the pod Pending, its count on the lost
    node's volume only; the recovery command says so, and the count comes back with the node."""
    t = session()
    t.helm(*INSTALL, "-n", NAMESPACE)
    t.kubectl("rollout", "status", "statefulset/app-python", "--timeout=300s", record=False)
    until("3 ready pods", lambda: t.ready_pods(SELECTOR) == PODS)
    where = placement()
    pod = alone_on_a_node(where)
    node = where[pod]
    t.python(pod, "import urllib.request as u\nfor _ in range(25): u.urlopen('http://localhost:8000/')",
             container="app")  # fmt: skip
    before = t.visits(pod, container="app")
    freeze(t, node)
    try:
        result = run(t, [*RECOVER, pod])
        t.kubectl("get", "pods", "-o", "wide")
        waiting = next(c for c in t.get("pod", pod)["status"]["conditions"]
                       if c["type"] == "PodScheduled")  # fmt: skip
    finally:
        thaw(t, node)
    t.kubectl("taint", "node", node, f"{OUT_OF_SERVICE}-")
    until(f"{pod} ready on {node}", lambda: t.is_ready(pod))
    t.kubectl("get", "pods", "-o", "wide")
    after = t.visits(pod, container="app")
    t.save("no-backup")
    assert result.returncode == 3, result.stderr
    assert "Backup is off" in result.stdout and "--discard-data" in result.stdout
    assert waiting["status"] == "False"
    # Its claim's volume is on the lost node, which is out of service.
    assert "2 node(s) didn't match PersistentVolume's node affinity" in waiting["message"], waiting
    assert "1 node(s) had untolerated taint" in waiting["message"], waiting
    assert placement()[pod] == node
    assert after == before >= 25


def test_a_strict_spread_makes_a_new_pod_wait_while_a_node_is_cordoned():
    """whenUnsatisfiable: DoNotSchedule with one of three nodes cordoned: two pods run, the third
    waits and says why; uncordoned, it runs there. (The chart's default, ScheduleAnyway, would
    have run it beside another.)"""
    namespace = "app-python-spread"
    t = Session(namespace, prefix="nodes-")
    cordoned = NODES[2]
    values = ROOT / ".cluster" / "strict-spread.yaml"
    values.write_text(yaml.safe_dump(SPREAD))
    t.kubectl("cordon", cordoned)
    try:
        namespace_create(t.quiet(), namespace)
        t.helm(*INSTALL, "-n", namespace, "-f", str(values))

        def waiting() -> str | None:
            pods = t.get("pods", "-l", SELECTOR)["items"]
            pending = [c["message"] for pod in pods for c in pod["status"].get("conditions", [])
                       if c["type"] == "PodScheduled" and c["status"] == "False"]  # fmt: skip
            return len(pods) == 3 and len(t.ready_pods(SELECTOR)) == 2 and pending and pending[0]

        until("two pods ready and one waiting", waiting, timeout=300)
        why = waiting()
        t.kubectl("get", "pods", "-o", "wide")
        t.note(f"the third pod waits: {why}")
    finally:
        t.kubectl("uncordon", cordoned)
    until("3 ready pods", lambda: t.ready_pods(SELECTOR) == PODS, timeout=300)
    t.kubectl("get", "pods", "-o", "wide")
    nodes = sorted(placement_in(t).values())
    t.save("strict-spread")
    t.helm("uninstall", "app-python", "-n", namespace)
    assert "1 node(s) were unschedulable" in why, why
    assert "2 node(s) didn't match pod topology spread constraints" in why, why
    assert nodes == sorted(NODES[:3]), nodes


def placement_in(t: Session) -> dict[str, str]:
    pods = t.get("pods", "-l", SELECTOR)["items"]
    return {pod["metadata"]["name"]: pod["spec"].get("nodeName") for pod in pods}
