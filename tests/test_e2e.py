"""The StatefulSet on a real Kubernetes (`make e2e` brings one up with e2e/cluster.sh).

The steps run in order against one deployment; each saves the real kubectl output it shows
under docs/transcripts/e2e-*.txt, which docs/kubernetes.md quotes.
"""

import json
import os
import shlex
import subprocess
import time

import pytest
from django.contrib.auth.hashers import make_password

from support.cluster import Session, cluster_missing, until
from support.manifests import COMPONENTS, k8s_copy, overlay_with_component
from support.tools import ROOT

pytestmark = pytest.mark.e2e

if reason := cluster_missing():
    pytest.skip(reason, allow_module_level=True)

PODS = ["app-python-0", "app-python-1", "app-python-2"]
ADMIN_PASSWORD = "e2e-admin-password"


def get(*args: str) -> dict:
    """`kubectl get ARGS -o json`, unrecorded."""
    return Session().get(*args)


def ready_pods(name: str = "app-python") -> list[str]:
    return Session().ready_pods(f"app.kubernetes.io/instance={name}")


def counts(t: Session) -> dict[str, int]:
    """Each pod's visits file, read with kubectl exec, checked against the pod's /visits."""
    return {pod: t.visits(pod) for pod in PODS}


def wait_settled(name: str = "app-python", replicas: int = 3) -> None:
    until(f"{replicas} ready pods of {name}", lambda: len(ready_pods(name)) == replicas)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    tree = k8s_copy(
        tmp_path_factory.mktemp("k8s"),
        f"DJANGO_SECRET_KEY=e2e-{os.urandom(16).hex()}\n"
        f"VISITS_ADMIN_PASSWORD_HASH={make_password(ADMIN_PASSWORD)}\n",
    )
    # The image is loaded into the node: the canary and OnDelete components go on the local
    # overlay (overlays/local-canary, overlays/local-ondelete).
    for component in COMPONENTS:
        overlay_with_component(tree, "local", component)
    t = Session()
    t.kubectl("apply", "-k", str(tree / "overlays" / "local"))
    wait_settled()
    return tree


def test_statefulset_pods_volumes_and_services(deployed):
    t = Session()
    output = t.kubectl("get", "po,sts,svc,pvc")
    t.save("get")
    assert ready_pods() == PODS

    def status() -> dict:  # the StatefulSet's status follows its pods' a moment later
        return get("statefulset", "app-python")["status"]

    until("the StatefulSet to count 3 ready replicas", lambda: status()["readyReplicas"] == 3)
    claims = get("pvc")["items"]
    assert sorted(c["metadata"]["name"] for c in claims if c["status"]["phase"] == "Bound") == [
        f"data-{pod}" for pod in PODS
    ]
    assert "service/app-python-headless" in output and "service/app-python " in output


def test_visits_through_the_service_spread_over_the_pods(deployed):
    t = Session()
    before = counts(Session())
    t.note("60 visits to the app-python Service, sent from inside the cluster")
    t.python(
        "app-python-0",
        'import urllib.request as u\nfor _ in range(60): u.urlopen("http://app-python/").read()',
    )
    after = counts(t)
    t.save("visits")
    received = {pod: after[pod] - before[pod] for pod in PODS}
    assert sum(received.values()) == 60
    assert sum(1 for n in received.values() if n > 0) >= 2, received


def test_a_pod_resolves_another_through_the_headless_service(deployed):
    t = Session()
    address = t.python(
        "app-python-0",
        'import socket; print(socket.gethostbyname("app-python-1.app-python-headless"))',
    ).strip()
    t.kubectl("get", "pod", "app-python-1", "-o", "wide")
    t.save("dns")
    assert address == get("pod", "app-python-1")["status"]["podIP"]


