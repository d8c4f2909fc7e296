"""One version for the app, its image and the chart's appVersion, written where each tool reads
it and in CHANGELOG.md, whose top entry is the current version; the previous release recorded
in scripts/versions.env is the changelog's second entry, at the commit recorded beside it."""

import contextlib
import re
import shutil
import subprocess

import pytest
import yaml

from counter.store.schema import version_number
from support.manifests import (
    helm,
    k8s_copy,
    kustomize,
    overlay_with_component,
    parse,
    statefulset,
)
from support.tools import APP_VERSION, ROOT, VERSIONS, helm_binary
from support.upgrades import PREVIOUS_VERSION, previous_release

CHANGELOG = ROOT / "CHANGELOG.md"
ENTRY = re.compile(r"^## \[(?P<version>[^\]]+)\] - (?P<date>\d{4}-\d{2}-\d{2})$", re.M)


def entries() -> list[tuple[str, str]]:
    """(version, text) of each changelog entry, newest first."""
    text = CHANGELOG.read_text()
    found = list(ENTRY.finditer(text))
    ends = [match.start() for match in found[1:]] + [len(text)]
    pairs = zip(found, ends, strict=True)
    return [(match["version"], text[match.end() : end]) for match, end in pairs]


def test_the_app_the_chart_the_image_and_the_changelog_agree():
    chart = yaml.safe_load((ROOT / "k8s" / "chart" / "Chart.yaml").read_text())
    base = yaml.safe_load_all((ROOT / "k8s" / "base" / "app-python.yaml").read_text())
    (statefulset,) = [doc for doc in base if doc and doc["kind"] == "StatefulSet"]
    (version, text), *_ = entries()
    assert chart["appVersion"] == APP_VERSION == version
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"app-python:{APP_VERSION}"
    )  # the chart's default tag is its appVersion; the kustomize base is its render
    assert f"Chart version {chart['version']}." in text


def test_the_changelog_goes_down_from_the_current_version_to_the_previous_release():
    versions = [version for version, _ in entries()]
    assert versions[1] == VERSIONS["PREVIOUS_VERSION"]
    assert [version_number(v) for v in versions] == sorted(map(version_number, versions))[::-1]
    assert len(set(versions)) == len(versions)
    assert "Unreleased" not in CHANGELOG.read_text()  # the top entry is the version as it is


def test_the_previous_release_commit_is_that_version():
    commit = VERSIONS["PREVIOUS_COMMIT"]
    shown = subprocess.run(
        ["git", "show", f"{commit}:pyproject.toml"], cwd=ROOT, capture_output=True, text=True
    )
    if shown.returncode != 0:
        pytest.skip(f"the git history does not hold {commit} (a shallow clone, or no git)")
    assert f'\nversion = "{VERSIONS["PREVIOUS_VERSION"]}"\n' in shown.stdout
    assert f"(commit {commit[:7]})" in dict(entries())[VERSIONS["PREVIOUS_VERSION"]]


def immutable(render: str) -> dict:
    """The StatefulSet's fields the API server refuses to change on a live one."""
    spec = statefulset(parse(render))["spec"]
    fields = ("selector", "serviceName", "podManagementPolicy", "volumeClaimTemplates")
    return {field: spec.get(field) for field in fields}


def test_the_previous_release_upgrades_to_this_one_without_an_immutable_change(tmp_path):
    """What the upgrade e2e installs first (tests/test_e2e_upgrade.py), checked offline: the
    previous release's chart and base render its image with this Helm and kubectl, and their
    StatefulSet differs from this checkout's in no field that would refuse the upgrade."""
    if helm_binary() is None or shutil.which("kubectl") is None:
        pytest.skip("needs helm (`make helm`) and kubectl")
    with contextlib.ExitStack() as stack:
        try:
            old = stack.enter_context(previous_release(tmp_path))
        except LookupError as error:
            pytest.skip(str(error))
        renders = {}
        for version, k8s in {PREVIOUS_VERSION: old / "k8s", APP_VERSION: ROOT / "k8s"}.items():
            tree = k8s_copy(tmp_path / version, "DJANGO_SECRET_KEY=offline-check\n", source=k8s)
            chart = k8s / "chart"
            values = ["-f", str(chart / "values-local.yaml")]
            canary = overlay_with_component(tree, "local", "canary")
            renders[version] = {
                "helm": helm("template", "app-python", str(chart), *values).stdout,
                "kustomize": kustomize(tree / "overlays" / "local"),
                "kustomize-canary": kustomize(canary),
            }
    for tool in ("helm", "kustomize", "kustomize-canary"):
        for version in (PREVIOUS_VERSION, APP_VERSION):
            pod = statefulset(parse(renders[version][tool]))["spec"]["template"]["spec"]
            assert pod["containers"][0]["image"] == f"app-python:{version}", (tool, version)
        assert immutable(renders[PREVIOUS_VERSION][tool]) == immutable(renders[APP_VERSION][tool])
    # The e2e's kustomize rollback applies the old base with the canary component: the same pod
    # template as the old base's, so only app-python-2 (partition 2) goes back to it.
    old_local, old_canary = (
        statefulset(parse(renders[PREVIOUS_VERSION][name]))["spec"]
        for name in ("kustomize", "kustomize-canary")
    )
    assert old_canary["template"] == old_local["template"]
    assert old_canary["updateStrategy"]["rollingUpdate"]["partition"] == 2


def test_the_e2e_s3_runs_the_moto_image_its_requirements_build():
    """`make moto-image` tags the image with the moto pin (e2e/moto/requirements.txt), which
    `make lint` keeps current: the Deployment must name that tag, or the e2e's S3 never starts."""
    (pin,) = re.findall(
        r"^moto\[server\]==(\S+)$", (ROOT / "e2e/moto/requirements.txt").read_text(), re.M
    )
    (deployment,) = [doc for doc in yaml.safe_load_all((ROOT / "e2e/moto/moto.yaml").read_text())
                     if doc and doc["kind"] == "Deployment"]  # fmt: skip
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"app-python-moto:{pin}", "e2e/moto/moto.yaml: set its image's tag"
