"""The perimeter on the project's real Kubernetes (`make e2e`), whose NetworkPolicy agent
enforces policies (kube-network-policies, e2e/cluster.sh): the chart with backup on, its policy
closed (networkPolicy.allowExternal and allowExternalEgress false, metrics only to selected
monitoring pods, egress to S3 through extraEgress), in a namespace of its own that, like every
namespace of the e2e, enforces Pod Security's restricted profile.

From pods around the release (app-image pods that only sleep, or serve a directory):
- an outsider in another namespace gets no answer from the app's port, nor the backup metrics;
- a client pod (the release's client label) does, through the Service;
- a monitoring pod (selected by namespace and labels) reads the relayed backup metrics, and
  finds no profiler there; Litestream's own port answers inside the pod only;
- the release's pods reach each other: /cluster shows every pod;
- DNS and S3 work: a pod that loses its volume comes back from its replica with its count;
- an app pod cannot connect to a pod the egress rules do not name.
Then the policy is deleted, and what it refused goes through: the refusals were the policy's.
Each step saves its real output as docs/transcripts/e2e-perimeter-*.txt.
"""

import json
from collections.abc import Iterator

import pytest
import yaml

from support.cluster import (
    BACKUP_VALUES,
    Session,
    e2e_missing,
    namespace_create,
    start_s3,
    until,
)

pytestmark = pytest.mark.e2e

if reason := e2e_missing():
    pytest.skip(reason, allow_module_level=True)

NAMESPACE = "app-python-perimeter"
ELSEWHERE = "app-python-elsewhere"  # an outsider's namespace, and a server no rule names
MONITORING = "app-python-monitoring"
PODS = ["app-python-0", "app-python-1"]
SELECTOR = "app.kubernetes.io/name=app-python,app.kubernetes.io/instance=app-python"
SERVICE = f"http://app-python.{NAMESPACE}.svc"
CLOSED = {
    "replicaCount": 2,
    "networkPolicy": {
        "allowExternal": False,
        "allowExternalEgress": False,
        # The backup's S3: the moto pods in the namespace (e2e/moto/moto.yaml).
        "extraEgress": [
            {
                "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "moto"}}}],
                "ports": [{"port": 5000}],
            }
        ],
        "metrics": {
            "allowExternal": False,
            "ingressNSMatchLabels": {"kubernetes.io/metadata.name": MONITORING},
            "ingressNSPodMatchLabels": {"app.kubernetes.io/name": "prometheus"},
        },
    },
}
# Asks URL from inside a pod, waiting 2 s at most, and says what came back.
ASK = """
import sys, urllib.error, urllib.request
url = sys.argv[1]
try:
    with urllib.request.urlopen(url, timeout=2) as answer:
        body = answer.read().decode(errors="replace")
        shown = body if sys.argv[2:] == ["show"] else f"({len(body)} bytes)"
        print(f"{url}: {answer.status}", shown)
except urllib.error.HTTPError as error:
    print(f"{url}: {error.code}")
except Exception as error:
    print(f"{url}: no answer ({type(error).__name__}: {getattr(error, 'reason', error)})")
"""


def session() -> Session:
    return Session(NAMESPACE, prefix="perimeter-")


def helper_pod(t: Session, name: str, *, labels: dict[str, str], serve: bool = False) -> str:
    """A pod of the app's image in t's namespace, restricted like every pod here, that sleeps
    (or serves a directory on port 8080); its address."""
    command = ["python", "-m", "http.server", "8080"] if serve else ["sleep", "86400"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": name, "image": image(), "imagePullPolicy": "IfNotPresent",
                "command": command, "workingDir": "/tmp",
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }  # fmt: skip
    t.kubectl("apply", "-f", "-", record=False, stdin=yaml.safe_dump(pod))
    until(f"{name} ready", lambda: t.is_ready(name))
    return t.get("pod", name)["status"]["podIP"]


def image() -> str:
    sts = Session(NAMESPACE).get("statefulset", "app-python")
    return sts["spec"]["template"]["spec"]["containers"][0]["image"]


def ask(t: Session, pod: str, url: str, *, container: str | None = None, show=False) -> str:
    return t.python(pod, ASK, container=container, args=[url, *(["show"] if show else [])])


@pytest.fixture(scope="module")
def closed(tmp_path_factory) -> Iterator[dict]:
    """The release with its perimeter closed, and the pods around it."""
    t = session()
    namespace_create(t, NAMESPACE)
    for namespace in (ELSEWHERE, MONITORING):
        namespace_create(t, namespace)
    start_s3(t)
    values = tmp_path_factory.mktemp("perimeter") / "closed.yaml"
    values.write_text(yaml.safe_dump(CLOSED))
    t.helm("upgrade", "--install", "app-python", "k8s/chart", "-n", NAMESPACE,
           "-f", "k8s/chart/values-local.yaml", *BACKUP_VALUES, "-f", str(values))  # fmt: skip
    until("2 ready pods", lambda: t.ready_pods(SELECTOR) == PODS, timeout=300)
    t.kubectl("get", "networkpolicy", "app-python", "-o", "yaml")
    around = {
        "client": helper_pod(t, "client", labels={"app-python-client": "true"}),
        "outsider": helper_pod(Session(ELSEWHERE), "outsider", labels={}, serve=True),
        "monitoring": helper_pod(
            Session(MONITORING), "prometheus", labels={"app.kubernetes.io/name": "prometheus"}
        ),  # fmt: skip
    }
    t.kubectl("get", "pods", "-o", "wide")
    t.save("install")
    yield around
    for namespace in (NAMESPACE, ELSEWHERE, MONITORING):
        Session().kubectl("delete", "namespace", namespace, "--wait=false", record=False)


