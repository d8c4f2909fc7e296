"""The Kubernetes manifests, proven without a cluster: rendered by kustomize, validated against
the API schemas, checked by checkov and yamllint, and tested for what no validator sees."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.urls import resolve

from counter.models import VisitCounter
from tests.conftest import APP_VERSION, ROOT

pytestmark = pytest.mark.manifests

OVERLAYS = ["base", "overlays/ondelete", "overlays/canary", "overlays/local"]
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]  # the oldest we support, the newest bundled
KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="session")
def k8s_tree(tmp_path_factory) -> Path:
    """A copy of k8s/ with a throwaway secret.env: the real one is never committed."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (it bundles kustomize): install kubectl")
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(ROOT / "k8s", tree, ignore=shutil.ignore_patterns("secret.env"))
    (tree / "base" / "secret.env").write_text(
        "DJANGO_SECRET_KEY=render-test-key\nVISITS_ADMIN_PASSWORD_HASH=pbkdf2_sha256$1$s$h\n"
    )
    return tree


@pytest.fixture(scope="session")
def rendered(k8s_tree) -> dict[str, Path]:
    files = {}
    for overlay in OVERLAYS:
        output = subprocess.run(
            [KUBECTL, "kustomize", str(k8s_tree / overlay)], capture_output=True, text=True
        )
        assert output.returncode == 0, f"{overlay}: {output.stderr}"
        path = k8s_tree.parent / f"{overlay.replace('/', '-')}.yaml"
        path.write_text(output.stdout)
        files[overlay] = path
    return files


def objects(rendered: dict[str, Path], overlay: str) -> dict[tuple[str, str], dict]:
    docs = yaml.safe_load_all(rendered[overlay].read_text())
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def by_kind(objs: dict, kind: str) -> list[dict]:
    return [obj for (k, _), obj in objs.items() if k == kind]


def statefulset(objs: dict) -> dict:
    return objs[("StatefulSet", "app-python")]


