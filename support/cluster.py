"""kubectl and helm against the project's cluster (`make e2e`), each command kept with its
real output for the transcripts under docs/transcripts/, and the waits and readings that the
e2e tests share."""

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from support.tools import ROOT, helm_binary

TRANSCRIPTS = ROOT / "docs" / "transcripts"
VISITS_FILE = "/app/data/visits"
# The file trails the database by up to a second after the last visit (the server tests hold
# it to that second); here each kubectl exec takes a good part of a second itself.
FILE_CATCH_UP = 5.0
READ_VISITS = (
    "import urllib.request as u;"
    " print(u.urlopen('http://localhost:8000/visits').read().decode(), end='')"
)


def doc_figures(doc: str, name: str, text: str) -> None:
    """What a run measured, written into the doc that quotes it (docs/DOC), between the markers
    <!-- e2e:NAME:start --> and <!-- e2e:NAME:end -->: no figure is copied there by hand."""
    path = ROOT / "docs" / doc
    start, end = f"<!-- e2e:{name}:start -->", f"<!-- e2e:{name}:end -->"
    page = path.read_text()
    head, rest = page.split(start, 1)
    path.write_text(f"{head}{start}\n{text.strip()}\n{end}{rest.split(end, 1)[1]}")


def cluster_missing() -> str | None:
    """Why the e2e tests cannot run here, or None on the project's cluster."""
    if not os.environ.get("KUBECONFIG", "").endswith(".cluster/kubeconfig"):
        return "needs the project's cluster: run `make e2e`"
    return None


class Session:
    """kubectl (in `namespace`, if given) and helm; each command and its real output are kept,
    as a terminal shows them, unless record=False, and saved as docs/transcripts/e2e-NAME.txt
    (with `prefix` before NAME)."""

    def __init__(self, namespace: str | None = None, *, prefix: str = "") -> None:
        self.namespace = namespace
        self.prefix = prefix
        self.lines: list[str] = []

    def kubectl(
        self, *args: str, check: bool = True, record: bool = True, stdin: str | None = None
    ) -> str:
        where = ["-n", self.namespace] if self.namespace else []
        result = subprocess.run(
            ["kubectl", *where, *args], capture_output=True, text=True, input=stdin
        )
        if record:
            self.lines.append(f"$ {shlex.join(['kubectl', *where, *args])}\n"
                              f"{result.stdout}{result.stderr}")  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {shlex.join(args)}: {result.stderr}")
        return result.stdout

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, cwd=ROOT)
        self.lines.append(f"$ {shlex.join(['helm', *args])}\n{result.stdout}{result.stderr}")
        if check and result.returncode != 0:
            raise AssertionError(f"helm {shlex.join(args)}: {result.stderr}")
        return result

    def get(self, *args: str) -> dict:
        """`kubectl get ARGS -o json`, not recorded."""
        return json.loads(self.kubectl("get", *args, "-o", "json", record=False))

    def python(self, pod: str, code: str, *, container: str | None = None,
               record: bool = True, args: list[str] = ()) -> str:  # fmt: skip
        """Run Python in a pod (the image has no curl): requests from inside the cluster."""
        chosen = ["-c", container] if container else []
        return self.kubectl("exec", pod, *chosen, "--", "python", "-c", code, *args,
                            record=record)  # fmt: skip

    def note(self, text: str) -> None:
        self.lines.append(f"# {text}\n")

    def save(self, name: str) -> None:
        TRANSCRIPTS.mkdir(parents=True, exist_ok=True)
        (TRANSCRIPTS / f"e2e-{self.prefix}{name}.txt").write_text("".join(self.lines))

    def quiet(self) -> "Session":
        """A session in the same namespace whose commands go into no transcript."""
        return Session(self.namespace)

    def ready_pods(self, selector: str) -> list[str]:
        """The names of the pods matching `selector` that are ready and not being deleted."""
        pods = self.get("pods", "-l", selector)["items"]
        return sorted(pod["metadata"]["name"] for pod in pods if pod_ready(pod))

    def is_ready(self, name: str) -> bool:
        """Pod `name` exists, is ready and is not being deleted."""
        found = self.kubectl("get", "pod", name, "--ignore-not-found", "-o", "json", record=False)
        return bool(found) and pod_ready(json.loads(found))

    def uid(self, pod: str) -> str:
        return self.get("pod", pod)["metadata"]["uid"]

    def visits(self, pod: str, *, container: str | None = None) -> int:
        """The pod's visits file, read with kubectl exec (recorded), once it equals the pod's
        /visits; retried unrecorded while it trails, for at most FILE_CATCH_UP seconds."""
        quiet = self.quiet()
        answer = quiet.python(pod, READ_VISITS, container=container, record=False)
        chosen = ["-c", container] if container else []
        cat = ("exec", f"pod/{pod}", *chosen, "--", "cat", VISITS_FILE)
        until(f"{pod}'s visits file to equal its /visits ({answer})",
              lambda: quiet.kubectl(*cat, record=False) == answer,
              timeout=FILE_CATCH_UP)  # fmt: skip
        text = self.kubectl(*cat)
        assert text == answer, (pod, text, answer)
        return int(text)


