"""The Helm chart (k8s/chart), proven without a cluster: helm lint, its values and their
schema's refusals, backup's render, and the kustomize base kept equal to the chart's render
(one source of truth). The checks every render must pass, kustomize's and the chart's, are
tests/test_manifests.py's."""

import base64
import json
import os
import re
import subprocess

import pytest
import yaml
from django.urls import resolve

from support.manifests import (
    CHART,
    CHECKOV_CONFIG,
    KUBERNETES_VERSIONS,
    VARIANTS,
    checkov,
    container,
    parse,
    statefulset,
)
from support.manifests import helm as run_helm
from support.tools import APP_VERSION, ROOT, VERSIONS, helm_binary

pytestmark = pytest.mark.manifests


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if helm_binary() is None:
        pytest.skip("helm is not installed: `make helm` builds it (scripts/helm.sh)")
    return run_helm(*args, check=check)


def template(*args: str, release: str = "app-python") -> dict[tuple[str, str], dict]:
    return parse(helm("template", release, str(CHART), *args).stdout)


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_is_strictly_clean(variant):
    result = helm("lint", "--strict", str(CHART), *VARIANTS[variant][1])
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_the_kustomize_base_is_the_charts_render():
    """One source of truth: edit k8s/chart, then `make k8s-base` renders the kustomize base."""
    helm("version")  # skips when helm is missing
    render = subprocess.run(
        ["bash", "scripts/helm.sh", "kustomize-base"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "HELM": helm_binary()},
    )  # fmt: skip
    assert render.returncode == 0, render.stderr
    checked_in = (ROOT / "k8s" / "base" / "app-python.yaml").read_text()
    assert checked_in == render.stdout, "k8s/base/app-python.yaml is stale: run `make k8s-base`"
    objs = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(checked_in) if d}
    assert objs == {
        ("ServiceAccount", "app-python"),
        ("ConfigMap", "app-python"),
        ("Service", "app-python"),
        ("Service", "app-python-headless"),
        ("StatefulSet", "app-python"),
        ("PodDisruptionBudget", "app-python"),
        ("NetworkPolicy", "app-python"),
    }  # the Secret is kustomize's (secretGenerator), the test hook Helm's


def test_the_chart_is_the_apps_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == APP_VERSION
    assert chart["kubeVersion"] == ">=1.30.0-0"
    assert min(KUBERNETES_VERSIONS) == "1.30.0"  # the oldest the renders are validated against
    too_old = helm("template", "app-python", str(CHART), "--kube-version", "1.29.9", check=False)
    assert too_old.returncode != 0 and "kubeVersion" in too_old.stderr, too_old.stderr


def test_the_secret_key_is_generated_and_the_hash_passed_through():
    first, second = (template()[("Secret", "app-python")]["data"] for _ in range(2))
    key = base64.b64decode(first["DJANGO_SECRET_KEY"]).decode()
    assert len(key) == 50 and key.isalnum()
    assert first["DJANGO_SECRET_KEY"] != second["DJANGO_SECRET_KEY"]  # random, not built in
    assert first["VISITS_ADMIN_PASSWORD_HASH"] == ""
    objs = template("--set-string", "admin.passwordHash=pbkdf2_sha256$1$salt$hash")
    secret = objs[("Secret", "app-python")]["data"]
    assert base64.b64decode(secret["VISITS_ADMIN_PASSWORD_HASH"]) == b"pbkdf2_sha256$1$salt$hash"


def test_an_existing_secret_replaces_the_charts():
    objs = template("--set", "existingSecret=visits-secret")
    assert not [name for kind, name in objs if kind == "Secret"]
    assert {"secretRef": {"name": "visits-secret"}} in container(objs)["envFrom"]
    assert "checksum/secret" not in statefulset(objs)["spec"]["template"]["metadata"]["annotations"]


