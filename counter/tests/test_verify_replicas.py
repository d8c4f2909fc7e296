"""`manage.py verify_replicas`, the check the chart's backup.verify CronJob runs on the replicas
it restored. The pods' live counts are stand-ins here; the real cluster's run is
tests/test_e2e_ops.py's."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from counter.peers import PodCount


@pytest.fixture
def replica(app_database):
    """Factory: replica(path, total): a restored replica, a database of this app with `total`
    visits."""
    return lambda path, *, total: app_database(path, total=total, page_size=4096, wal=False).close()


@pytest.fixture
def live(monkeypatch) -> dict[str, int | None]:
    """The pods' live counts, by name; None: the pod does not answer."""
    counts: dict[str, int | None] = {}

    def ask(*, pod: str) -> PodCount:
        visits = counts[pod]
        error = None if visits is not None else "timeout"
        return PodCount(pod=pod, visits=visits, url=f"http://{pod}", error=error)

    monkeypatch.setattr("counter.management.commands.verify_replicas.pod_count_ask", ask)
    return counts


def verify(tmp_path, *pods: str) -> str:
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        call_command(
            "verify_replicas", tmp_path, pods=",".join(pods), state=tmp_path / "state.json",
            stdout=stdout,
        )  # fmt: skip
    return out.read_text()


def test_replicas_that_trail_their_pods_pass_and_are_remembered(tmp_path, live, replica):
    replica(tmp_path / "app-python-0.sqlite3", total=5)
    replica(tmp_path / "app-python-1.sqlite3", total=7)
    live |= {"app-python-0": 5, "app-python-1": 9}
    printed = verify(tmp_path, "app-python-0", "app-python-1")
    assert "app-python-1: the replica restores, intact, 7 visits; the pod counts 9" in printed
    assert printed.endswith("every replica restores, is intact, and follows its pod\n")
    state = json.loads((tmp_path / "state.json").read_text())
    assert state == {"app-python-0": 5, "app-python-1": 7}


def test_a_pod_that_does_not_answer_is_not_compared(tmp_path, live, replica):
    replica(tmp_path / "app-python-0.sqlite3", total=5)
    live["app-python-0"] = None
    assert "the pod did not answer (timeout): not compared" in verify(tmp_path, "app-python-0")


@pytest.mark.parametrize(
    ("total", "pod", "last", "problem"),
    [
        (8, 5, 0, "app-python-0: the replica counts 8, more than the pod's 5"),
        (3, 5, 4, "app-python-0: the replica counts 3, back from 4 verified before"),
    ],
)
def test_a_replica_that_leads_its_pod_or_went_back_fails(
    tmp_path, live, replica, total, pod, last, problem
):
    replica(tmp_path / "app-python-0.sqlite3", total=total)
    (tmp_path / "state.json").write_text(json.dumps({"app-python-0": last}))
    live["app-python-0"] = pod
    with pytest.raises(CommandError, match=problem):
        verify(tmp_path, "app-python-0")
    assert json.loads((tmp_path / "state.json").read_text()) == {"app-python-0": last}


def test_a_replica_missing_or_damaged_fails_naming_each(tmp_path, live, replica):
    (tmp_path / "app-python-0.log").write_text("restoring\nno matching backups found\n")
    (tmp_path / "app-python-1.sqlite3").write_bytes(b"SQLite format 3\x00" + b"x" * 200)
    replica(tmp_path / "app-python-2.sqlite3", total=1)
    live["app-python-2"] = 1
    with pytest.raises(CommandError) as failed:
        verify(tmp_path, "app-python-0", "app-python-1", "app-python-2")
    lines = str(failed.value).splitlines()
    assert lines[0] == "backup verification failed:"
    assert lines[1] == "app-python-0: its replica did not restore (no matching backups found)"
    assert lines[2].startswith("app-python-1: ") and len(lines) == 3