def test_the_cluster_view_sees_every_pod(deployed):
    t = Session()
    answer = json.loads(
        t.python(
            "app-python-1",
            "import urllib.request as u;"
            ' print(u.urlopen("http://localhost:8000/cluster?format=json").read().decode())',
        )
    )
    t.save("cluster")
    assert sorted(p["pod"] for p in answer["pods"]) == PODS
    assert all(p["error"] is None for p in answer["pods"])
    assert answer["total"] == sum(counts(Session()).values())


def test_slow_clients_do_not_get_a_pod_restarted(deployed):
    """From inside pod 0, 200 slowloris connections against pod 1 for 50 s, longer than the
    liveness window (3 failures 10 s apart): pod 1 stays Ready and is never restarted."""
    t = Session()
    before = counts(Session())
    target = "app-python-1.app-python-headless"
    restarts = get("pod", "app-python-1")["status"]["containerStatuses"][0]["restartCount"]
    attack = ["--seconds", "50", "--slow", "200", "--idle", "0", "--slow-posts", "0"]
    command = ["kubectl", "exec", "-i", "app-python-0", "--", "python", "-", f"{target}:8000"]
    command += [*attack, "--host-header", target]
    t.note(f"support/hostile.py run in app-python-0 against {target}, probes alongside")
    with (ROOT / "support" / "hostile.py").open() as script:
        attacker = subprocess.Popen(command, stdin=script, stdout=subprocess.PIPE, text=True)
        unready_at = []
        started = time.monotonic()
        while attacker.poll() is None:
            if "app-python-1" not in ready_pods():
                unready_at.append(round(time.monotonic() - started, 1))
            time.sleep(1)
    output = attacker.stdout.read()
    t.lines.append(f"$ {shlex.join(command)} < support/hostile.py\n{output}")
    assert attacker.returncode == 0, output
    seen = json.loads(output)
    t.kubectl("get", "pod", "app-python-1")
    after = counts(t)
    t.save("slow-clients")
    assert unready_at == []
    pod = get("pod", "app-python-1")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == restarts
    for path in ("/healthz", "/readyz", "/"):
        assert seen[path]["ok"] == seen[path]["asked"] > 0, (path, seen[path])
    assert after["app-python-1"] == before["app-python-1"] + seen["/"]["ok"]
    assert after["app-python-0"] == before["app-python-0"]


