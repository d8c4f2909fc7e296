"""The StatefulSet across several nodes (`make e2e` starts three), in its own namespace, with
the chart's defaults and backup on: the pods spread over the nodes, a drain that the
PodDisruptionBudget holds to one pod at a time, a node lost the way a machine that loses power is
(`e2e/cluster.sh freeze`: its kubelet, its runtime and every container on it stop at once), the
lost pod recovered onto another node from its backup (scripts/recover-pod.sh), the old node
coming back with its stale pod, and the same loss without backup. A client counts through the
Service about ten times a second throughout; every visit it saw acknowledged must be counted.
Last, in a namespace of its own, the strict spread (DoNotSchedule) with a node cordoned. Each step
saves its real output under docs/transcripts/e2e-nodes-*.txt, which docs/kubernetes.md quotes.
"""

import re
import shlex
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from support.cluster import (
    BACKUP_VALUES,
    Session,
    e2e_missing,
    pod_processes,
    replica,
    start_s3,
    until,
)
from support.tools import ROOT

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
RECOVER = ["bash", str(ROOT / "scripts" / "recover-pod.sh"), "-n", NAMESPACE]
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
# The chart's spread (ScheduleAnyway), made strict: a pod that cannot have a node of its own waits.
SPREAD = {
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
         "whenUnsatisfiable": "DoNotSchedule"},
    ]
}  # fmt: skip
PAGE = re.compile(r'id="pod">([^<]+)<.*id="total">(\d+)<', re.S)
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


