"""The repository, the app's version, and the tools the project builds outside the clone."""

import os
import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _versions() -> dict[str, str]:
    lines = (ROOT / "scripts" / "versions.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


VERSIONS = _versions()
# Where scripts/go-tool.sh keeps what it builds (Helm, Litestream).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "app-python"


def _built(name: str, version: str) -> str | None:
    """$NAME (upper case) if set, else the script's cached build; None if neither exists."""
    path = os.environ.get(name.upper()) or str(CACHE / f"{name}-{version}" / name)
    return path if os.access(path, os.X_OK) else None


def helm_binary() -> str | None:
    """The pinned Helm, else any helm on PATH (the chart needs no newer one)."""
    version = f"{VERSIONS['HELM_VERSION']}-{VERSIONS['HELM_GO_TOOLCHAIN']}"
    return _built("helm", version) or shutil.which("helm")  # as scripts/go-tool.sh keeps it


LITESTREAM_MISSING = (
    "litestream is not built: `bash scripts/litestream.sh` builds it"
    " (or set LITESTREAM to a litestream v0.5 binary)"
)


def litestream_binary() -> str | None:
    """The pinned Litestream only: the benchmark reports its version with its figures."""
    version = f"{VERSIONS['LITESTREAM_VERSION']}-{VERSIONS['LITESTREAM_GO_TOOLCHAIN']}"
    return _built("litestream", version)  # as scripts/go-tool.sh keeps it


def checker_binary(name: str) -> str | None:
    """A checker (checkov, hadolint, yamllint, kubernetes-validate) from .venv-checks, which
    `make test` installs, else PATH."""
    local = ROOT / ".venv-checks" / "bin" / name
    return str(local) if local.exists() else shutil.which(name)