def probes(around: dict) -> dict[str, str]:
    """What each side gets, asked from its pod: the app through its Service, the backup metrics
    and Litestream's own port on a pod's address, a server outside the egress rules."""
    pod = session().get("pod", PODS[0])["status"]["podIP"]  # a new one after it lost its volume
    outsider = around["outsider"]
    elsewhere, monitoring = Session(ELSEWHERE), Session(MONITORING)
    return {
        "outsider, the app": ask(elsewhere, "outsider", f"{SERVICE}/healthz"),
        "outsider, backup metrics": ask(elsewhere, "outsider", f"http://{pod}:9090/metrics"),
        "client, the app": ask(session(), "client", f"{SERVICE}/healthz"),
        "client, backup metrics": ask(session(), "client", f"http://{pod}:9090/metrics"),
        "monitoring, app metrics": ask(monitoring, "prometheus", f"http://{pod}:8000/metrics"),
        "monitoring, backup metrics": ask(monitoring, "prometheus", f"http://{pod}:9090/metrics"),
        "monitoring, profiler": ask(monitoring, "prometheus", f"http://{pod}:9090/debug/pprof/"),
        "monitoring, Litestream": ask(monitoring, "prometheus", f"http://{pod}:9091/metrics"),
        "app pod, a server elsewhere": ask(
            session(), PODS[0], f"http://{outsider}:8080/", container="app"
        ),  # fmt: skip
    }


def answered(result: str) -> bool:
    return ": 200" in result


def test_the_closed_perimeter_admits_only_what_the_chart_names(closed):
    t = session()
    t.note("each side asks from its own pod (2 s at most): the app's Service, a pod's backup"
           " metrics (9090, the app's relay), Litestream's own port (9091)")  # fmt: skip
    seen = probes(closed)
    for line in seen.values():
        t.note(line.strip())
    inside = ask(t, PODS[0], "http://127.0.0.1:9091/debug/pprof/", container="app")
    t.note(f"inside the pod: {inside.strip()}")
    t.save("closed")
    assert not answered(seen["outsider, the app"]), seen
    assert not answered(seen["outsider, backup metrics"]), seen
    assert answered(seen["client, the app"]), seen
    assert not answered(seen["client, backup metrics"]), seen  # the monitoring pods' alone
    assert answered(seen["monitoring, app metrics"]), seen
    assert answered(seen["monitoring, backup metrics"]), seen
    assert ": 404" in seen["monitoring, profiler"], seen
    assert not answered(seen["monitoring, Litestream"]), seen
    assert not answered(seen["app pod, a server elsewhere"]), seen
    assert answered(inside), inside  # the profiler is there, for the pod alone


def test_the_release_pods_reach_each_other_and_dns_and_s3_work(closed):
    t = session()
    answer = ask(t, "client", f"{SERVICE}/cluster?format=json", show=True)
    cluster = json.loads(answer.split(": 200 ", 1)[1])
    t.note(f"/cluster: {[(p['pod'], p['visits'], p['error']) for p in cluster['pods']]}")
    visit = "import urllib.request as u\nfor _ in range(20): u.urlopen('http://localhost:8000/')"
    t.python(PODS[0], visit, container="app")
    before = t.visits(PODS[0], container="app")
    uid = t.uid(PODS[0])
    volume = t.get("pvc", f"data-{PODS[0]}")["spec"]["volumeName"]
    t.note(f"{PODS[0]} and its claim deleted: it comes back on a new volume, from its replica")
    t.kubectl("delete", "pvc", f"data-{PODS[0]}", "--wait=false")
    t.kubectl("delete", "pod", PODS[0])

    def back() -> bool:
        claim = t.get("pvc", f"data-{PODS[0]}")
        return t.is_ready(PODS[0]) and t.uid(PODS[0]) != uid and (
            claim["spec"]["volumeName"] != volume)  # fmt: skip

    until(f"{PODS[0]} on a new volume", back, timeout=300)
    t.kubectl("logs", PODS[0], "-c", "litestream-restore")
    after = t.visits(PODS[0], container="app")
    t.save("reach")
    assert sorted(p["pod"] for p in cluster["pods"]) == PODS
    assert all(p["error"] is None for p in cluster["pods"]), cluster
    assert after == before >= 20


def test_without_the_policy_what_it_refused_goes_through(closed):
    t = session()
    t.kubectl("delete", "networkpolicy", "app-python")
    opened: dict[str, str] = {}

    def through() -> bool:  # the agent drops the deleted policy within moments
        opened.update(probes(closed))
        return answered(opened["outsider, the app"])

    until("the outsider answered", through, timeout=60)
    for line in opened.values():
        t.note(line.strip())
    t.save("open")
    assert answered(opened["outsider, the app"]), opened
    assert answered(opened["outsider, backup metrics"]), opened
    assert answered(opened["app pod, a server elsewhere"]), opened
    # Litestream's own port stays shut: bound to the pod's loopback, not a policy's doing.
    assert "Connection refused" in opened["monitoring, Litestream"], opened
