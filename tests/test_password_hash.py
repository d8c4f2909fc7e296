"""`manage.py password_hash` as a real process: on a terminal (a pseudo-terminal here) and with
stdin a pipe, stdout holds the hash and nothing else, and the password is never echoed."""

import fcntl
import os
import select
import subprocess
import sys
import termios
import time

from django.contrib.auth.hashers import check_password

from support.tools import ROOT

COMMAND = [sys.executable, "manage.py", "password_hash"]
PASSWORD = "s3cret-pass"


def test_from_a_pipe_it_reads_one_line_asks_nothing_and_prints_only_the_hash():
    done = subprocess.run(
        COMMAND, cwd=ROOT, input=f"{PASSWORD}\nignored\n", capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no prompt anywhere
    assert done.stdout.endswith("\n") and done.stdout.count("\n") == 1
    assert done.stdout.startswith("pbkdf2_sha256$")
    assert check_password(PASSWORD, done.stdout.strip())


def test_a_short_or_missing_password_prints_nothing_and_says_why():
    for given, reason in [("short\n", "too short"), ("", "no password given")]:
        done = subprocess.run(COMMAND, cwd=ROOT, input=given, capture_output=True, text=True)
        assert done.returncode == 1
        assert done.stdout == ""
        assert reason in done.stderr and "Traceback" not in done.stderr


def on_a_terminal(answers: list[str]) -> tuple[subprocess.CompletedProcess, str]:
    """Run the command with a pseudo-terminal as its stdin and controlling terminal (getpass
    talks to /dev/tty), stdout and stderr pipes; answer each prompt once it is shown. Returns
    the process and everything the terminal showed."""
    leader, follower = os.openpty()

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        COMMAND,
        cwd=ROOT,
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=controlling_terminal,
    )
    os.close(follower)
    shown, deadline = "", time.monotonic() + 30
    try:
        for prompt, answer in zip(["Password: ", "Password (again): "], answers, strict=True):
            while not shown.endswith(prompt):
                assert time.monotonic() < deadline, f"no prompt {prompt!r}: {shown!r}"
                if select.select([leader], [], [], 1)[0]:
                    shown += os.read(leader, 1024).decode()
            os.write(leader, f"{answer}\n".encode())
        stdout, stderr = process.communicate(timeout=30)
        while select.select([leader], [], [], 0)[0]:
            try:
                shown += os.read(leader, 1024).decode()
            except OSError:  # EIO: the process closed the terminal
                break
    finally:
        os.close(leader)
    return subprocess.CompletedProcess(COMMAND, process.returncode, stdout, stderr), shown


def test_on_a_terminal_it_asks_twice_without_echo_and_prints_only_the_hash():
    done, shown = on_a_terminal([PASSWORD, PASSWORD])
    assert done.returncode == 0, done.stderr
    assert shown.startswith("Password: ") and "Password (again): " in shown
    assert PASSWORD not in shown  # echo off
    assert done.stderr == ""
    assert done.stdout.count("\n") == 1 and check_password(PASSWORD, done.stdout.strip())


def test_on_a_terminal_two_different_passwords_print_nothing():
    done, shown = on_a_terminal([PASSWORD, "s3cret-pasz"])
    assert done.returncode == 1
    assert done.stdout == "" and "the two passwords differ" in done.stderr
    assert PASSWORD not in shown
