import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from counter.exceptions import SnapshotError
from counter.peers import pod_count_ask
from counter.store.snapshots import snapshot_check


class Command(BaseCommand):
    help = (
        "Check the pods' replicas restored in DIRECTORY (<pod>.sqlite3 each, by the chart's"
        " backup.verify CronJob): each must be an intact database of this app whose count does"
        " not lead the pod's live count nor go back from the last verification (kept in"
        " --state). Fails, naming every problem, when any check fails."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--pods", required=True, help="comma-separated pod names")
        parser.add_argument("--state", type=Path, required=True, help="the last verified counts")

    def handle(self, *args: object, **options: object) -> None:
        directory: Path = options["directory"]
        state: Path = options["state"]
        last = json.loads(state.read_text()) if state.exists() else {}
        verified, problems = dict(last), []
        for pod in options["pods"].split(","):
            line, problem, count = replica_verify(
                path=directory / f"{pod}.sqlite3", pod=pod, last=last.get(pod, 0)
            )
            self.stdout.write(line)
            if problem is not None:
                problems.append(problem)
            else:
                verified[pod] = count
        state.write_text(json.dumps(verified, sort_keys=True) + "\n")
        if problems:
            raise CommandError("backup verification failed:\n" + "\n".join(problems))
        self.stdout.write("every replica restores, is intact, and follows its pod")


def replica_verify(*, path: Path, pod: str, last: int) -> tuple[str, str | None, int]:
    """What one restored replica shows: a line to print, the problem (None when it passes) and
    its count. The pod is asked after the restore: its count only grows, so a replica that
    leads it is wrong. A pod that does not answer is not compared, and says so."""
    if not path.exists():
        log = path.with_suffix(".log")
        why = log.read_text().strip().splitlines()[-1:] if log.exists() else []
        problem = f"{pod}: its replica did not restore ({''.join(why) or 'no replica'})"
        return problem, problem, 0
    try:
        count = snapshot_check(path).total
    except SnapshotError as error:
        problem = f"{pod}: {error}"
        return problem, problem, 0
    live = pod_count_ask(pod=pod)
    compared = (
        f"the pod counts {live.visits} (the replica trails by {live.visits - count})"
        if live.visits is not None
        else f"the pod did not answer ({live.error}): not compared"
    )
    line = f"{pod}: the replica restores, intact, {count} visits; {compared}; last verified {last}"
    if live.visits is not None and count > live.visits:
        return line, f"{pod}: the replica counts {count}, more than the pod's {live.visits}", count
    if count < last:
        return line, f"{pod}: the replica counts {count}, back from {last} verified before", count
    return line, None, count
