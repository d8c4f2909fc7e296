"""The Kubernetes manifests, proven without a cluster: every render a user deploys (each
kustomization and the chart with the same values: support.manifests.RENDERS) validated against
the API schemas, checked by checkov and yamllint, and tested for what no validator sees."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from django.urls import resolve

from counter.models import VisitCounter
from support.manifests import (
    CHECKOV_CONFIG,
    COMPONENTS,
    KUBERNETES_VERSIONS,
    RENDERS,
    checkov,
    container,
    kustomize,
    overlay_with_component,
    parse,
    render_missing,
    statefulset,
)
from support.tools import APP_VERSION, ROOT

pytestmark = pytest.mark.manifests

# Where each check that .checkov.yaml skips fails without the skip: (kinds, renders), None for
# any. The reasons are in .checkov.yaml; the chart adds the helm test Pod.
CHECKOV_SKIPS_FAIL_ON = {
    "CKV_K8S_21": (None, None),
    "CKV_K8S_43": ({"StatefulSet", "Pod"}, None),
    "CKV_K8S_35": ({"StatefulSet"}, None),
    "CKV_K8S_15": ({"StatefulSet", "Pod"}, {"kustomize:local", "helm:local"}),
    "CKV_K8S_8": ({"Pod"}, None),
    "CKV_K8S_9": ({"Pod"}, None),
}


def objects(rendered: dict[str, Path], name: str) -> dict[tuple[str, str], dict]:
    if name not in rendered:
        pytest.skip(render_missing(name))
    return parse(rendered[name].read_text())


def by_kind(objs: dict, kind: str) -> list[dict]:
    return [obj for (k, _), obj in objs.items() if k == kind]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


@pytest.mark.parametrize("name", RENDERS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_validates_strictly_against_the_api_schema(rendered, checker, name, version):
    objects(rendered, name)  # skips when the render's tool is missing
    result = subprocess.run(
        [checker("kubernetes-validate"), "--strict", "--quiet", "-k", version, rendered[name]],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def checkov_skips() -> dict[str, str]:
    """.checkov.yaml's skipped checks, each with its reason: the comment above it (or above the
    check before it, for two with one reason)."""
    text = CHECKOV_CONFIG.read_text()
    reasons, comment = {}, []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            comment.append(line.lstrip("# "))
        elif line.startswith("- "):
            reasons[line[2:]] = " ".join(comment) or list(reasons.values())[-1]
            comment = []
        else:
            comment = []
    assert list(reasons) == yaml.safe_load(text)["skip-check"]
    return reasons


@pytest.mark.parametrize("name", RENDERS)
def test_checkov_fails_nothing_and_ships_no_skip_annotation(rendered, checker, name):
    objs = objects(rendered, name)
    report = checkov(checker("checkov"), [rendered[name]], CHECKOV_CONFIG)
    assert report["summary"]["failed"] == 0, json.dumps(report["results"]["failed_checks"])
    assert report["summary"]["passed"] > 50
    # Skips live in .checkov.yaml, not in annotations on the users' objects.
    for obj in objs.values():
        assert "checkov.io" not in json.dumps(obj.get("metadata", {})), obj["metadata"]["name"]


def test_every_checkov_skip_has_a_reason_and_fails_only_where_it_says(rendered, checker, tmp_path):
    """Without .checkov.yaml, checkov fails only its skipped checks, each on the objects its
    reason names; every skip fails somewhere (none is stale) and says why."""
    skips = checkov_skips()
    assert set(skips) == set(CHECKOV_SKIPS_FAIL_ON)
    for check, reason in skips.items():
        assert len(reason) > 40, check
    no_skips = tmp_path / "no-skips.yaml"
    no_skips.write_text("{}\n")
    report = checkov(checker("checkov"), list(rendered.values()), no_skips)
    names = {str(path): name for name, path in rendered.items()}
    failed = set()
    for result in report["results"]["failed_checks"]:
        check, kind = result["check_id"], result["resource"].split(".")[0]
        render = names[result["file_abs_path"]]
        assert check in skips, (check, kind, render)
        kinds, renders = CHECKOV_SKIPS_FAIL_ON[check]
        assert kinds is None or kind in kinds, (check, kind, render)
        assert renders is None or render in renders, (check, kind, render)
        failed.add(check)
    present = {kind for name in rendered for kind, _ in objects(rendered, name)}
    assert failed == {
        check
        for check, (kinds, renders) in CHECKOV_SKIPS_FAIL_ON.items()
        if (kinds is None or kinds & present) and (renders is None or renders & set(rendered))
    }  # the kustomize renders have no Pod: CKV_K8S_8 and 9 fail on the chart's test Pod


def test_yamllint_is_clean(checker):
    files = ["k8s", ".yamllint.yaml", ".checkov.yaml"]
    subprocess.run([checker("yamllint"), "--strict", *files], cwd=ROOT, check=True)


def test_the_secret_env_file_is_never_committed():
    ignored = subprocess.run(["git", "check-ignore", "-q", "k8s/base/secret.env"], cwd=ROOT)
    assert ignored.returncode == 0


@pytest.mark.parametrize("name", RENDERS)
def test_statefulset_is_parallel_with_a_headless_governing_service(rendered, name):
    objs = objects(rendered, name)
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


STRATEGIES = {
    "base": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
    "local": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
    "canary": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
    "ondelete": {"type": "OnDelete"},
}


@pytest.mark.parametrize("name", RENDERS)
def test_update_strategy(rendered, name):
    strategy = STRATEGIES[name.split(":")[1]]
    sts = statefulset(objects(rendered, name))["spec"]
    assert sts["updateStrategy"] == strategy  # OnDelete carries no rollingUpdate left behind
    partition = sts["updateStrategy"].get("rollingUpdate", {}).get("partition", 0)
    assert 0 <= partition <= sts["replicas"]


@pytest.mark.parametrize("name", RENDERS)
def test_pods_spread_over_nodes_yet_all_run_on_one(rendered, name):
    sts = statefulset(objects(rendered, name))["spec"]
    (spread,) = sts["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["maxSkew"] == 1
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # a single node still runs all three
    # Exactly this StatefulSet's pods, whatever revision they run.
    assert spread["labelSelector"] == {"matchLabels": sts["selector"]["matchLabels"]}


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_component_on_any_overlay_changes_only_the_update_strategy(k8s_tree, component):
    """The e2e's composition: the local overlay with a component, equal to the local overlay
    but for the strategy, which equals the component's on the base."""

    def render(path: Path) -> dict:
        return parse(kustomize(path))

    composed = render(overlay_with_component(k8s_tree, "local", component))
    local = render(k8s_tree / "overlays" / "local")
    strategy = statefulset(render(k8s_tree / "overlays" / component))["spec"]["updateStrategy"]
    assert statefulset(composed)["spec"].pop("updateStrategy") == strategy
    assert strategy != statefulset(local)["spec"].pop("updateStrategy")
    assert composed == local