def test_a_snapshot_of_one_pod_restored_into_another(deployed, tmp_path):
    t = Session()
    before = counts(Session())
    t.note("a snapshot of app-python-0's database, taken as it serves, restored into app-python-2")
    snapshot = tmp_path / "pod0.sqlite3"
    backup = ["kubectl", "exec", "app-python-0", "--", "python", "manage.py", "backup"]
    with snapshot.open("wb") as out:
        result = subprocess.run(backup, stdout=out, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 0, result.stderr
    t.lines.append(f"$ {shlex.join(backup)} > pod0.sqlite3\n{result.stderr}")
    t.note(f"pod0.sqlite3: {snapshot.stat().st_size} bytes")
    # Another pod's database: restore asks for --force, and warns with it.
    restore = ["kubectl", "exec", "-i", "app-python-2", "--", "python", "manage.py", "restore",
               "--force", "-"]  # fmt: skip
    with snapshot.open("rb") as source:
        result = subprocess.run(restore, stdin=source, capture_output=True, text=True)
    t.lines.append(f"$ {shlex.join(restore)} < pod0.sqlite3\n{result.stdout}{result.stderr}")
    assert result.returncode == 0, result.stderr
    assert "warning (--force): the snapshot is the database of pod app-python-0" in result.stderr
    uid = get("pod", "app-python-2")["metadata"]["uid"]
    t.kubectl("delete", "pod", "app-python-2")
    until("a new app-python-2", lambda: "app-python-2" in ready_pods()
          and get("pod", "app-python-2")["metadata"]["uid"] != uid)  # fmt: skip
    after = counts(t)
    t.save("restore")
    assert after == {**before, "app-python-2": before["app-python-0"]}


COUNT_300 = (
    "import urllib.request as u\n"
    "for _ in range(300): u.urlopen('http://localhost:8000/').read()\n"
    "print('300 visits answered')"
)
READ_READYZ = (
    "import urllib.request as u, urllib.error as e\n"
    "try: r = u.urlopen('http://localhost:8000/readyz')\n"
    "except e.HTTPError as error: r = error\n"
    "print(r.status, r.read().decode(), end='')"
)


def test_a_wal_deleted_under_a_running_pod_loses_no_visit(deployed):
    """The careless operator of issue 15: the WAL deleted under a pod that counts. The pod
    stops counting and goes unready, and the restart the log asks for keeps every visit."""
    t = Session()
    before = counts(Session())
    t.python("app-python-1", COUNT_300)
    t.kubectl("exec", "app-python-1", "--", "rm", "/app/data/db.sqlite3-wal")
    until("app-python-1 unready", lambda: "app-python-1" not in ready_pods(), timeout=60)
    answer = t.python("app-python-1", READ_READYZ)
    t.kubectl("get", "pod", "app-python-1")
    log = Session().kubectl("logs", "app-python-1", record=False)
    found = [line for line in log.splitlines() if "counter.store.guard" in line]
    t.lines.append(f"$ kubectl logs app-python-1 | grep counter.store.guard\n{found[0]}\n")
    uid = get("pod", "app-python-1")["metadata"]["uid"]
    t.kubectl("delete", "pod", "app-python-1")
    until("a new app-python-1", lambda: "app-python-1" in ready_pods()
          and get("pod", "app-python-1")["metadata"]["uid"] != uid)  # fmt: skip
    after = counts(t)
    restarted = Session().kubectl("logs", "app-python-1", record=False)
    t.save("careless-operator")
    assert answer == (
        "503 not ready: counting stopped: db.sqlite3-wal was deleted or replaced under the"
        " running server; restart the pod\n"
    )
    assert "Restart the pod (kubectl delete pod app-python-1)" in found[0]
    assert after == {**before, "app-python-1": before["app-python-1"] + 300}
    assert "counting had stopped (db.sqlite3-wal was deleted or replaced" in restarted


def creation_and_ready_times(name: str) -> dict[str, tuple[str, str]]:
    pods = get("pods", "-l", f"app.kubernetes.io/instance={name}")["items"]
    times = {}
    for pod in pods:
        ready = next(
            c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready"
        )
        times[pod["metadata"]["name"]] = (pod["metadata"]["creationTimestamp"], ready)
    return times


def test_scaling_is_parallel_and_keeps_every_count(deployed):
    t = Session()
    before = counts(Session())
    t.kubectl("scale", "statefulset", "app-python", "--replicas=0")
    until("no pods", lambda: not get("pods", "-l",
          "app.kubernetes.io/instance=app-python")["items"])  # fmt: skip
    t.kubectl("get", "pvc")
    t.kubectl("scale", "statefulset", "app-python", "--replicas=3")
    wait_settled()
    columns = (
        "custom-columns=POD:.metadata.name,CREATED:.metadata.creationTimestamp,"
        "READY:.status.conditions[?(@.type=='Ready')].lastTransitionTime"
    )
    t.kubectl("get", "pods", "-l", "app.kubernetes.io/instance=app-python", "-o", columns)
    times = creation_and_ready_times("app-python")
    # Parallel: every pod was created before the first one became ready.
    first_ready = min(ready for _, ready in times.values())
    assert all(created <= first_ready for created, _ in times.values()), times
    assert counts(t) == before
    t.save("scale-parallel")


def test_ordered_ready_creates_pods_one_by_one(deployed):
    """A throwaway copy with the default OrderedReady policy, for comparison."""
    t = Session()
    sts = get("statefulset", "app-python")
    copy = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "app-python-ordered"},
        "spec": {
            **{k: sts["spec"][k] for k in ("replicas", "serviceName", "volumeClaimTemplates")},
            "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "app-python-ordered"}},
            "template": sts["spec"]["template"],
        },
    }
    labels = copy["spec"]["template"]["metadata"]["labels"]
    labels["app.kubernetes.io/instance"] = "app-python-ordered"
    manifest = deployed.parent / "ordered.json"
    manifest.write_text(json.dumps(copy))
    try:
        t.kubectl("apply", "-f", str(manifest))
        wait_settled("app-python-ordered")
        columns = (
            "custom-columns=POD:.metadata.name,CREATED:.metadata.creationTimestamp,"
            "READY:.status.conditions[?(@.type=='Ready')].lastTransitionTime"
        )
        t.kubectl("get", "pods", "-l", "app.kubernetes.io/instance=app-python-ordered", "-o",
                  columns)  # fmt: skip
        times = creation_and_ready_times("app-python-ordered")
        names = sorted(times)
        for previous, current in zip(names, names[1:], strict=False):
            assert times[current][0] >= times[previous][1], times  # created after ready
    finally:
        t.kubectl("delete", "-f", str(manifest), "--wait=true", check=False)
        t.kubectl("delete", "pvc", "-l", "app.kubernetes.io/instance=app-python-ordered",
                  check=False)  # fmt: skip
        t.save("scale-ordered")