def test_a_changed_setting_or_secret_rolls_the_pods():
    def checksums(*args: str) -> dict[str, str]:
        annotations = statefulset(template(*args))["spec"]["template"]["metadata"]["annotations"]
        return {k: v for k, v in annotations.items() if k.startswith("checksum/")}

    fixed = ["--set", "existingSecret=s"]
    assert checksums(*fixed) == checksums(*fixed)
    assert checksums(*fixed) != checksums(*fixed, "--set", "config.WEB_CONCURRENCY=4")
    assert set(checksums()) == {"checksum/config", "checksum/secret"}
    # The generated key, drawn anew in each render (lookup keeps the live one on a cluster),
    # rolls nothing: the first upgrade after an install did, every pod.
    assert checksums() == checksums()
    admin = ["--set", "admin.passwordHash=pbkdf2_sha256$1$s$h"]
    assert checksums()["checksum/secret"] != checksums(*admin)["checksum/secret"]


def allowed_hosts(app: dict) -> list[str]:
    """The app container's DJANGO_ALLOWED_HOSTS, as the app reads it (comma-separated, spaces
    ignored)."""
    value = next(e["value"] for e in app["env"] if e["name"] == "DJANGO_ALLOWED_HOSTS")
    return [host.strip() for host in value.split(",") if host.strip()]


@pytest.mark.parametrize(
    ("release", "fullname"),
    [("app-python", "app-python"), ("staging-app-python", "staging-app-python"),
     ("visits", "visits-app-python")],
)  # fmt: skip
def test_names_follow_the_release(release, fullname):
    objs = template(release=release)
    headless = f"{fullname}-headless"
    assert {name for _, name in objs} == {fullname, headless, f"{fullname}-test"}
    sts = objs[("StatefulSet", fullname)]["spec"]
    assert sts["serviceName"] == headless
    assert sts["template"]["spec"]["serviceAccountName"] == fullname
    assert sts["selector"]["matchLabels"]["app.kubernetes.io/instance"] == release
    config = objs[("ConfigMap", fullname)]["data"]
    assert config["VISITS_PEER_SERVICE"] == headless
    hosts = allowed_hosts(sts["template"]["spec"]["containers"][0])
    assert {fullname, f".{headless}", "localhost"} <= set(hosts)


def test_config_values_reach_the_configmap_and_win_over_the_charts():
    objs = template(
        "--set", "config.WEB_CONCURRENCY=4", "--set", "admin.username=root",
        "--set", "config.DJANGO_ALLOWED_HOSTS=visits.example.com",
        "--set", "config.VISITS_PEER_SERVICE=visits-peers",
    )  # fmt: skip
    config = objs[("ConfigMap", "app-python")]["data"]
    assert config["WEB_CONCURRENCY"] == "4"
    assert config["VISITS_ADMIN_USERNAME"] == "root"
    assert config["DJANGO_ALLOWED_HOSTS"] == "visits.example.com"
    assert config["VISITS_PEER_SERVICE"] == "visits-peers"
    assert allowed_hosts(container(objs)) == ["$(POD_IP)", "visits.example.com"]  # the pod's