@pytest.mark.parametrize("name", RENDERS)
def test_volumes_ports_and_services_line_up(rendered, name):
    objs = objects(rendered, name)
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
    assert client.get("type", "ClusterIP") == "ClusterIP"  # the default, not restated
    assert [(p["port"], p["targetPort"]) for p in client["ports"]] == [(80, "http")]


@pytest.mark.parametrize("name", RENDERS)
def test_pdb_and_networkpolicy_select_the_pods_and_admit_only_the_app_port(rendered, name):
    objs = objects(rendered, name)
    labels = statefulset(objs)["spec"]["template"]["metadata"]["labels"]
    (pdb,) = by_kind(objs, "PodDisruptionBudget")
    assert matches(pdb["spec"]["selector"]["matchLabels"], labels)
    # One pod at a time, whatever the replica count: a release of one replica stays drainable
    # (minAvailable: 1 would refuse every eviction of its only pod).
    assert pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"]
    policy = objs[("NetworkPolicy", "app-python")]  # the chart adds one for its test pod
    assert matches(policy["spec"]["podSelector"]["matchLabels"], labels)
    # The defaults (networkPolicy.allowExternal, allowExternalEgress): the app's port from any
    # pod, egress anywhere; no other port (tests/test_chart.py closes it).
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"] == [{}]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http"}]}]  # TCP, from anywhere


@pytest.mark.parametrize("name", RENDERS)
def test_pod_runs_restricted_as_the_image_user(rendered, name):
    objs = objects(rendered, name)
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
    # Kubernetes' default grace period, 30 s, outlasts gunicorn's graceful shutdown.
    assert pod.get("terminationGracePeriodSeconds", 30) > int(graceful.group(1))


@pytest.mark.parametrize("name", RENDERS)
def test_image_is_a_name_and_tag_matching_the_app_version(rendered, name):
    app = container(objects(rendered, name))
    assert app["image"] == f"app-python:{APP_VERSION}"
    # .checkov.yaml skips CKV_K8S_15 (pull policy Always) for the local image only.
    assert app["imagePullPolicy"] == ("IfNotPresent" if name.endswith(":local") else "Always")


def test_mount_path_and_port_are_the_images(rendered):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "VISITS_DATA_DIR=/app/data" in dockerfile
    assert "EXPOSE 8000" in dockerfile
    assert '"0.0.0.0:8000"' in (ROOT / "gunicorn.conf.py").read_text()


def probes(objs: dict) -> dict[str, dict]:
    app = container(objs)
    return {kind: app[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}


@pytest.mark.parametrize("name", RENDERS)
def test_probe_paths_are_app_urls_that_count_nothing(rendered, name, client, db):
    VisitCounter.objects.create(pk=1, total=0)
    objs = objects(rendered, name)
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


@pytest.mark.parametrize("name", ["kustomize:base", "helm:base"])
def test_every_environment_variable_is_read_by_the_app(rendered, name):
    objs = objects(rendered, name)
    app = container(objs)
    names = {env["name"] for env in app.get("env", [])}
    for source in app["envFrom"]:
        kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else (
            "Secret", source["secretRef"])  # fmt: skip
        names |= set(objs[(kind, ref["name"])]["data"])
    code = (ROOT / "visits_site" / "settings.py").read_text()
    code += (ROOT / "gunicorn.conf.py").read_text()
    # A variable that only goes into another's value ($(NAME), expanded by Kubernetes).
    expanded = {name for name in names if f"$({name})" in str(app.get("env", []))}
    for name in names - expanded:
        assert f'"{name}"' in code, f"{name} is set in the manifests but never read by the app"
    assert expanded <= {"POD_IP", "POD_NAMESPACE"}, expanded
    assert {"POD_NAME", "DJANGO_SECRET_KEY", "VISITS_ADMIN_PASSWORD_HASH"} <= names
    # Only what the deployment itself knows: the app's defaults stay in the app, one place.
    # The worker count follows the pod's CPU limit, which only the deployment knows.
    assert set(objs[("ConfigMap", "app-python")]["data"]) == {
        "VISITS_ADMIN_USERNAME",
        "VISITS_PEER_SERVICE",
        "WEB_CONCURRENCY",
    }
    pod_name = next(env for env in app["env"] if env["name"] == "POD_NAME")
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