def test_a_deleted_pod_comes_back_with_its_claim_and_count(deployed):
    t = Session()
    before = counts(Session())
    volume = get("pvc", "data-app-python-1")["spec"]["volumeName"]
    uid = get("pod", "app-python-1")["metadata"]["uid"]
    t.kubectl("delete", "pod", "app-python-1")
    until("a new app-python-1", lambda: "app-python-1" in ready_pods()
          and get("pod", "app-python-1")["metadata"]["uid"] != uid)  # fmt: skip
    t.kubectl("get", "pod/app-python-1", "pvc/data-app-python-1")
    assert get("pvc", "data-app-python-1")["spec"]["volumeName"] == volume
    assert counts(t)["app-python-1"] == before["app-python-1"]
    t.save("delete-pod")


def revisions() -> tuple[str, dict[str, str]]:
    sts = get("statefulset", "app-python")
    pods = get("pods", "-l", "app.kubernetes.io/instance=app-python")["items"]
    return sts["status"]["updateRevision"], {
        p["metadata"]["name"]: p["metadata"]["labels"]["controller-revision-hash"] for p in pods
    }


def template_change(t: Session, release: str) -> None:
    patch = {"spec": {"template": {"metadata": {"annotations": {"e2e/release": release}}}}}
    t.kubectl("patch", "statefulset", "app-python", "--type", "merge", "-p", json.dumps(patch))


def observed() -> bool:
    sts = get("statefulset", "app-python")
    return sts["status"].get("observedGeneration") == sts["metadata"]["generation"]


def show_revisions(t: Session) -> None:
    t.kubectl("get", "statefulset", "app-python", "-o",
              "jsonpath={.status.currentRevision} {.status.updateRevision}{\"\\n\"}")  # fmt: skip
    t.kubectl("get", "pods", "-l", "app.kubernetes.io/instance=app-python", "-L",
              "controller-revision-hash")  # fmt: skip


def test_canary_partition_updates_only_the_last_pod_then_promotes(deployed):
    t = Session()
    before = counts(Session())
    t.kubectl("apply", "-k", str(deployed / "overlays" / "local-canary"))
    template_change(t, "canary")
    until("the canary", lambda: observed() and revisions()[1]["app-python-2"] == revisions()[0]
          and len(ready_pods()) == 3)  # fmt: skip
    show_revisions(t)
    update, pods = revisions()
    assert pods["app-python-2"] == update
    assert pods["app-python-0"] != update and pods["app-python-1"] != update
    t.note("promote: partition 0")
    t.kubectl("patch", "statefulset", "app-python", "-p",
              '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}')  # fmt: skip
    until(
        "every pod on the new revision",
        lambda: set(revisions()[1].values()) == {revisions()[0]} and len(ready_pods()) == 3,
    )
    show_revisions(t)
    assert counts(t) == before
    t.save("canary")


