"""Operations on the project's real Kubernetes (`make e2e`), in their own namespace: backups
proven restorable by the chart's verification CronJob, and the chart's alert rules loaded into a
real Prometheus (Debian's `prometheus`, run on this machine beside the cluster) that scrapes
every pod by its address.

Two pods with backup on, replicating to an in-cluster S3 (moto, e2e/moto/). Each step saves its
real output under docs/transcripts/e2e-ops-*.txt.

kube-state-metrics is not on the project's cluster, so the alerts on its series (readiness,
rollouts, the verification's Jobs) are proven by promtool (tests/test_alerts.py), and here by
the Job's own status, which is what kube-state-metrics reports.
"""

import subprocess
import time
from collections.abc import Iterator

import pytest

from support.cluster import (
    BACKUP_VALUES,
    S3,
    Session,
    e2e_missing,
    namespace_create,
    s3_bucket,
    start_s3,
    until,
)
from support.prometheus import Prometheus, chart_rules, prometheus_binary

pytestmark = pytest.mark.e2e

if reason := e2e_missing():
    pytest.skip(reason, allow_module_level=True)

NAMESPACE = "app-python-ops"
PODS = ["app-python-0", "app-python-1"]
VALUES = (
    "-f", "k8s/chart/values-local.yaml", "--set", f"replicaCount={len(PODS)}", *BACKUP_VALUES,
    # Runs only when the test creates a Job from it (February 31st never comes).
    "--set", "backup.verify.enabled=true", "--set", "backup.verify.schedule=0 0 31 2 *",
    "--set", "metrics.prometheusRule.backupStalledFor=1m",
)  # fmt: skip
SCRAPE_SECONDS = 5
# The counting-stopped alert's `for` (1 m) plus a scrape and an evaluation, with room.
COUNTING_STOPPED_WITHIN = 120

VISIT = "import urllib.request as u\nfor _ in range({n}): u.urlopen('http://localhost:8000/')"


def session() -> Session:
    return Session(NAMESPACE, prefix="ops-")


@pytest.fixture(scope="module")
def installed() -> Session:
    t = session()
    namespace_create(t, NAMESPACE)
    start_s3(t)
    t.helm("upgrade", "--install", "app-python", "k8s/chart", "-n", NAMESPACE, *VALUES)
    for pod in PODS:
        until(f"{pod} ready", lambda pod=pod: t.is_ready(pod))
    return t


def verification(t: Session, name: str) -> tuple[str, str]:
    """A run of the CronJob now: how its Job ended (Complete or Failed), and its log."""
    t.kubectl("create", "job", "--from=cronjob/app-python-backup-verify", name)

    def ended() -> str | None:
        conditions = t.get("job", name).get("status", {}).get("conditions", [])
        done = [c["type"] for c in conditions if c["status"] == "True"]
        return next((c for c in done if c in ("Complete", "Failed")), None)

    until(f"job {name} to end", ended, timeout=600)
    t.kubectl("get", "job", name)
    return ended() or "", t.kubectl("logs", f"job/{name}", "-c", "verify", check=False)


def test_a_verification_passes_then_fails_on_a_replica_deleted_in_the_bucket(installed):
    t = session()
    for pod in PODS:
        t.kubectl("exec", pod, "-c", "app", "--", "python", "-c", VISIT.format(n=20))
    time.sleep(3)  # the sidecars' sync interval is 1 s: the replicas have the visits
    status, log = verification(t, "verify-1")
    assert status == "Complete", log
    assert log.count("the replica restores, intact, 20 visits") == len(PODS), log
    t.note(f"{PODS[1]}'s replica deleted in the bucket")
    t.kubectl("exec", "deploy/s3", "--", "python", "-c", S3, "delete", PODS[1])
    status, log = verification(t, "verify-2")
    t.save("verify")
    assert status == "Failed", log
    assert f"{PODS[1]}: its replica did not restore" in log, log
    assert f"{PODS[0]}: the replica restores, intact, 20 visits" in log, log


