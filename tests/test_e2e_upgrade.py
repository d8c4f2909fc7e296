"""An installed previous release upgrades, canaries, rolls back and keeps every count, on the
project's real Kubernetes (`make e2e`), once with Helm and once with kustomize, each in its own
namespace.

The previous release (scripts/versions.env: PREVIOUS_VERSION at PREVIOUS_COMMIT) comes from a
git worktree of its commit: its image, built there and loaded into every node as
app-python:PREVIOUS_VERSION, its chart and its kustomize base. Then, while a client pod counts
visits through the Service all along:

1. upgrade to this checkout with `partition=2`: only app-python-2 runs the new version;
2. roll back (`helm rollback`; the old base applied again): app-python-2 runs the old version
   on the database the new one used, with every count;
3. upgrade and promote (partition 0): every pod on the new version, every count kept, the
   Secret's key unchanged.

Two clients visit through the Service all along (support/visitors.py: a new connection for
each visit, and kept-alive connections): no visit of either fails, and every visit answered 200
is counted. Each step saves its real output as docs/transcripts/e2e-upgrade-*.txt.
"""

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from support.cluster import Session, e2e_missing, namespace_create, until
from support.manifests import k8s_copy, overlay_with_component
from support.tools import APP_VERSION, ROOT
from support.upgrades import PREVIOUS_VERSION, previous_release
from support.visitors import ServiceVisitors, assert_every_visit_counted

pytestmark = pytest.mark.e2e

if reason := e2e_missing():
    pytest.skip(reason, allow_module_level=True)

PODS = ["app-python-0", "app-python-1", "app-python-2"]
SELECTOR = "app.kubernetes.io/name=app-python,app.kubernetes.io/instance=app-python"
OLD_IMAGE = f"app-python:{PREVIOUS_VERSION}"
NEW_IMAGE = f"app-python:{APP_VERSION}"
CLIENT = "upgrade-client"


@pytest.fixture(scope="module")
def previous(tmp_path_factory) -> Iterator[Path]:
    """The previous release's worktree, its image built and loaded into every node."""
    with previous_release(tmp_path_factory.mktemp("previous")) as old:
        # podman: e2e/cluster.sh loads the image from podman's store.
        build = ["make", "-C", str(old), "image", f"IMAGE={OLD_IMAGE}", "ENGINE=podman"]
        subprocess.run(build, check=True)
        subprocess.run(["bash", str(ROOT / "e2e" / "cluster.sh"), "load", OLD_IMAGE], check=True)
        yield old


class Upgrade:
    """One deployment in `namespace`, its client pod, and the readings every step compares."""

    def __init__(self, namespace: str, prefix: str, folder: Path) -> None:
        self.namespace = namespace
        self.prefix = prefix
        self.folder = folder  # for the client pod's manifest
        self.key = ""  # the Secret's key as installed, by its digest

    def session(self) -> Session:
        return Session(self.namespace, prefix=self.prefix)

    def get(self, *args: str) -> dict:
        return self.session().get(*args)

    def enough_volumes(self) -> None:
        """The cluster's volumes are made in advance (e2e/cluster.sh, PV_COUNT per node): fail
        at once, saying so, rather than wait for claims that cannot bind."""
        free = [v for v in self.get("pv")["items"] if v["status"]["phase"] == "Available"]
        assert len(free) >= len(PODS), (
            f"{len(free)} PersistentVolumes Available, {len(PODS)} needed for {self.namespace}:"
            " raise PV_COUNT in e2e/cluster.sh"
        )

    def client_start(self, image: str) -> None:
        """A pod of its own that sends the visits: it outlives every pod of the StatefulSet."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": CLIENT, "labels": {"app.kubernetes.io/name": CLIENT}},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "client", "image": image, "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", "import time; time.sleep(86400)"],
                    "securityContext": {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}},
                }],
            },
        }  # fmt: skip
        manifest = self.folder / "client.yaml"
        manifest.write_text(yaml.safe_dump(pod))
        self.session().kubectl("apply", "-f", str(manifest), record=False)
        until("the client pod", lambda: self.session().is_ready(CLIENT))

    def visit(self, t: Session, times: int) -> None:
        t.note(f"{times} visits to the app-python Service from the client pod")
        code = f"import urllib.request as u\nfor _ in range({times}):"
        t.python(CLIENT, code + " u.urlopen('http://app-python/').read()")

    def counting(self, t: Session) -> "Counting":
        return Counting(self, t)

    def pods(self) -> dict[str, dict]:
        return {pod["metadata"]["name"]: pod for pod in self.get("pods", "-l", SELECTOR)["items"]}

    def images(self) -> dict[str, str]:
        return {name: pod["spec"]["containers"][0]["image"] for name, pod in self.pods().items()}

    def ready(self) -> bool:
        return self.session().ready_pods(SELECTOR) == PODS

    def settled(self, images: dict[str, str]) -> bool:
        """Every pod ready on the image wanted for it, and the StatefulSet done with it."""
        sts = self.get("statefulset", "app-python")
        return (
            sts["status"].get("observedGeneration") == sts["metadata"]["generation"]
            and self.images() == images
            and self.ready()
        )

    def wait(self, images: dict[str, str]) -> None:
        until(f"the pods on {images}", lambda: self.settled(images), timeout=300)

    def counts(self, t: Session) -> dict[str, int]:
        return {pod: t.visits(pod) for pod in PODS}

    def versions(self, t: Session) -> None:
        """Each pod's version, as /metrics reports it (app_python_build_info)."""
        read = (
            "import urllib.request as u; print(next(line for line in"
            " u.urlopen('http://localhost:8000/metrics').read().decode().splitlines()"
            " if line.startswith('app_python_build_info')))"
        )
        for pod in PODS:
            t.python(pod, read)

    def uids(self) -> dict[str, str]:
        return {name: pod["metadata"]["uid"] for name, pod in self.pods().items()}

    def spread(self, t: Session, times: int = 60) -> dict[str, int]:
        """`times` visits through the Service: how many each pod counted."""
        before = self.counts(t.quiet())
        self.visit(t, times)
        after = self.counts(t)
        return {pod: after[pod] - before[pod] for pod in PODS}

    def secret_digest(self) -> str:
        """The key in the Secret the pods read (kustomize's name has a hash of its content)."""
        sts = self.get("statefulset", "app-python")["spec"]["template"]["spec"]
        sources = sts["containers"][0]["envFrom"]
        name = next(source["secretRef"]["name"] for source in sources if "secretRef" in source)
        key = self.get("secret", name)["data"]["DJANGO_SECRET_KEY"]
        return hashlib.sha256(key.encode()).hexdigest()[:16]


