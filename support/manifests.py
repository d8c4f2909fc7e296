"""The Kubernetes manifests rendered the two ways users render them: kustomize (over a copy of
k8s/ with a throwaway Secret, never the real one) and `helm template` of the chart."""

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from support.tools import ROOT, helm_binary

CHART = ROOT / "k8s" / "chart"
CHECKOV_CONFIG = ROOT / ".checkov.yaml"
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]  # the oldest we support, the newest bundled
COMPONENTS = ["canary", "ondelete"]
# Each variant a user deploys: its kustomization under k8s/, and the chart's values for it.
VARIANTS = {
    "base": ("base", []),
    "ondelete": ("overlays/ondelete", ["--set", "updateStrategy.type=OnDelete"]),
    "canary": ("overlays/canary", ["--set", "updateStrategy.rollingUpdate.partition=2"]),
    "local": ("overlays/local", ["-f", str(CHART / "values-local.yaml")]),
}
# Every render the manifest checks run over: "kustomize:base", ..., "helm:local".
RENDERS = [f"{tool}:{variant}" for tool in ("kustomize", "helm") for variant in VARIANTS]


def render_missing(name: str) -> str | None:
    """Why render `name` cannot be made here (its tool is missing), or None."""
    if name.startswith("kustomize:") and shutil.which("kubectl") is None:
        return "kubectl is not installed (it bundles kustomize): install kubectl"
    if name.startswith("helm:") and helm_binary() is None:
        return "helm is not installed: `make helm` builds it (scripts/helm.sh)"
    return None


def k8s_copy(folder: Path, secret_env: str, *, source: Path = ROOT / "k8s") -> Path:
    """A copy of k8s/ (or of `source`, another release's) in `folder` whose base/secret.env
    holds `secret_env`."""
    tree = folder / "k8s"
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns("secret.env"))
    (tree / "base" / "secret.env").write_text(secret_env)
    return tree


def overlay_with_component(tree: Path, overlay: str, component: str) -> Path:
    """A kustomization in `tree` (a copy of k8s/) putting a component on an overlay, as a user
    composes them: overlays/<overlay>-<component>. The e2e applies local-canary and
    local-ondelete."""
    path = tree / "overlays" / f"{overlay}-{component}"
    path.mkdir(exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f"../{overlay}"],
        "components": [f"../../components/{component}"],
    }
    (path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return path


def kustomize(path: Path) -> str:
    result = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, f"{path}: {result.stderr}"
    return result.stdout


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """helm ARGS in the repository (the caller skips when helm_binary() is None)."""
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, cwd=ROOT)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def render(tree: Path, name: str) -> str:
    """The render `name` ("kustomize:base", "helm:canary", ...) as YAML text."""
    tool, variant = name.split(":")
    kustomization, values = VARIANTS[variant]
    if tool == "kustomize":
        return kustomize(tree / kustomization)
    return helm("template", "app-python", str(CHART), *values).stdout


def parse(text: str) -> dict[tuple[str, str], dict]:
    """A render's objects by (kind, name)."""
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}


def statefulset(objs: dict) -> dict:
    return objs[("StatefulSet", "app-python")]


def container(objs: dict) -> dict:
    return statefulset(objs)["spec"]["template"]["spec"]["containers"][0]


def checkov(binary: str, files: list[Path], config: Path) -> dict:
    """checkov's report on `files` with `config`, run in its folder: checkov also reads the
    .checkov.yaml of the folder it runs in."""
    result = subprocess.run(
        [binary, *(arg for path in files for arg in ("-f", path)),
         "--framework", "kubernetes", "--skip-download", "--compact", "--output", "json",
         "--config-file", config],
        capture_output=True, text=True, cwd=config.parent,
    )  # fmt: skip
    assert result.stdout.startswith("{"), result.stdout + result.stderr
    return json.loads(result.stdout)