def test_topology_spread_values_get_the_pods_selector_unless_they_name_one():
    def spread(*args: str) -> list[dict]:
        return statefulset(template(*args))["spec"]["template"]["spec"].get(
            "topologySpreadConstraints", []
        )

    selector = {"matchLabels": {"app.kubernetes.io/name": "app-python",
                                "app.kubernetes.io/instance": "app-python"}}  # fmt: skip
    zone = ["topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
            "topologySpreadConstraints[0].maxSkew=2",
            "topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule"]  # fmt: skip
    assert spread("--set", ",".join(zone)) == [
        {"topologyKey": "topology.kubernetes.io/zone", "maxSkew": 2,
         "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector}
    ]  # fmt: skip
    own = ",".join([*zone, "topologySpreadConstraints[0].labelSelector.matchLabels.tier=web"])
    assert spread("--set", own)[0]["labelSelector"] == {"matchLabels": {"tier": "web"}}
    assert spread("--set", "topologySpreadConstraints=null") == []


def test_persistence_values_reach_the_claim_template():
    objs = template(
        "--set", "persistence.size=5Gi", "--set", "persistence.storageClass=fast",
        "--set", "persistence.accessModes={ReadWriteOncePod}",
    )  # fmt: skip
    (claim,) = statefulset(objs)["spec"]["volumeClaimTemplates"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOncePod"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "5Gi"}},
    }
    (claim,) = statefulset(template("--set", "persistence.storageClass=-"))["spec"][
        "volumeClaimTemplates"
    ]
    assert claim["spec"]["storageClassName"] == ""  # "-": pre-created volumes only


def test_image_values():
    digest = f"sha256:{'a' * 64}"
    app = container(
        template("--set", "image.repository=registry.example.com/app-python",
                 "--set", "image.tag=1.1.0", "--set", f"image.digest={digest}")
    )  # fmt: skip
    assert app["image"] == f"registry.example.com/app-python:1.1.0@{digest}"


def test_the_service_monitor_scrapes_every_pod_through_the_headless_service_only():
    assert not [kind for kind, _ in template() if kind == "ServiceMonitor"]
    objs = template(
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.serviceMonitor.labels.release=prometheus",
    )  # fmt: skip
    monitor = objs[("ServiceMonitor", "app-python")]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selected = [
        name
        for (kind, name), obj in objs.items()
        if kind == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= obj["metadata"]["labels"].items()
    ]
    assert selected == ["app-python-headless"]  # one scrape per pod, unready pods included
    # No path: Prometheus' default, /metrics; no namespaceSelector: the release's namespace.
    assert monitor["spec"]["endpoints"] == [{"port": "http", "interval": "30s"}]
    assert "namespaceSelector" not in monitor["spec"]
    assert resolve("/metrics").url_name == "metrics"
    # Prometheus asks for the pod by its address: the Host header the app must allow.
    env = container(objs)["env"]
    names = [variable["name"] for variable in env]
    assert names.index("POD_IP") < names.index("DJANGO_ALLOWED_HOSTS")
    hosts = allowed_hosts(container(objs))
    assert hosts[0] == "$(POD_IP)" and "app-python" in hosts


def test_the_helm_test_pod_checks_through_the_service_counts_nothing_and_runs_restricted():
    objs = template()
    pod = objs[("Pod", "app-python-test")]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    sts = statefulset(objs)["spec"]
    for service in (objs[("Service", "app-python")], objs[("Service", "app-python-headless")]):
        selector = service["spec"]["selector"]
        assert not selector.items() <= pod["metadata"]["labels"].items()  # not an endpoint
    assert pod["spec"]["securityContext"] == sts["template"]["spec"]["securityContext"]
    (test,) = pod["spec"]["containers"]
    assert test["securityContext"] == container(objs)["securityContext"]
    assert test["image"] == container(objs)["image"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    script = test["command"][-1]
    assert 'base = "http://app-python:80"' in script
    paths = re.findall(r'get\("(/[^"?]*)', script)
    assert sorted(paths) == ["/cluster", "/healthz", "/readyz", "/visits"]
    assert {resolve(path).url_name for path in paths} == {"cluster", "healthz", "readyz", "visits"}


def test_notes_tell_how_to_reach_the_site_the_admin_and_each_pods_file():
    notes = helm("install", "visits", str(CHART), "--dry-run=client", "-n", "lab").stdout
    notes = notes[notes.index("NOTES:") :]
    for n in range(3):
        assert f"kubectl exec -n lab visits-app-python-{n} -- cat /app/data/visits" in notes
    assert "visits-app-python-3" not in notes
    assert "kubectl port-forward -n lab svc/visits-app-python 8080:80" in notes
    assert "/admin/" in notes and "admin.passwordHash" in notes
    assert "helm test visits -n lab" in notes


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        (["replicaCount=-1"], "replicaCount"),
        (["podManagementPolicy=Paralel"], "podManagementPolicy"),
        (["updateStrategy.type=Recreate"], "updateStrategy"),
        (["updateStrategy.type=OnDelete", "updateStrategy.rollingUpdate.partition=2"],
         "partition"),
        (["updateStrategy.rollingUpdate.partition=-1"], "partition"),
        (["updateStrategy.rollingUpdate.maxUnavailable=2"], "maxUnavailable"),
        (["persistence.size=1GB"], "size"),
        (["persistence.size=1 Gi"], "size"),
        (["persistence.accessModes={ReadOnlyMany}"], "accessModes"),
        (["persistentVolumeClaimRetentionPolicy.whenDeleted=Keep"], "whenDeleted"),
        (["image.pullPolicy=Sometimes"], "pullPolicy"),
        (["admin.passwordHash=my-password"], "passwordHash"),
        (["existingSecret=visits", "admin.passwordHash=pbkdf2_sha256$1$s$h"], "passwordHash"),
        (["config.DJANGO_SECRET_KEY=in-a-configmap"], "DJANGO_SECRET_KEY"),
        (["config.web_concurrency=4"], "web_concurrency"),
        (["replicas=3"], "replicas"),
        (["fullnameOverride=App_Python"], "fullnameOverride"),
        (["topologySpreadConstraints[0].maxSkew=1"], "topologyKey"),
        # backup on needs a bucket and the Secret's name; and what S3 or Litestream would refuse
        (["backup.enabled=true", "backup.credentials.secretName=s3"], "bucket"),
        (["backup.enabled=true", "backup.s3.bucket=visits-backups"], "secretName"),
        (["backup.s3.bucket=Visits_Backups"], "bucket"),
        (["backup.s3.path=/visits/"], "path"),
        (["backup.s3.endpoint=s3.example.com"], "endpoint"),
        (["backup.syncInterval=1"], "syncInterval"),
        (["backup.image.pullPolicy=Sometimes"], "pullPolicy"),
        (["backup.secret=s3"], "secret"),
    ],
)  # fmt: skip
def test_the_schema_refuses_what_the_cluster_or_the_app_would_reject_late(args, refusal):
    sets = [arg for pair in args for arg in ("--set-string" if "$" in pair else "--set", pair)]
    result = helm("template", "app-python", str(CHART), *sets, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert refusal in result.stderr, result.stderr


def test_ondelete_without_a_partition_is_accepted_and_renders_no_rolling_update():
    sts = statefulset(template(*VARIANTS["ondelete"][1]))["spec"]
    assert sts["updateStrategy"] == {"type": "OnDelete"}


def test_the_renders_are_yamllint_clean(rendered, checker):
    renders = [path for name, path in rendered.items() if name.startswith("helm:")]
    if not renders:
        pytest.skip("helm is not installed: `make helm` builds it (scripts/helm.sh)")
    # Helm itself ends the test hooks' section with a blank line.
    config = f"{{extends: {ROOT / '.yamllint.yaml'}, rules: {{empty-lines: {{max-end: 1}}}}}}"
    subprocess.run([checker("yamllint"), "--strict", "-d", config, *renders], check=True)


def graceful_timeout() -> int:
    return int(re.search(r"^graceful_timeout = (\d+)$", (ROOT / "gunicorn.conf.py").read_text(),
                         re.M).group(1))  # fmt: skip


@pytest.mark.parametrize("backup", [False, True])
def test_a_stopping_pod_serves_through_its_pause_with_time_for_every_step(backup):
    """The pause before gunicorn stops (a preStop sleep), then its graceful shutdown, then with
    backup the sidecar's final sync: the grace period covers them in that order, from their
    sources (gunicorn.conf.py, the Litestream configuration)."""
    objs = template(*(BACKUP if backup else []))
    sts = statefulset(objs)["spec"]
    pod = sts["template"]["spec"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pause = values["preStopSleepSeconds"]
    assert pause >= 5  # what kube-proxy needs to follow, with room to spare
    assert container(objs)["lifecycle"] == {"preStop": {"sleep": {"seconds": pause}}}
    steps = [pause, graceful_timeout(), 5]  # the master's exit after its workers: 5 s
    if backup:
        config = objs[("ConfigMap", "app-python-litestream")]["data"]["litestream.yml"]
        sync = yaml.safe_load(config)["shutdown-sync-timeout"]
        steps += [int(sync.removesuffix("s")), 5]  # the sidecar's report: 5 s
        assert pod["initContainers"][1].get("lifecycle") is None  # it stops after the app
    assert pod["terminationGracePeriodSeconds"] == sum(steps)
    # The arithmetic, step by step, in the rendered manifest.
    render = helm("template", "app-python", str(CHART), *(BACKUP if backup else [])).stdout
    shown = re.findall(r"^ +#   +(\d+) s  ", render, re.M)
    assert [int(seconds) for seconds in shown] == [*steps, sum(steps)]
    # Each new pod ready this long before the next one stops; an unready pod can be evicted.
    assert sts["minReadySeconds"] == values["minReadySeconds"] >= 5
    pdb = objs[("PodDisruptionBudget", "app-python")]["spec"]
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_without_a_pause_the_pod_has_no_prestop_and_a_shorter_grace_period():
    objs = template("--set", "preStopSleepSeconds=0", "--set", "minReadySeconds=0")
    assert "lifecycle" not in container(objs)
    sts = statefulset(objs)["spec"]
    assert sts["template"]["spec"]["terminationGracePeriodSeconds"] == graceful_timeout() + 5
    assert sts["minReadySeconds"] == 0


def test_values_and_schema_agree_on_every_key():
    """Every default value is described by the schema, and the schema has no key without one."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) - {"global"} == set(values)


BACKUP = ["--set", "backup.enabled=true", "--set", "backup.s3.bucket=visits-backups",
          "--set", "backup.credentials.secretName=visits-s3",
          "--set", "backup.s3.endpoint=http://s3.example.com:9000"]  # fmt: skip


def test_backup_off_adds_nothing():
    objs = template()
    pod = statefulset(objs)["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert [c["name"] for c in pod["containers"]] == ["app"]
    assert {v["name"] for v in pod["volumes"]} == {"tmp"}
    assert ("ConfigMap", "app-python-litestream") not in objs


def test_backup_on_restores_then_replicates_each_volume_to_its_own_generation():
    objs = template(*BACKUP)
    pod = statefulset(objs)["spec"]["template"]["spec"]
    restore, sidecar = pod["initContainers"]
    assert [c["name"] for c in pod["containers"]] == ["app"]
    # The app container changes only by the relay of the sidecar's metrics.
    app, plain = container(objs), container(template())
    assert app["ports"] == [*plain["ports"], {"name": "backup-metrics", "containerPort": 9090}]
    relay = {"name": "VISITS_BACKUP_METRICS_URL", "value": "http://127.0.0.1:9091/metrics"}
    assert app["env"] == [*plain["env"], relay]
    assert {k: v for k, v in app.items() if k not in ("ports", "env")} == {
        k: v for k, v in plain.items() if k not in ("ports", "env")
    }
    # Restore first (a plain init container), then the native sidecar: it starts before the app
    # and stops after it.
    assert restore["name"] == "litestream-restore" and "restartPolicy" not in restore
    # Both run files/litestream.sh (tests/test_replica_generations.py): the generation fence.
    script = ["sh", "/etc/litestream/litestream.sh"]
    assert (restore["command"], restore["args"]) == (script, ["restore"])
    assert sidecar["name"] == "litestream" and sidecar["restartPolicy"] == "Always"
    assert (sidecar["command"], sidecar["args"]) == (script, ["replicate"])
    data = objs[("ConfigMap", "app-python-litestream")]["data"]
    assert data["litestream.sh"] == (CHART / "files" / "litestream.sh").read_text()
    config = yaml.safe_load(data["litestream.yml"])
    assert config["shutdown-sync-timeout"] == "10s"
    (db,) = config["dbs"]
    assert db["path"] == "/app/data/db.sqlite3"
    assert db["replica"] == {
        "type": "s3", "bucket": "visits-backups",
        "path": "app-python/${POD_NAME}${REPLICA_GENERATION}", "region": "us-east-1",
        "endpoint": "http://s3.example.com:9000", "sync-interval": "1s",
    }  # fmt: skip
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["litestream"]["configMap"]["name"] == "app-python-litestream"
    app = container(objs)
    for litestream in (restore, sidecar):
        assert litestream["image"] == f"app-python-litestream:{VERSIONS['LITESTREAM_VERSION']}"
        assert litestream["securityContext"] == app["securityContext"]
        assert {"requests", "limits"} <= set(litestream["resources"])
        mounts = {m["mountPath"]: m for m in litestream["volumeMounts"]}
        assert mounts["/app/data"]["name"] == "data"  # the app's volume, where its database is
        assert mounts["/etc/litestream"] == {"name": "litestream", "mountPath": "/etc/litestream",
                                             "readOnly": True}  # fmt: skip
        env = {e["name"]: e["valueFrom"] for e in litestream["env"]}
        assert env == {
            "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
            "AWS_ACCESS_KEY_ID": {
                "secretKeyRef": {"name": "visits-s3", "key": "AWS_ACCESS_KEY_ID"}},
            "AWS_SECRET_ACCESS_KEY": {
                "secretKeyRef": {"name": "visits-s3", "key": "AWS_SECRET_ACCESS_KEY"}},
        }  # fmt: skip
    # The image's tag is the version scripts/litestream.sh builds (scripts/versions.env).
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["backup"]["image"]["tag"] == VERSIONS["LITESTREAM_VERSION"]


def test_backup_settings_reach_the_config_and_roll_the_pods():
    objs = template(*BACKUP, "--set", "backup.s3.path=prod/visits", "--set",
                    "backup.s3.endpoint=", "--set", "backup.syncInterval=10s",
                    "--set", "backup.credentials.accessKeyIdKey=id")  # fmt: skip
    config = yaml.safe_load(objs[("ConfigMap", "app-python-litestream")]["data"]["litestream.yml"])
    replica = config["dbs"][0]["replica"]
    assert replica["path"] == "prod/visits/${POD_NAME}${REPLICA_GENERATION}"
    assert replica["sync-interval"] == "10s"
    assert "endpoint" not in replica  # AWS S3 itself
    sidecar = statefulset(objs)["spec"]["template"]["spec"]["initContainers"][1]
    keys = {e["name"]: e["valueFrom"].get("secretKeyRef", {}).get("key") for e in sidecar["env"]}
    assert keys["AWS_ACCESS_KEY_ID"] == "id"

    def checksum(*args: str) -> str:
        annotations = statefulset(template(*args))["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/config"]

    assert checksum(*BACKUP) != checksum(*BACKUP, "--set", "backup.syncInterval=5s")


def render_validate(checker, render, *values: str) -> None:
    """The chart rendered with `values` into the file `render`: valid for every Kubernetes
    version supported, and checkov finds nothing."""
    render.write_text(helm("template", "app-python", str(CHART), *values).stdout)
    for version in KUBERNETES_VERSIONS:
        result = subprocess.run(
            [checker("kubernetes-validate"), "--strict", "--quiet", "-k", version, render],
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
    report = checkov(checker("checkov"), [render], CHECKOV_CONFIG)
    assert report["summary"]["failed"] == 0, json.dumps(report["results"]["failed_checks"])


def test_backup_render_passes_the_api_schemas_checkov_and_helm_lint(checker, tmp_path):
    render_validate(checker, tmp_path / "backup.yaml", *BACKUP)
    result = helm("lint", "--strict", str(CHART), *BACKUP)
    assert "0 chart(s) failed" in result.stdout, result.stdout


def test_backup_on_the_app_relays_the_sidecars_metrics_which_never_leave_loopback():
    objs = template(*BACKUP, "--set", "metrics.serviceMonitor.enabled=true")
    config = yaml.safe_load(objs[("ConfigMap", "app-python-litestream")]["data"]["litestream.yml"])
    assert config["addr"] == "127.0.0.1:9091"  # with Go's profiler: the pod's loopback only
    pod = statefulset(objs)["spec"]["template"]["spec"]
    assert "ports" not in pod["initContainers"][1]
    app = container(objs)
    assert {"name": "backup-metrics", "containerPort": 9090} in app["ports"]
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["VISITS_BACKUP_METRICS_URL"] == "http://127.0.0.1:9091/metrics"
    headless = objs[("Service", "app-python-headless")]["spec"]["ports"]
    assert {"name": "backup-metrics", "port": 9090, "targetPort": "backup-metrics"} in headless
    rules = objs[("NetworkPolicy", "app-python")]["spec"]["ingress"]
    assert rules == [{"ports": [{"port": "http"}]}, {"ports": [{"port": "backup-metrics"}]}]
    endpoints = objs[("ServiceMonitor", "app-python")]["spec"]["endpoints"]
    assert [endpoint["port"] for endpoint in endpoints] == ["http", "backup-metrics"]
    # Without backup, no relay: the app listens on 8000 only.
    plain = container(template())
    assert [p["name"] for p in plain["ports"]] == ["http"]
    assert "VISITS_BACKUP_METRICS_URL" not in {e["name"] for e in plain["env"]}


CLOSED = [
    "--set", "networkPolicy.allowExternal=false",
    "--set", "networkPolicy.allowExternalEgress=false",
    "--set", "networkPolicy.ingressNSMatchLabels.team=edge",
    "--set", "networkPolicy.ingressNSPodMatchLabels.app=ingress",
    "--set", "networkPolicy.metrics.allowExternal=false",
    "--set", "networkPolicy.metrics.ingressNSPodMatchLabels.app=prometheus",
    "--set-json", 'networkPolicy.extraEgress=[{"ports": [{"port": 443}]}]',
    "--set-json", 'networkPolicy.extraIngress=[{"ports": [{"port": 9999}]}]',
]  # fmt: skip
PODS = {"app.kubernetes.io/name": "app-python", "app.kubernetes.io/instance": "app-python"}


def test_a_closed_perimeter_admits_the_release_its_clients_ingress_and_monitoring_only():
    spec = template(*BACKUP, *CLOSED)[("NetworkPolicy", "app-python")]["spec"]
    http, metrics, extra = spec["ingress"]
    assert http["ports"] == [{"port": "http"}]
    assert http["from"] == [
        {"podSelector": {"matchLabels": PODS}},
        {"podSelector": {"matchLabels": {"app-python-client": "true"}}},
        {"namespaceSelector": {"matchLabels": {"team": "edge"}},
         "podSelector": {"matchLabels": {"app": "ingress"}}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "prometheus"}}},
    ]  # fmt: skip
    assert metrics == {
        "ports": [{"port": "backup-metrics"}],
        "from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "prometheus"}}}],
    }
    assert extra == {"ports": [{"port": 9999}]}
    dns, release, s3 = spec["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert release == {"to": [{"podSelector": {"matchLabels": PODS}}], "ports": [{"port": "http"}]}
    assert s3 == {"ports": [{"port": 443}]}


def test_a_closed_perimeter_without_monitoring_selectors_admits_no_one_to_the_metrics_port():
    values = [*BACKUP, "--set", "networkPolicy.metrics.allowExternal=false"]
    rules = template(*values)[("NetworkPolicy", "app-python")]["spec"]["ingress"]
    assert rules == [{"ports": [{"port": "http"}]}]  # an empty selector would admit everyone
    assert ("NetworkPolicy", "app-python") not in template("--set", "networkPolicy.enabled=false")


def test_the_pods_the_closed_perimeter_admits_carry_the_client_label():
    objs = template(*VERIFY)
    test_pod = objs[("Pod", "app-python-test")]["metadata"]["labels"]
    job = objs[("CronJob", "app-python-backup-verify")]["spec"]["jobTemplate"]["spec"]
    assert test_pod["app-python-client"] == "true"
    assert job["template"]["metadata"]["labels"]["app-python-client"] == "true"


def test_the_allowed_hosts_are_the_services_names_never_every_service():
    app = container(template("--set", "clusterDomain=example.internal"))
    hosts = allowed_hosts(app)
    assert hosts[:3] == ["$(POD_IP)", "localhost", "127.0.0.1"]
    assert "app-python.$(POD_NAMESPACE).svc.example.internal" in hosts
    assert ".app-python-headless.$(POD_NAMESPACE).svc.example.internal" in hosts
    assert not [host for host in hosts if host in (".svc", ".svc.cluster.local", "*")]
    namespace = next(e for e in app["env"] if e["name"] == "POD_NAMESPACE")
    assert namespace["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    names = [e["name"] for e in app["env"]]  # defined before the value that names it
    assert names.index("POD_NAMESPACE") < names.index("DJANGO_ALLOWED_HOSTS")


def test_the_litestream_image_can_be_pinned_by_digest():
    digest = "sha256:" + "a" * 64
    objs = template(*BACKUP, "--set", f"backup.image.digest={digest}")
    sidecar = statefulset(objs)["spec"]["template"]["spec"]["initContainers"][1]
    assert sidecar["image"] == f"app-python-litestream:{VERSIONS['LITESTREAM_VERSION']}@{digest}"


VERIFY = [*BACKUP, "--set", "backup.verify.enabled=true"]


def test_backup_verification_restores_and_checks_every_pods_replica():
    assert not [kind for kind, _ in template(*BACKUP) if kind == "CronJob"]
    objs = template(*VERIFY, "--set", "replicaCount=2", "--set", "backup.verify.schedule=5 * * * *")
    cronjob = objs[("CronJob", "app-python-backup-verify")]["spec"]
    assert cronjob["schedule"] == "5 * * * *"
    assert cronjob["concurrencyPolicy"] == "Forbid"
    job = cronjob["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0  # a failure is the answer, not retried
    pod = job["template"]["spec"]
    (restore,) = pod["initContainers"]
    script = restore["args"][0]
    copy = "POD_NAME=$pod sh /etc/litestream/litestream.sh copy"
    assert script.startswith(f"for pod in app-python-0 app-python-1; do {copy}")
    (verify,) = pod["containers"]
    assert verify["command"] == ["sh", "-c"]
    assert "exec python manage.py verify_replicas /scratch --pods app-python-0,app-python-1" in (
        verify["args"][0])  # fmt: skip
    # Not the app's Secret: a key drawn for the run ($$ is Kubernetes' escape for $).
    assert "secretRef" not in str(verify["envFrom"])
    assert verify["args"][0].startswith("DJANGO_SECRET_KEY=$$(python -c 'import secrets;")
    claim = next(v for v in pod["volumes"] if v["name"] == "state")["persistentVolumeClaim"]
    assert ("PersistentVolumeClaim", claim["claimName"]) in objs
    # Its pods are not the app's: no Service, PDB or NetworkPolicy of the release selects them.
    labels = job["template"]["metadata"]["labels"]
    selectors = [
        obj["spec"].get("selector") for (kind, _), obj in objs.items() if kind == "Service"
    ]
    selectors += [objs[(kind, "app-python")]["spec"][key]["matchLabels"]
                  for kind, key in (("PodDisruptionBudget", "selector"),
                                    ("NetworkPolicy", "podSelector"))]  # fmt: skip
    assert not [s for s in selectors if s.items() <= labels.items()]


def test_backup_verification_render_passes_the_api_schemas_and_checkov(checker, tmp_path):
    render_validate(checker, tmp_path / "verify.yaml", *VERIFY)
