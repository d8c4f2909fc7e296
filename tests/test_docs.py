"""The docs name tests that exist and link to files that exist.

Test names are read from the test modules with `ast`, never imported: the check needs none of
their dependencies, and a test may move to another module (or package) and keep its name.
"""

import ast
import re
from collections import defaultdict
from pathlib import Path

from support.tools import ROOT

DOCS = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "k8s" / "chart" / "README.md",
]
# Wherever the test modules live under these folders (counter/tests/, tests/, or packages
# that replace them), a test keeps its name.
TEST_FOLDERS = [ROOT / "counter", ROOT / "tests"]

FENCED_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
TEST_NAME = re.compile(r"test_\w+")
TEST_MODULE = re.compile(r"(?:[\w.-]+/)*(test_\w+)\.py")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(doc: Path) -> str:
    """The document without its fenced code blocks (commands and output, not references)."""
    return FENCED_BLOCK.sub("", doc.read_text())


def modules_of_tests() -> list[Path]:
    return [path for folder in TEST_FOLDERS for path in folder.rglob("test_*.py")]


def defined_tests() -> set[str]:
    return {
        node.name
        for path in modules_of_tests()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def code_spans_starting_with_test() -> dict[str, list[str]]:
    """Every `test_...` code span in the docs, with the documents it appears in."""
    spans = defaultdict(list)
    for doc in DOCS:
        for span in CODE_SPAN.findall(prose(doc)):
            if span.startswith("test_"):
                spans[span].append(doc.name)
    return spans


def test_every_test_named_in_the_docs_exists():
    defined = defined_tests()
    named = {
        span: docs
        for span, docs in code_spans_starting_with_test().items()
        if TEST_NAME.fullmatch(span)
    }
    # The docs name dozens of tests: far fewer means this check has stopped reading them.
    assert len(named) >= 40, sorted(named)
    assert len(defined) >= 100, "the test modules were not found"
    missing = {name: docs for name, docs in named.items() if name not in defined}
    assert not missing, f"named in the docs, defined in no test module: {missing}"


def test_test_names_in_the_docs_are_written_in_full():
    """`test_a_body_...` cannot be checked; the whole name can be searched for as well."""
    spans = code_spans_starting_with_test()
    partial = {
        span: docs
        for span, docs in spans.items()
        if not TEST_NAME.fullmatch(span) and not TEST_MODULE.fullmatch(span)
    }
    assert not partial, f"write the test's whole name: {partial}"


def test_every_test_module_named_in_the_docs_exists():
    modules = {path.stem for path in modules_of_tests()}
    named = defaultdict(list)
    for doc in DOCS:
        for span in CODE_SPAN.findall(prose(doc)):
            if match := TEST_MODULE.fullmatch(span):
                named[match.group(1)].append(doc.name)
    assert len(named) >= 10, sorted(named)
    missing = {name: docs for name, docs in named.items() if name not in modules}
    assert not missing, f"test modules named in the docs that do not exist: {missing}"


def anchors(doc: Path) -> set[str]:
    """The anchors GitHub makes of a document's headings: lower case, punctuation dropped,
    spaces as hyphens, -1, -2... for repeats."""
    seen: dict[str, int] = defaultdict(int)
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", prose(doc), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


# The sections of docs/kubernetes.md before it was split into the guide, the runbooks and the
# chart's reference (1.2.0): a link to any of them still lands in the guide.
GUIDE_SECTIONS_OF_1_2 = [
    "deploy-on-any-cluster", "the-helm-chart", "verify", "https-with-an-ingress",
    "snapshots-of-a-pods-count", "continuous-backup-with-litestream",
    "replica-generations-a-fence-against-a-stale-pod", "the-database-under-a-careless-operator",
    "hostile-clients-and-the-probes", "why-no-ordering-guarantees", "update-strategies",
    "zero-downtime-operations", "upgrades-and-rollbacks", "storage-and-the-pvc-retention-policy",
    "proof-on-a-real-cluster", "several-nodes-spread-drains-and-a-lost-node",
    "a-lost-node-the-runbook", "the-projects-own-cluster", "clean-up", "alerts",
    "verified-backups",
]  # fmt: skip


def test_every_section_of_the_guide_before_its_split_still_resolves():
    missing = set(GUIDE_SECTIONS_OF_1_2) - anchors(ROOT / "docs" / "kubernetes.md")
    assert not missing, missing


def test_every_transcript_is_quoted_in_the_docs():
    """What a test run wrote is shown where a reader looks for it (the guide, the runbooks,
    the security and testing pages)."""
    quoted = "".join(doc.read_text() for doc in DOCS)
    transcripts = sorted((ROOT / "docs" / "transcripts").glob("*.txt"))
    assert len(transcripts) >= 40, len(transcripts)
    missing = [path.name for path in transcripts if f"transcripts/{path.name}" not in quoted]
    assert not missing, f"transcripts no doc quotes: {missing}"


def test_every_relative_link_in_the_docs_leads_somewhere():
    checked, broken = 0, []
    for doc in DOCS:
        for target in LINK.findall(prose(doc)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            checked += 1
            if not linked.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert checked >= 20, checked
    assert not broken, "\n".join(broken)
