"""The real image, built from the Dockerfile and run the way the StatefulSet runs it."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support.clients import http_request, wait_for_file, wait_for_text
from support.servers import SECRET_KEY, free_port
from support.tools import APP_VERSION, ROOT

pytestmark = pytest.mark.container

IMAGE = f"app-python:{APP_VERSION}"
ARTIFACTS = ROOT / "artifacts"


def _engine() -> str | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    ):
        return "docker"
    return "podman" if shutil.which("podman") else None


ENGINE = _engine()
if ENGINE is None:
    pytest.skip("no container engine: install podman or docker", allow_module_level=True)


def engine(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([ENGINE, *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def image() -> str:
    subprocess.run(["make", "image", f"ENGINE={ENGINE}", f"IMAGE={IMAGE}"], cwd=ROOT, check=True)
    return IMAGE


def free_ports(count: int) -> int:
    """A port such that it and the `count - 1` after it are free."""
    while True:
        base = free_port()
        probes = [socket.socket() for _ in range(count)]
        try:
            for offset, probe in enumerate(probes):
                probe.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()


class Container:
    """`docker/podman run` with the pod's restrictions: read-only root, no capabilities,
    no-new-privileges, tmpfs /tmp, the volume on /app/data."""

    def __init__(self, image: str, name: str, volume: str, **env: str) -> None:
        self.name = name
        self.port = free_port()
        health = ["--health-interval=disable"] if ENGINE == "podman" else []
        env_args = [f"--env={k}={v}" for k, v in {"DJANGO_SECRET_KEY": SECRET_KEY, **env}.items()]
        engine("rm", "-f", name, check=False)
        engine(
            "run", "--detach", f"--name={name}", "--read-only", "--cap-drop=ALL",
            "--security-opt=no-new-privileges", "--tmpfs=/tmp", f"--volume={volume}:/app/data",
            f"--publish=127.0.0.1:{self.port}:8000", f"--env=POD_NAME={name}", *env_args,
            *health, image,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> "Container":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if http_request(self.port, "/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            state = json.loads(engine("inspect", self.name).stdout)[0]["State"]
            assert state["Running"], engine("logs", self.name).stderr
            time.sleep(0.1)
        raise AssertionError(f"{self.name} never became ready: {engine('logs', self.name)}")

    def healthcheck(self) -> int:
        """Run the image's HEALTHCHECK now: podman's own command, or its CMD under docker."""
        if ENGINE == "podman":
            return engine("healthcheck", "run", self.name, check=False).returncode
        test = json.loads(engine("inspect", self.name).stdout)[0]["Config"]["Healthcheck"]["Test"]

        return engine("exec", self.name, *test[1:], check=False).returncode

    def get(self, path: str) -> int:
        return http_request(self.port, path)[0]

    def cat_visits(self) -> str:
        return engine("exec", self.name, "cat", "/app/data/visits").stdout

    def wait_visits(self, expected: int) -> None:
        wait_for_text(self.cat_visits, f"{expected}\n", f"{self.name}:/app/data/visits")

    def stop(self) -> int:
        engine("stop", "--time=30", self.name)
        return json.loads(engine("inspect", self.name).stdout)[0]["State"]["ExitCode"]

    def remove(self) -> None:
        engine("rm", "-f", self.name, check=False)


@pytest.fixture
def volume(request) -> str:
    name = f"app-python-test-{request.node.name}"[:60].replace("[", "-").replace("]", "")
    engine("volume", "rm", "-f", name, check=False)
    engine("volume", "create", name)
    yield name
    engine("volume", "rm", "-f", name, check=False)


@pytest.fixture
def containers() -> list[Container]:
    made: list[Container] = []
    yield made
    for container in made:
        container.remove()


def test_image_runs_as_non_root_has_labels_and_reports_size(image):
    config = json.loads(engine("image", "inspect", image).stdout)[0]
    assert config["Config"]["User"] == "10001:10001"
    labels = config["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == APP_VERSION
    assert labels["org.opencontainers.image.title"] == "app-python"
    assert config["Config"]["Cmd"] == ["python", "manage.py", "serve"]
    assert "VISITS_DATA_DIR=/app/data" in config["Config"]["Env"]
    healthcheck = config.get("Healthcheck") or config["Config"]["Healthcheck"]  # podman, docker
    assert "/healthz" in " ".join(healthcheck["Test"])
    size_mb = config["Size"] / 1e6
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "image-size.txt").write_text(f"{image}: {size_mb:.0f} MB\n")
    print(f"\n{image}: {size_mb:.0f} MB")


def test_image_holds_no_tests_caches_or_compilers(image):
    listing = engine(
        "run", "--rm", "--entrypoint=sh", image, "-c",
        "ls -a /app; ls /root/.cache /app/.cache 2>&1;"
        " command -v gcc cc || echo no-compiler; id -u",
    ).stdout  # fmt: skip
    assert "counter" in listing and "staticfiles" in listing
    for unwanted in (".git", "data\n" + "db.sqlite3", "tests", ".venv", "requirements-dev.txt"):
        assert unwanted not in listing
    assert "no-compiler" in listing
    assert listing.strip().endswith("10001")


def test_runs_like_the_pod_counts_stops_cleanly_and_keeps_the_count(image, volume, containers):
    first = Container(image, "app-python-t0", volume)
    containers.append(first)
    first.wait_ready()
    assert [first.get("/") for _ in range(4)] == [200] * 4
    # The page's total comes from RETURNING (the total before the trigger, + 1): check it
    # against the database with the image's own SQLite.
    status, page, _ = http_request(first.port, "/")
    assert status == 200 and b'<strong id="total">5</strong>' in page
    assert first.get("/healthz") == 200
    first.wait_visits(5)
    assert first.healthcheck() == 0
    writable = engine("exec", first.name, "touch", "/app/oops", check=False)
    assert writable.returncode != 0 and "Read-only file system" in writable.stderr
    # SIGTERM reaches gunicorn as PID 1; exit 0 means it stopped gracefully inside --time=30.
    assert first.stop() == 0
    first.remove()
    second = Container(image, "app-python-t0", volume)
    containers.append(second)
    second.wait_ready()
    assert second.cat_visits() == "5\n"
    assert http_request(second.port, "/visits")[1] == b"5\n"


def test_a_legacy_visits_file_on_a_fresh_volume_is_adopted(image, volume, containers):
    engine(
        "run", "--rm", f"--volume={volume}:/app/data", "--entrypoint=sh", image,
        "-c", "echo 41 > /app/data/visits",
    )  # fmt: skip
    container = Container(image, "app-python-t1", volume)
    containers.append(container)
    container.wait_ready()
    assert container.get("/") == 200
    container.wait_visits(42)


def test_works_on_a_volume_prepared_like_fsgroup(image, tmp_path, containers):
    """A host directory owned by root, group 10001, setgid: what Kubernetes' fsGroup makes."""
    data = tmp_path / "pvc"
    data.mkdir()
    os.chown(data, 0, 10001)
    data.chmod(0o2775)
    container = Container(image, "app-python-t2", str(data))
    containers.append(container)
    container.wait_ready()
    assert container.get("/") == 200
    wait_for_file(data / "visits", "1\n")


def test_three_containers_each_count_their_own_visits(image):
    result = subprocess.run(
        ["bash", "scripts/container-demo.sh"],
        cwd=ROOT,
        env={**os.environ, "ENGINE": ENGINE, "IMAGE": image, "PORT": str(free_ports(3))},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts = re.findall(
        r"^\$ \S+ exec (app-python-\d) cat /app/data/visits\n(\d+)$", result.stdout, re.M
    )
    assert counts == [("app-python-0", "8"), ("app-python-1", "2"), ("app-python-2", "10")]
    assert "# sum of the three files: 20" in result.stdout
    cluster = json.loads(result.stdout.strip().splitlines()[-1])
    assert cluster["total"] == 20
    assert [(p["pod"], p["visits"], p["error"]) for p in cluster["pods"]] == [
        ("app-python-0", 8, None),
        ("app-python-1", 2, None),
        ("app-python-2", 10, None),
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    Path(ARTIFACTS / "container-demo.txt").write_text(result.stdout)
