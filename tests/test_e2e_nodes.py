"""The StatefulSet across several nodes (`make e2e` starts three), in its own namespace: the pods
spread over the nodes, a drain that the PodDisruptionBudget holds to one pod at a time, and a
node lost the way a machine that loses power is (`e2e/cluster.sh freeze`: its kubelet, its
runtime and every container on it stop at once). A client counts through the Service about ten
times a second throughout; every visit it saw acknowledged must be counted. Each step saves its
real output under docs/transcripts/e2e-nodes-*.txt, which docs/kubernetes.md quotes.
"""

import re
import subprocess
import threading
import time
import urllib.request

import pytest
import yaml

from support.cluster import Session, cluster_missing, until
from support.tools import ROOT, helm_binary

pytestmark = pytest.mark.e2e

if reason := cluster_missing():
    pytest.skip(reason, allow_module_level=True)
if helm_binary() is None:
    pytest.skip("helm is not installed: `make helm` builds it", allow_module_level=True)

CLUSTER = ["bash", str(ROOT / "e2e" / "cluster.sh")]
NODES = subprocess.run([*CLUSTER, "nodes"], capture_output=True, text=True).stdout.split()
if len(NODES) < 3:
    pytest.skip(f"needs three nodes; this cluster has {NODES}", allow_module_level=True)

NAMESPACE = "app-python-nodes"
PODS = ["app-python-0", "app-python-1", "app-python-2"]
SELECTOR = "app.kubernetes.io/name=app-python,app.kubernetes.io/instance=app-python"
DNS_NODE = "node-1"  # CoreDNS's (e2e/cluster.sh): never drained or lost here
# The chart's spread, made strict: a pod that cannot have a node of its own waits.
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
    return {pod: t.visits(pod) for pod in PODS}


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
def installed(tmp_path_factory) -> Session:
    values = tmp_path_factory.mktemp("nodes") / "spread.yaml"
    values.write_text(yaml.safe_dump(SPREAD))
    t = session()
    t.helm("upgrade", "--install", "app-python", "k8s/chart", "-n", NAMESPACE, "--create-namespace",
           "-f", "k8s/chart/values-local.yaml", "-f", str(values))  # fmt: skip
    t.kubectl("rollout", "status", "statefulset/app-python", "--timeout=300s", record=False)
    until("3 ready pods", lambda: t.ready_pods(SELECTOR) == PODS)
    return t


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
        until(f"{first} evicted", lambda: t.uid(first) != uid[first])
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