class Counting:
    """Both clients visiting through the Service while a step runs (a `with` block)."""

    def __init__(self, upgrade: Upgrade, t: Session) -> None:
        self.upgrade, self.t = upgrade, t

    def __enter__(self) -> "Counting":
        self.before = self.upgrade.counts(self.upgrade.session().quiet())
        self.uids = self.upgrade.uids()
        service = self.upgrade.get("service", "app-python")["spec"]["clusterIP"]
        self.visitors = ServiceVisitors(service, PODS).__enter__()
        until("20 answered visits", lambda: len(self.visitors.answered()) >= 20, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.visitors.__exit__()
        self.after = self.upgrade.counts(self.t)
        counted = sum(self.after.values()) - sum(self.before.values())
        self.t.note(f"{self.visitors.summary()}; the pods counted {counted} more")

    def replaced(self) -> list[str]:
        """The pods replaced during the block."""
        now = self.upgrade.uids()
        return [pod for pod in PODS if now[pod] != self.uids[pod]]

    def check(self) -> None:
        """No visit failed, each was counted, and every pod replaced closed a kept-alive
        connection between visits (the client holds one to every pod)."""
        assert_every_visit_counted(self.visitors, self.before, self.after)
        assert not self.visitors.failed(), self.visitors.summary()
        assert self.visitors.answered("new") and self.visitors.answered("kept")
        assert self.visitors.closed_by_server >= len(self.replaced()), self.visitors.summary()


def all_on(image: str) -> dict[str, str]:
    return dict.fromkeys(PODS, image)


CANARY = {**all_on(OLD_IMAGE), "app-python-2": NEW_IMAGE}


def installed(upgrade: Upgrade, t: Session) -> Upgrade:
    """After the previous release's install: its pods, the client, 30 visits, the key."""
    upgrade.wait(all_on(OLD_IMAGE))
    upgrade.client_start(NEW_IMAGE)
    upgrade.visit(t, 30)
    assert sum(upgrade.counts(t).values()) == 30
    upgrade.key = upgrade.secret_digest()
    t.kubectl("get", "pods", "-l", SELECTOR, "-o", "wide")
    upgrade.versions(t)
    t.save("install")
    return upgrade


def step(
    upgrade: Upgrade,
    name: str,
    change: Callable[[Session], object],
    *,
    images: dict[str, str],
    replaced: list[str],
) -> None:
    """`change` made while the client counts, until the pods run `images`; then every pod's
    revision and version, a spread of visits, the Secret's key, the transcript, the checks."""
    t = upgrade.session()
    with upgrade.counting(t) as counting:
        change(t)
        upgrade.wait(images)
    t.kubectl("get", "pods", "-l", SELECTOR, "-L", "controller-revision-hash")
    upgrade.versions(t)
    spread = upgrade.spread(t)
    t.note(f"the Secret's DJANGO_SECRET_KEY, sha256: {upgrade.secret_digest()}")
    t.save(name)
    counting.check()
    assert counting.replaced() == replaced
    for image in set(images.values()):  # through the Service, every version running counts
        assert sum(spread[pod] for pod in PODS if images[pod] == image) > 0, (image, spread)
    assert upgrade.secret_digest() == upgrade.key


@pytest.fixture(scope="module")
def helm_release(previous, tmp_path_factory) -> Iterator[Upgrade]:
    upgrade = Upgrade("app-python-upgrade-helm", "upgrade-helm-", tmp_path_factory.mktemp("helm"))
    upgrade.enough_volumes()
    t = upgrade.session()
    chart = previous / "k8s" / "chart"
    namespace_create(t, upgrade.namespace)
    t.helm("upgrade", "--install", "app-python", str(chart), "-n", upgrade.namespace,
           "-f", str(chart / "values-local.yaml"))  # fmt: skip
    t.helm("list", "-n", upgrade.namespace)
    yield installed(upgrade, t)
    gone(upgrade)


def helm(upgrade: Upgrade, *args: str) -> Callable[[Session], object]:
    """A helm command on the release, then its history, as a step's change."""

    def change(t: Session) -> None:
        t.helm(*args, "-n", upgrade.namespace)
        t.helm("history", "app-python", "-n", upgrade.namespace)

    return change


UPGRADE = ("upgrade", "app-python", "k8s/chart", "-f", "k8s/chart/values-local.yaml")


def test_helm_a_canary_of_this_version_counts_beside_the_previous_release(helm_release):
    canary = helm(helm_release, *UPGRADE, "--set", "updateStrategy.rollingUpdate.partition=2")
    step(helm_release, "canary", canary, images=CANARY, replaced=["app-python-2"])


def test_helm_rollback_puts_the_previous_release_back_on_pod_2_with_its_count(helm_release):
    # Every count kept (counting.check): app-python-2 too, with what it counted on the new one.
    rollback = helm(helm_release, "rollback", "app-python", "1")
    step(helm_release, "rollback", rollback, images=all_on(OLD_IMAGE), replaced=["app-python-2"])


def test_helm_upgrade_and_promote_keeps_every_count_and_the_key(helm_release):
    promote = helm(helm_release, *UPGRADE)
    step(helm_release, "promote", promote, images=all_on(NEW_IMAGE), replaced=PODS)


@pytest.fixture(scope="module")
def kustomize_trees(previous, tmp_path_factory) -> dict[str, Path]:
    """The previous release's k8s/ and this checkout's, each with the same secret.env (so the
    generated Secret keeps its name and key) and a local-canary overlay."""
    secret = f"DJANGO_SECRET_KEY=e2e-{os.urandom(16).hex()}\nVISITS_ADMIN_PASSWORD_HASH=\n"
    trees = {}
    for name, source in {"old": previous / "k8s", "new": ROOT / "k8s"}.items():
        tree = k8s_copy(tmp_path_factory.mktemp(f"k8s-{name}"), secret, source=source)
        overlay_with_component(tree, "local", "canary")
        trees[name] = tree
    return trees


@pytest.fixture(scope="module")
def kustomize_deployment(kustomize_trees, tmp_path_factory) -> Iterator[Upgrade]:
    folder = tmp_path_factory.mktemp("kustomize")
    upgrade = Upgrade("app-python-upgrade-kustomize", "upgrade-kustomize-", folder)
    upgrade.enough_volumes()
    t = upgrade.session()
    namespace_create(t.quiet(), upgrade.namespace)
    t.kubectl("apply", "-k", str(kustomize_trees["old"] / "overlays" / "local"))
    yield installed(upgrade, t)
    gone(upgrade)


def gone(upgrade: Upgrade) -> None:
    """The namespace deleted once its tests are done: its client pod has no controller, and
    `kubectl drain` of its node (tests/test_e2e_nodes.py) refuses such a pod."""
    Session().kubectl("delete", "namespace", upgrade.namespace, "--wait=false", record=False)


def apply(tree: Path, overlay: str) -> Callable[[Session], object]:
    return lambda t: t.kubectl("apply", "-k", str(tree / "overlays" / overlay))


def test_kustomize_a_canary_of_this_version_counts_beside_the_previous_release(
    kustomize_deployment, kustomize_trees
):
    canary = apply(kustomize_trees["new"], "local-canary")
    step(kustomize_deployment, "canary", canary, images=CANARY, replaced=["app-python-2"])


def test_kustomize_the_previous_base_applied_again_rolls_pod_2_back(
    kustomize_deployment, kustomize_trees
):
    rollback = apply(kustomize_trees["old"], "local-canary")
    step(kustomize_deployment, "rollback", rollback, images=all_on(OLD_IMAGE),
         replaced=["app-python-2"])  # fmt: skip


def test_kustomize_the_new_base_promoted_keeps_every_count_and_the_key(
    kustomize_deployment, kustomize_trees
):
    promote = apply(kustomize_trees["new"], "local")
    step(kustomize_deployment, "promote", promote, images=all_on(NEW_IMAGE), replaced=PODS)
