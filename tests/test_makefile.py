"""The Makefile as a newcomer meets it: `make` lists every target with what it does, and
`make run` serves on the port it is given."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.clients import http_request, wait_for_file
from support.servers import free_port
from support.tools import ROOT

if shutil.which("make") is None:
    pytest.skip("make is not installed", allow_module_level=True)

MAKE = ["make", "--no-print-directory", "-C", str(ROOT)]


def make_targets() -> set[str]:
    """Every target the Makefile defines, from make's own database (`make -p`), not from a
    pattern of ours: the files it only names (the lock files, the Makefile) say "Not a target"."""
    database = subprocess.run(
        [*MAKE, "--print-data-base", "--question", "--no-builtin-rules", "help"],
        capture_output=True,
        text=True,
    ).stdout
    files = database.split("\n# Files\n", 1)[1].split("\n# files hash-table stats", 1)[0]
    targets = set()
    for entry in files.split("\n\n"):
        lines = [line for line in entry.splitlines() if line]
        if not lines or lines[0] == "# Not a target:":
            continue
        rule = next(line for line in lines if not line.startswith("#"))
        name = rule.split(":", 1)[0]
        if not re.fullmatch(r"\.[A-Z_]+", name):  # .PHONY, .SUFFIXES, ...
            targets.add(name)
    assert ".venv/bin/activate" in targets and "run" in targets, "the database was not read"
    return targets


def test_make_alone_lists_every_target_with_its_description():
    listed = subprocess.run(MAKE, capture_output=True, text=True, check=True).stdout
    assert listed == subprocess.run([*MAKE, "help"], capture_output=True, text=True).stdout
    descriptions = dict(
        re.fullmatch(r"  (\S+) +(.+)", line).groups() for line in listed.splitlines()[1:]
    )
    targets = make_targets()
    assert len(targets) >= 25
    missing = sorted(targets - descriptions.keys())
    assert not missing, f"add a `## description` to the rule line of: {missing}"
    assert not descriptions.keys() - targets, "listed, but not targets"
    assert descriptions["run"].startswith("the site on http://127.0.0.1:8000 (PORT=N)")


def make_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`make run ARGS...` in its own process group, with its data and metrics under tmp_path."""
    environment = {
        **os.environ,
        "VISITS_DATA_DIR": str(tmp_path / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    environment.pop("GUNICORN_CMD_ARGS", None)
    environment.pop("DJANGO_SECRET_KEY", None)  # make run needs none: debug is on
    environment.update(env or {})
    log = (tmp_path / "make-run.log").open("ab")
    process = subprocess.Popen(
        [*MAKE, "run", *args],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return process


def wait_ready(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"make run exited {process.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"nothing ready on {port}:\n{log.read_text()}"
        try:
            if http_request(port, "/readyz", timeout=2)[0] == 200:
                return
        except OSError:
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the whole group (make, gunicorn's master and workers), then wait until every
    one of them is gone."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)
    deadline = time.monotonic() + 30
    while True:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "gunicorn outlived make run"
        time.sleep(0.1)


@pytest.mark.server
def test_make_run_serves_on_the_port_it_is_given_and_passes_gunicorn_arguments_on(tmp_path):
    port, access_log = free_port(), tmp_path / "access.log"
    process = make_run(tmp_path, f"PORT={port}", f"GUNICORN_CMD_ARGS=--access-logfile {access_log}")
    try:
        wait_ready(process, port, tmp_path / "make-run.log")
        assert http_request(port, "/")[0] == 200
        wait_for_file(tmp_path / "data" / "visits", "1\n")
        deadline = time.monotonic() + 10
        while '"GET / HTTP/1.1" 200' not in (access_log.read_text() if access_log.exists() else ""):
            assert time.monotonic() < deadline, "GUNICORN_CMD_ARGS did not reach gunicorn"
            time.sleep(0.05)
    finally:
        stop(process)


@pytest.mark.server
def test_a_bind_in_gunicorn_cmd_args_replaces_the_local_one(tmp_path):
    port = free_port()
    process = make_run(tmp_path, env={"GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}"})
    try:
        wait_ready(process, port, tmp_path / "make-run.log")
        assert http_request(port, "/")[0] == 200
    finally:
        stop(process)
    assert "Listening at: http://127.0.0.1:8000" not in (tmp_path / "make-run.log").read_text()


def test_make_password_hash_prints_the_hash_alone():
    done = subprocess.run(
        [*MAKE, "-s", "password-hash"], input="s3cret-pass\n", capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"pbkdf2_sha256\$\d+\$\S+\n", done.stdout), done.stdout