class Client(threading.Thread):
    """Visits the Service every 0.1 s from this machine (through kube-proxy's rules, as any
    client outside the pods would; Host: app-python, a name the app allows), each on a new
    connection with a 2 s timeout. Keeps (time, pod, total) of every answered visit and
    (time sent, error) of every failed one."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.url = f"http://{address}/"
        self.answered: list[tuple[float, str, int]] = []
        self.failed: list[tuple[float, str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.time()
            try:
                request = urllib.request.Request(self.url, headers={"Host": "app-python"})
                page = urllib.request.urlopen(request, timeout=2).read().decode()
                pod, total = PAGE.search(page).groups()
                self.answered.append((time.time(), pod, int(total)))
            except Exception as error:  # every failure counts, whatever its kind
                self.failed.append((started, type(error).__name__))
            self.stopping.wait(max(0.0, 0.1 - (time.time() - started)))

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def acknowledged(self, pod: str) -> list[int]:
        return [total for _, name, total in self.answered if name == pod]

    def failures_between(self, start: float, end: float) -> list[tuple[float, str]]:
        return [(at, error) for at, error in self.failed if start <= at <= end]


def assert_every_acknowledged_visit_counted(client: Client, before: dict, after: dict) -> None:
    """Each pod's count grew by at least the visits it acknowledged, and holds each total it
    answered; all together, by no more than the visits sent (a failed one may have counted)."""
    for pod in PODS:
        seen = client.acknowledged(pod)
        assert after[pod] - before[pod] >= len(seen), (pod, before[pod], after[pod], len(seen))
        assert all(before[pod] < total <= after[pod] for total in seen), pod
    grown = sum(after.values()) - sum(before.values())
    assert len(client.answered) <= grown <= len(client.answered) + len(client.failed)


@pytest.fixture(scope="module")
def installed() -> Iterator[Session]:
    """The chart with its defaults and backup on (S3 on node-1)."""
    t = session()
    Session().kubectl("create", "namespace", NAMESPACE)
    start_s3(t)
    t.helm(*INSTALL, "-n", NAMESPACE, *BACKUP_VALUES)
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


def test_a_drain_evicts_one_pod_and_the_disruption_budget_refuses_a_second(installed):
    t = session()
    where = placement()
    first, second = sorted(pod for pod in PODS if where[pod] != DNS_NODE)[:2]
    uid = {pod: t.uid(pod) for pod in PODS}
    before = counts(session())
    service = t.get("service", "app-python")["spec"]["clusterIP"]
    client = Client(service)
    client.start()
    try:
        until("20 answered visits", lambda: len(client.answered) >= 20, timeout=60)
        t.note(f"a client visits the Service ({service}) every 0.1 s; drain {where[first]}"
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
        until(f"{first} to answer the client again",
              lambda: any(at > back and name == first for at, name, _ in client.answered),
              timeout=60)  # fmt: skip
    finally:
        client.stop()
        for node in (where[first], where[second]):  # whatever failed, no node stays cordoned
            session().kubectl("uncordon", node, record=False)
    after = counts(t)
    t.note(f"the client: {len(client.answered)} visits answered, {len(client.failed)} failed"
           f" ({sorted({error for _, error in client.failed})})")  # fmt: skip
    t.save("drain")
    assert draining.returncode == 0, output
    assert refused.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in refused.stderr
    assert still["metadata"]["uid"] == uid[second]
    # Its volume is on the drained node, and the node is cordoned.
    assert "1 node(s) were unschedulable" in why, why
    assert "2 node(s) didn't match PersistentVolume's node affinity" in why, why
    assert placement()[first] == where[first]
    assert_every_acknowledged_visit_counted(client, before, after)
    assert len(client.failed) <= 5, client.failed


def test_a_lost_node_keeps_its_pod_out_of_the_service_and_makes_no_twin(installed):
    t = session()
    where = placement()
    pod = max(p for p in PODS if where[p] != DNS_NODE)
    node = where[pod]
    uid = t.uid(pod)
    address = t.get("pod", pod)["status"]["podIP"]
    before = counts(session())
    client = Client(t.get("service", "app-python")["spec"]["clusterIP"])
    client.start()
    try:
        until("20 answered visits", lambda: len(client.answered) >= 20, timeout=60)
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
        counted_after = [a for a, name, _ in client.answered if a > gone_at]
        failed_after = client.failures_between(gone_at + PROPAGATION, time.time())
        subprocess.run([*CLUSTER, "thaw", node], check=True, capture_output=True)
        t.note(f"{node} thawed")
        until(f"{node} Ready", lambda: node_ready(node) == "True")
        until(f"{pod} ready again", lambda: t.is_ready(pod) and address in ready_addresses())
        t.kubectl("get", "pods", "-o", "wide")
    finally:
        subprocess.run([*CLUSTER, "thaw", node], capture_output=True)
        client.stop()
    after = counts(t)
    in_between = client.failures_between(frozen, gone_at + PROPAGATION)
    errors = sorted({error for _, error in in_between})
    t.note(f"frozen at 0 s; NotReady after {marks['not ready'] - frozen:.1f} s; {pod} out of"
           f" the Service's endpoints after {gone_at - frozen:.1f} s; {len(in_between)} visits"
           f" sent until {PROPAGATION:g} s after that failed ({errors}), {len(failed_after)}"
           f" sent later; {len(counted_after)} answered by the other pods meanwhile")  # fmt: skip
    t.save("lost")
    assert all(found == [uid] for found in twins), twins
    assert t.uid(pod) == uid
    assert counted_after and not failed_after, failed_after
    assert_every_acknowledged_visit_counted(client, before, after)


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
    client = Client(t.get("service", "app-python")["spec"]["clusterIP"])
    client.start()
    try:
        until("20 answered visits", lambda: len(client.answered) >= 20, timeout=60)
        frozen = freeze(t, node)
        recovery = run(t, [*RECOVER, pod])
        done = time.time()
        until(f"{pod} to answer the client again",
              lambda: any(at > done and name == pod for at, name, _ in client.answered),
              timeout=60)  # fmt: skip
    finally:
        client.stop()
    after = counts(t)
    t.kubectl("get", "pods", "-o", "wide")
    old = [(at, total) for at, name, total in client.answered if name == pod and at <= frozen]
    new = [total for at, name, total in client.answered if name == pod and at > frozen]
    last_at, last_total = old[-1]
    restored = min(new) - 1  # the client is the only visitor: its first visit there is restored + 1
    kept = [at for at, total in old if total <= restored]
    facts = {
        "pod": pod, "node": node, "uid": uid, "generation": generation, "refused": refused,
        "recovery": recovery, "before": before, "after": after, "client": client,
        "restored": restored, "last acknowledged": last_total, "lost": last_total - restored,
        "seconds": last_at - kept[-1] if kept else None,
        "last before the freeze": frozen - last_at, "recovery took": done - frozen,
    }  # fmt: skip
    t.note(f"{pod}'s last acknowledged visit before the freeze: total {last_total},"
           f" {frozen - last_at:.2f} s before it; restored {restored}: {facts['lost']}"
           f" acknowledged visits lost, the last"
           f" {facts['seconds'] or 0:.2f} s of counting; from the freeze to the recovered pod:"
           f" {done - frozen:.0f} s; the client: {len(client.answered)} answered,"
           f" {len(client.failed)} failed")  # fmt: skip
    t.save("recover")
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
    client = recovered["client"]
    for other in PODS:
        if other != pod:
            seen = client.acknowledged(other)
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
        t.helm(*INSTALL, "-n", namespace, "--create-namespace", "-f", str(values))

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