def container(objs: dict) -> dict:
    return statefulset(objs)["spec"]["template"]["spec"]["containers"][0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_validates_strictly_against_the_api_schema(rendered, checker, overlay, version):
    result = subprocess.run(
        [checker("kubernetes-validate"), "--strict", "--quiet", "-k", version, rendered[overlay]],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_fails_nothing_and_every_skip_has_a_reason(rendered, checker, overlay):
    result = subprocess.run(
        [checker("checkov"), "-f", rendered[overlay], "--framework", "kubernetes",
         "--skip-download", "--compact", "--output", "json"],
        capture_output=True, text=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert report["summary"]["failed"] == 0, result.stdout
    assert report["summary"]["passed"] > 50
    assert report["summary"]["skipped"] == len(report["results"]["skipped_checks"]) > 0
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, skipped["check_id"]


def test_yamllint_is_clean(checker):
    subprocess.run([checker("yamllint"), "--strict", "k8s", ".yamllint.yaml"], cwd=ROOT, check=True)


def test_the_secret_env_file_is_never_committed():
    ignored = subprocess.run(["git", "check-ignore", "-q", "k8s/base/secret.env"], cwd=ROOT)
    assert ignored.returncode == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_statefulset_is_parallel_with_a_headless_governing_service(rendered, overlay):
    objs = objects(rendered, overlay)
    sts = statefulset(objs)["spec"]
    assert sts["podManagementPolicy"] == "Parallel"
    assert sts["replicas"] == 3
    headless = objs[("Service", sts["serviceName"])]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    template_labels = sts["template"]["metadata"]["labels"]
    assert matches(headless["selector"], template_labels)
    assert matches(sts["selector"]["matchLabels"], template_labels)
    # Selectors are immutable: only the two stable labels, never a version.
    assert set(sts["selector"]["matchLabels"]) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
    }
    assert sts["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }


@pytest.mark.parametrize(
    ("overlay", "strategy"),
    [
        ("base", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        ("overlays/local", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        ("overlays/canary", {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}),
        ("overlays/ondelete", {"type": "OnDelete"}),
    ],
)
def test_update_strategy(rendered, overlay, strategy):
    sts = statefulset(objects(rendered, overlay))["spec"]
    assert sts["updateStrategy"] == strategy  # OnDelete carries no rollingUpdate left behind
    partition = sts["updateStrategy"].get("rollingUpdate", {}).get("partition", 0)
    assert 0 <= partition <= sts["replicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_volumes_ports_and_services_line_up(rendered, overlay):
    objs = objects(rendered, overlay)
    sts = statefulset(objs)["spec"]
    pod = sts["template"]["spec"]
    claims = {claim["metadata"]["name"]: claim["spec"] for claim in sts["volumeClaimTemplates"]}
    volumes = {volume["name"] for volume in pod.get("volumes", [])} | set(claims)
    app = container(objs)
    mounts = {mount["mountPath"]: mount["name"] for mount in app["volumeMounts"]}
    assert set(mounts.values()) <= volumes
    assert mounts["/app/data"] == "data"
    assert claims["data"]["accessModes"] == ["ReadWriteOnce"]
    assert claims["data"]["resources"]["requests"]["storage"] == "1Gi"
    ports = {port["name"]: port["containerPort"] for port in app["ports"]}
    assert ports == {"http": 8000}
    for service in by_kind(objs, "Service"):
        assert matches(service["spec"]["selector"], sts["template"]["metadata"]["labels"])
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    client = objs[("Service", "app-python")]["spec"]
    assert client["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in client["ports"]] == [(80, "http")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdb_and_networkpolicy_select_the_pods_and_admit_only_the_app_port(rendered, overlay):
    objs = objects(rendered, overlay)
    labels = statefulset(objs)["spec"]["template"]["metadata"]["labels"]
    (pdb,) = by_kind(objs, "PodDisruptionBudget")
    assert matches(pdb["spec"]["selector"]["matchLabels"], labels)
    policy = objs[("NetworkPolicy", "app-python")]  # the chart adds one for its test pod
    assert matches(policy["spec"]["podSelector"]["matchLabels"], labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = [port for rule in policy["spec"]["ingress"] for port in rule["ports"]]
    assert ports == [{"protocol": "TCP", "port": "http"}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_runs_restricted_as_the_image_user(rendered, overlay):
    objs = objects(rendered, overlay)
    pod = statefulset(objs)["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (10001,) * 3
    assert security["runAsNonRoot"] is True
    assert security["fsGroupChangePolicy"] == "OnRootMismatch"
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    app = container(objs)
    assert app["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "/tmp" in {mount["mountPath"] for mount in app["volumeMounts"]}
    assert pod["automountServiceAccountToken"] is False
    account = objs[("ServiceAccount", pod["serviceAccountName"])]
    assert account["automountServiceAccountToken"] is False
    assert {"requests", "limits"} <= set(app["resources"])
    graceful = re.search(
        r"^graceful_timeout = (\d+)", (ROOT / "gunicorn.conf.py").read_text(), re.M
    )
    assert pod["terminationGracePeriodSeconds"] > int(graceful.group(1))


def test_image_is_a_name_and_tag_matching_the_app_version(rendered):
    for overlay in OVERLAYS:
        assert container(objects(rendered, overlay))["image"] == f"app-python:{APP_VERSION}"
    assert container(objects(rendered, "overlays/local"))["imagePullPolicy"] == "IfNotPresent"


def test_mount_path_and_port_are_the_images(rendered):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "VISITS_DATA_DIR=/app/data" in dockerfile
    assert "EXPOSE 8000" in dockerfile
    assert '"0.0.0.0:8000"' in (ROOT / "gunicorn.conf.py").read_text()


def probes(objs: dict) -> dict[str, dict]:
    app = container(objs)
    return {kind: app[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probe_paths_are_app_urls_that_count_nothing(rendered, overlay, client, db):
    VisitCounter.objects.create(pk=1, total=0)
    objs = objects(rendered, overlay)
    found = probes(objs)
    assert found["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert found["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in found.values():
        get = probe["httpGet"]
        assert get["port"] == "http"
        assert resolve(get["path"]).url_name in {"healthz", "readyz"}
        headers = {header["name"]: header["value"] for header in get.get("httpHeaders", [])}
        response = client.get(get["path"], headers=headers)
        assert response.status_code == 200, (get, response.content)
    assert VisitCounter.objects.get().total == 0


def test_every_environment_variable_is_read_by_the_app(rendered):
    objs = objects(rendered, "base")
    app = container(objs)
    names = {env["name"] for env in app.get("env", [])}
    for source in app["envFrom"]:
        kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else (
            "Secret", source["secretRef"])  # fmt: skip
        names |= set(objs[(kind, ref["name"])]["data"])
    code = (ROOT / "visits_site" / "settings.py").read_text()
    code += (ROOT / "gunicorn.conf.py").read_text()
    for name in names:
        assert f'"{name}"' in code, f"{name} is set in the manifests but never read by the app"
    assert {"POD_NAME", "DJANGO_SECRET_KEY", "VISITS_ADMIN_PASSWORD_HASH"} <= names
    pod_name = next(env for env in app["env"] if env["name"] == "POD_NAME")
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