def test_ondelete_updates_a_pod_only_when_it_is_deleted(deployed):
    t = Session()
    t.kubectl("apply", "-k", str(deployed / "overlays" / "local-ondelete"))
    template_change(t, "ondelete")
    until("the controller to see the change", observed)
    update, pods = revisions()
    show_revisions(t)
    assert update not in pods.values()
    t.kubectl("delete", "pod", "app-python-0")
    until("app-python-0 back", lambda: revisions()[1].get("app-python-0") == update
          and len(ready_pods()) == 3)  # fmt: skip
    show_revisions(t)
    _, pods = revisions()
    assert pods["app-python-0"] == update
    assert pods["app-python-1"] != update and pods["app-python-2"] != update
    t.save("ondelete")


ADMIN_SCRIPT = """
import http.cookiejar, re, urllib.parse, urllib.request
jar = http.cookiejar.CookieJar()
web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
page = web.open('http://app-python/admin/login/').read().decode()
token = re.search('name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
form = urllib.parse.urlencode({'username': 'admin', 'password': '%s',
                               'csrfmiddlewaretoken': token, 'next': '/admin/'}).encode()
web.open(urllib.request.Request('http://app-python/admin/login/', data=form,
                                headers={'Referer': 'http://app-python/admin/login/'}))
for _ in range(20):
    page = web.open('http://app-python/admin/').read().decode()
    pod = re.search('pod (app-python-[0-9])', page).group(1)
    print(pod, 'Site administration' in page)
"""


def test_the_admin_stays_logged_in_across_pods_through_the_service(deployed):
    t = Session()
    t.note("log in once through the Service, then 20 admin pages, each from whichever pod answers")
    output = t.python("app-python-0", ADMIN_SCRIPT % ADMIN_PASSWORD)
    t.save("admin")
    answers = [line.split() for line in output.splitlines()]
    assert len(answers) == 20
    assert all(logged_in == "True" for _, logged_in in answers)
    assert len({pod for pod, _ in answers}) >= 2, answers


# Logins to one pod (by its name under the headless Service), from another: the answer's status.
LOGINS = """
import http.cookiejar, re, sys, urllib.error, urllib.parse, urllib.request
base = 'http://app-python-1.app-python-headless:8000/admin/login/'
for password in sys.argv[1:]:
    jar = http.cookiejar.CookieJar()
    web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = web.open(base).read().decode()
    token = re.search('name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({'username': 'admin', 'password': password,
                                   'csrfmiddlewaretoken': token, 'next': '/admin/'}).encode()
    try:
        answer = web.open(urllib.request.Request(base, data=form, headers={'Referer': base}))
        print(answer.status, 'logged in' if 'Site administration' in answer.read().decode()
              else 'refused')
    except urllib.error.HTTPError as error:
        print(error.code, error.headers.get('Retry-After', ''))
"""
UNLOCK = ("from counter.models import LoginFailures;"
          " print(LoginFailures.objects.all().delete())")  # fmt: skip


def test_a_locked_out_admin_logs_in_again_once_the_lockout_is_lifted(deployed):
    """The runbook's lockout: ten wrong passwords lock the address out of one pod (the right
    password too gets 429); the command lifts it, on that pod, and the admin logs in."""
    t = Session()
    t.note("ten wrong passwords, then the right one, from app-python-0 to app-python-1's admin")
    locked = t.python("app-python-0", LOGINS, args=[*["wrong"] * 10, ADMIN_PASSWORD])
    t.kubectl("exec", "app-python-1", "--", "python", "manage.py", "shell", "-c", UNLOCK)
    again = t.python("app-python-0", LOGINS, args=[ADMIN_PASSWORD])
    t.save("lockout")
    answers = locked.splitlines()
    assert answers[:10] == ["200 refused"] * 10, answers
    assert answers[10].startswith("429 "), answers  # locked: the right password too
    assert again.strip() == "200 logged in", again