# Pod Security admission: every namespace of the e2e refuses a pod that does not meet the
# restricted profile (the chart's pods, its test pod and CronJobs, the tests' own clients).
RESTRICTED = ("pod-security.kubernetes.io/enforce=restricted",
              "pod-security.kubernetes.io/enforce-version=latest")  # fmt: skip


def namespace_create(t: "Session", name: str) -> None:
    """The namespace `name`, made to enforce the restricted Pod Security profile (recorded in
    t's transcript)."""
    t.kubectl("create", "namespace", name)
    t.kubectl("label", "namespace", name, *RESTRICTED)


def e2e_missing() -> str | None:
    """Why the e2e tests that install the chart cannot run here, or None."""
    if reason := cluster_missing():
        return reason
    if helm_binary() is None:
        return "helm is not installed: `make helm` builds it"
    return None


def pod_ready(pod: dict) -> bool:
    return pod["metadata"].get("deletionTimestamp") is None and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


# What a check raises while the object it reads is missing or half made: a pod between its
# deletion and its replacement (KeyError), a status or label not written yet (KeyError,
# TypeError, IndexError), kubectl's NotFound or a refused connection (AssertionError from
# Session.kubectl), output cut short (ValueError from json). Each means "not yet".
NOT_YET = (LookupError, TypeError, ValueError, AttributeError, AssertionError)


def until(what: str, check: Callable[[], object], timeout: float = 180) -> None:
    """Wait for check() to hold, asking every 0.5 s; a check that raises one of NOT_YET has
    not held yet. At the timeout, fail with `what` and the last error the check raised."""
    deadline = time.monotonic() + timeout
    while True:
        error = None
        try:
            if check():
                return
        except NOT_YET as raised:
            error = raised
        if time.monotonic() >= deadline:
            last = f"; the last check raised {error!r}" if error else ""
            raise AssertionError(f"gave up waiting for {what} after {timeout:g} s{last}")
        time.sleep(0.5)


# The backup tests' S3 (e2e/moto/moto.yaml): a bucket per namespace, and the chart's values
# that replicate to it with the credentials in Secret backup-s3.
BUCKET = "visits-backups"
BACKUP_VALUES = (
    "--set", "backup.enabled=true", "--set", "backup.image.pullPolicy=IfNotPresent",
    "--set", f"backup.s3.bucket={BUCKET}", "--set", "backup.s3.endpoint=http://s3:5000",
    "--set", "backup.credentials.secretName=backup-s3",
)  # fmt: skip
S3 = f"""
import boto3, sys
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:5000", region_name="us-east-1",
                  aws_access_key_id="e2e", aws_secret_access_key="e2e")
if sys.argv[1] == "create":
    s3.create_bucket(Bucket="{BUCKET}")
    print("bucket {BUCKET} created")
elif sys.argv[1] == "delete":  # delete POD: every object of that pod's replica
    prefix = "app-python/" + sys.argv[2] + "/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="{BUCKET}", Prefix=prefix)["Contents"]]
    s3.delete_objects(Bucket="{BUCKET}", Delete={{"Objects": [{{"Key": k}} for k in keys]}})
    print(f"deleted {{len(keys)}} objects under {{prefix}}")
else:  # list PREFIX
    listing = s3.list_objects_v2(Bucket="{BUCKET}", Prefix=sys.argv[2])
    for item in listing.get("Contents", []):
        print(item["LastModified"].timestamp(), item["Size"], item["Key"])
"""


def start_s3(t: Session) -> None:
    """moto in t's namespace, its bucket, and the Secret the chart's backup values name."""
    t.note("an S3-compatible store in the namespace (moto), its bucket, and the Secret")
    t.kubectl("apply", "-f", "e2e/moto/moto.yaml")
    s3_bucket(t)
    keys = ["--from-literal=AWS_ACCESS_KEY_ID=e2e", "--from-literal=AWS_SECRET_ACCESS_KEY=e2e"]
    t.kubectl("create", "secret", "generic", "backup-s3", *keys)


def s3_bucket(t: Session) -> None:
    """Once moto answers, its bucket (moto keeps nothing: after a restart too)."""
    t.kubectl("rollout", "status", "deployment/s3", "--timeout=180s")
    t.kubectl("exec", "deploy/s3", "--", "python", "-c", S3, "create")


def replica(t: Session, pod: str, *, record: bool = True) -> list[tuple[float, str]]:
    """The objects of the pod's replica in the bucket: (last modified, key); keys are
    app-python/<pod>/<volume generation>/<level>/<min TXID>-<max TXID>.ltx."""
    output = t.kubectl("exec", "deploy/s3", "--", "python", "-c", S3, "list",
                       f"app-python/{pod}/", record=record)  # fmt: skip
    return [(float(line.split()[0]), line.split()[2]) for line in output.splitlines()]


def pod_processes(uid: str) -> dict[int, str]:
    """The processes of a pod's containers on this machine (their cgroups name the pod's UID),
    without the sandbox's pause: pid -> name."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroups = (proc / "cgroup").read_text()
            name = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if (uid in cgroups or uid.replace("-", "_") in cgroups) and name != "pause":
            found[int(proc.name)] = name
    return found
