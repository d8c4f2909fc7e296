"""The Helm chart on the project's real Kubernetes (`make e2e`), in its own namespace.

The steps run in order against one release; each saves the real helm and kubectl output it
shows under docs/transcripts/e2e-helm-*.txt, which docs/kubernetes.md quotes.
"""

import hashlib

import pytest

from support.cluster import Session, e2e_missing, namespace_create, until

pytestmark = pytest.mark.e2e

if reason := e2e_missing():
    pytest.skip(reason, allow_module_level=True)

NAMESPACE = "app-python-helm"  # not the kustomize e2e's (default): same names, no collision
RELEASE = "app-python"
PODS = ["app-python-0", "app-python-1", "app-python-2"]
SELECTOR = "app.kubernetes.io/name=app-python,app.kubernetes.io/instance=app-python"
INSTALL = ("upgrade", "--install", RELEASE, "k8s/chart", "-n", NAMESPACE,
           "-f", "k8s/chart/values-local.yaml")  # fmt: skip


def session() -> Session:
    """kubectl in the release's namespace, and helm; transcripts e2e-helm-NAME.txt."""
    return Session(NAMESPACE, prefix="helm-")


def get(*args: str) -> dict:
    return session().get(*args)


def pods() -> dict[str, dict]:
    return {pod["metadata"]["name"]: pod for pod in get("pods", "-l", SELECTOR)["items"]}


def ready_pods() -> list[str]:
    return session().ready_pods(SELECTOR)


def wait_ready() -> None:
    until("3 ready pods", lambda: ready_pods() == PODS)


def counts(t: Session) -> dict[str, int]:
    return {pod: t.visits(pod) for pod in PODS}


def secret_key_digest() -> str:
    key = get("secret", RELEASE)["data"]["DJANGO_SECRET_KEY"]
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def revisions() -> tuple[str, dict[str, str]]:
    sts = get("statefulset", RELEASE)
    return sts["status"]["updateRevision"], {
        name: pod["metadata"]["labels"]["controller-revision-hash"] for name, pod in pods().items()
    }


@pytest.fixture(scope="module")
def installed() -> Session:
    t = session()
    namespace_create(t, NAMESPACE)
    t.helm(*INSTALL)
    wait_ready()
    return t


def test_install_gives_the_kustomize_names_in_its_own_namespace(installed):
    t = installed
    output = t.kubectl("get", "po,sts,svc,pvc,cm,secret,sa,pdb,networkpolicy")
    t.save("install")
    assert ready_pods() == PODS
    claims = get("pvc")["items"]
    assert sorted(c["metadata"]["name"] for c in claims if c["status"]["phase"] == "Bound") == [
        f"data-{pod}" for pod in PODS
    ]
    for name in ("statefulset.apps/app-python ", "service/app-python ",
                 "service/app-python-headless ", "configmap/app-python ", "secret/app-python ",
                 "serviceaccount/app-python ", "poddisruptionbudget.policy/app-python ",
                 "networkpolicy.networking.k8s.io/app-python "):  # fmt: skip
        assert name in output, name
    service = get("service", RELEASE)["spec"]
    assert [port["port"] for port in service["ports"]] == [80]


def test_30_visits_through_the_service_add_up_to_30_across_the_pods(installed):
    t = session()
    before = counts(t)
    t.note("30 visits to the app-python Service, sent from inside the cluster")
    visit = 'import urllib.request as u\nfor _ in range(30): u.urlopen("http://app-python/").read()'
    t.kubectl("exec", "app-python-0", "--", "python", "-c", visit)
    after = counts(t)
    t.save("visits")
    received = {pod: after[pod] - before[pod] for pod in PODS}
    assert sum(received.values()) == 30, received
    assert sum(1 for n in received.values() if n > 0) >= 2, received


def test_helm_test_passes_and_counts_nothing(installed):
    t = session()
    before = counts(session())
    result = t.helm("test", RELEASE, "-n", NAMESPACE, "--logs")
    after = counts(t)
    t.save("test")
    assert "ok: every pod answers through http://app-python:80" in result.stdout
    assert after == before


def test_an_immutable_field_change_fails_with_what_to_do(installed):
    t = session()
    generation = get("statefulset", RELEASE)["metadata"]["generation"]
    for change in ("podManagementPolicy=OrderedReady", "persistence.size=2Gi"):
        result = t.helm(*INSTALL, "--set", change, check=False)
        assert result.returncode != 0
        assert "immutable field" in result.stderr, result.stderr
        assert f"kubectl delete statefulset app-python -n {NAMESPACE} --cascade=orphan" in (
            result.stderr
        )
    policy = 'jsonpath={.spec.podManagementPolicy} generation {.metadata.generation}{"\\n"}'
    t.kubectl("get", "statefulset", RELEASE, "-o", policy)
    t.helm("history", RELEASE, "-n", NAMESPACE)
    t.save("immutable")
    sts = get("statefulset", RELEASE)
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["metadata"]["generation"] == generation


def test_a_canary_upgrade_replaces_only_pod_2_and_keeps_the_secret_key(installed):
    t = session()
    before = counts(session())
    key = secret_key_digest()
    uids = {name: pod["metadata"]["uid"] for name, pod in pods().items()}
    t.helm(*INSTALL, "--set", "updateStrategy.rollingUpdate.partition=2",
           "--set", "podAnnotations.e2e-release=canary")  # fmt: skip

    def canary_done() -> bool:
        sts = get("statefulset", RELEASE)
        update, on = revisions()
        return (
            sts["status"].get("observedGeneration") == sts["metadata"]["generation"]
            and on.get("app-python-2") == update
            and ready_pods() == PODS
        )

    until("the canary pod", canary_done)
    t.kubectl("get", "statefulset", RELEASE, "-o",
              "jsonpath={.status.currentRevision} {.status.updateRevision}{\"\\n\"}")  # fmt: skip
    t.kubectl("get", "pods", "-l", SELECTOR, "-L", "controller-revision-hash")
    t.note(f"the Secret's DJANGO_SECRET_KEY, sha256 before the upgrade: {key}, "
           f"after: {secret_key_digest()}")  # fmt: skip
    after = counts(t)
    t.save("canary")
    update, on = revisions()
    assert on["app-python-2"] == update
    assert on["app-python-0"] != update and on["app-python-1"] != update
    now = {name: pod["metadata"]["uid"] for name, pod in pods().items()}
    assert [pod for pod in PODS if now[pod] != uids[pod]] == ["app-python-2"]
    assert secret_key_digest() == key
    assert after == before


def test_uninstall_keeps_the_claims_and_a_new_install_finds_every_count(installed):
    t = session()
    before = counts(t)
    t.helm("uninstall", RELEASE, "-n", NAMESPACE)
    until("no pods", lambda: not pods())
    t.kubectl("get", "statefulset,pods,pvc")
    claims = get("pvc")["items"]
    assert sorted(c["metadata"]["name"] for c in claims if c["status"]["phase"] == "Bound") == [
        f"data-{pod}" for pod in PODS
    ]
    t.helm(*INSTALL)
    wait_ready()
    t.kubectl("get", "pods,pvc")
    after = counts(t)
    t.save("reinstall")
    assert after == before