@pytest.fixture(scope="module")
def prometheus(installed, tmp_path_factory) -> Iterator[Prometheus]:
    """Debian's Prometheus on this machine, scraping every pod (the app and its sidecar) by
    address, with the chart's rules for this release."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("prometheus is not installed: apt-get install prometheus")
    rules = chart_rules(*VALUES, namespace=NAMESPACE)
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), rules, interval=SCRAPE_SECONDS)
    targets_write(installed, server)
    yield server.start(binary)
    server.stop()


def targets_write(t: Session, prometheus: Prometheus) -> None:
    """Every pod's app and sidecar, by address, labelled with the namespace and the pod as the
    ServiceMonitor's targets are."""
    pods = {pod: t.get("pod", pod)["status"]["podIP"] for pod in PODS}
    prometheus.targets_write({
        f"{address}:{port}": {"namespace": NAMESPACE, "pod": pod}
        for pod, address in pods.items()
        for port in (8000, 9090)
    })  # fmt: skip


def firing(prometheus: Prometheus, alert: str) -> list[str]:
    """The pods for which `alert` fires."""
    return sorted(labels.get("pod", "") for labels in prometheus.firing(alert))


def test_the_scraped_totals_equal_the_pods_counts(installed, prometheus):
    t = session()
    counts = {pod: t.visits(pod, container="app") for pod in PODS}

    def scraped() -> bool:
        result = prometheus.query(f'sum(visits_total{{namespace="{NAMESPACE}"}})')
        return result and float(result[0]["value"][1]) == sum(counts.values())

    until("Prometheus' sum of visits_total to equal the pods' counts", scraped, timeout=60)
    t.note(f"the pods count {counts}; Prometheus sums {sum(counts.values())}")
    t.save("prometheus-totals")


def test_a_deleted_database_fires_counting_stopped_and_a_restart_clears_it(installed, prometheus):
    t = session()
    pod = PODS[0]
    t.note(f"{pod}'s database deleted under it")
    t.kubectl("exec", pod, "-c", "app", "--", "rm", "/app/data/db.sqlite3")
    started = time.monotonic()
    alert = "AppPythonCountingStopped"
    until(f"{alert} to fire", lambda: firing(prometheus, alert) == [pod],
          timeout=COUNTING_STOPPED_WITHIN)  # fmt: skip
    t.note(f"AppPythonCountingStopped fired for {pod} after {time.monotonic() - started:.0f} s")
    t.kubectl("delete", "pod", pod)
    until(f"{pod} ready again", lambda: t.is_ready(pod))
    targets_write(t, prometheus)
    until("the alert to clear", lambda: not firing(prometheus, "AppPythonCountingStopped"),
          timeout=COUNTING_STOPPED_WITHIN)  # fmt: skip
    t.save("prometheus-counting-stopped")


def test_a_stopped_s3_fires_the_backup_alert_and_its_return_clears_it(installed, prometheus):
    t = session()
    t.note("the S3 server stopped while the pods count")
    t.kubectl("scale", "deployment/s3", "--replicas=0")
    visits = subprocess.Popen(
        ["kubectl", "-n", NAMESPACE, "exec", PODS[1], "-c", "app", "--", "python", "-c",
         VISIT.format(n=100000)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        alert = "AppPythonBackupBehind"
        until(f"{alert} to fire", lambda: PODS[1] in firing(prometheus, alert), timeout=600)
        t.note("the S3 server started again (moto keeps nothing: its bucket made again)")
        t.kubectl("scale", "deployment/s3", "--replicas=1")
        s3_bucket(t)
        until("the backup alert to clear",
              lambda: not firing(prometheus, "AppPythonBackupBehind"), timeout=600)  # fmt: skip
    finally:
        visits.kill()
    t.save("prometheus-backup")
