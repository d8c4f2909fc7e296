"""scripts/vulncheck.py, the govulncheck run of `make vulncheck`: how it reads govulncheck's JSON,
what fails the check, and that it tells a stripped binary (whose findings would be every
vulnerability of its modules, linked or not) from one with its symbol table, on binaries the
real `go` builds. The run itself, on the real Helm and Litestream builds, is CI's step."""

import importlib.util
import json
import shutil
import subprocess

import pytest

from support.tools import ROOT

spec = importlib.util.spec_from_file_location("vulncheck", ROOT / "scripts" / "vulncheck.py")
vulncheck = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vulncheck)


@pytest.mark.skipif(shutil.which("go") is None, reason="no go command to build a binary with")
def test_a_stripped_binary_is_told_from_one_with_its_symbol_table(tmp_path):
    (tmp_path / "go.mod").write_text("module hello\n\ngo 1.21\n")
    (tmp_path / "main.go").write_text('package main\n\nfunc main() { println("hello") }\n')
    for flags, name in [("-s -w", "stripped"), ("-w", "symbols")]:
        build = ["go", "build", "-trimpath", "-ldflags", flags, "-o", name, "."]
        subprocess.run(build, cwd=tmp_path, check=True, capture_output=True)
    assert not vulncheck.symbol_table(tmp_path / "stripped")
    assert vulncheck.symbol_table(tmp_path / "symbols")


def stream(*messages: dict) -> str:
    """govulncheck's -format json: one JSON object after another, indented, no separator."""
    return "".join(json.dumps(message, indent=2) for message in messages)


OSV = {"osv": {"id": "GO-2026-0001", "summary": "Panic on odd frames in example.com/zip"}}
OTHER = {"osv": {"id": "GO-2026-0002", "summary": "Slow parse in example.com/html"}}


def finding(osv: str, **frame: str) -> dict:
    return {"finding": {"osv": osv, "fixed_version": "v1.2.0", "trace": [frame]}}


def test_only_vulnerable_functions_the_binary_holds_are_findings():
    found = vulncheck.findings(
        stream(
            {"config": {"protocol_version": "v1.0.0"}},
            OSV,
            OTHER,
            # module and package level: the binary requires it, but holds none of its functions
            finding("GO-2026-0002", module="example.com/html", version="v1.0.0"),
            finding("GO-2026-0002", module="example.com/html", package="example.com/html"),
            finding("GO-2026-0001", module="example.com/zip", version="v1.0.0"),
            finding(
                "GO-2026-0001",
                module="example.com/zip",
                version="v1.0.0",
                package="example.com/zip/huff",
                function="ReadTable",
            ),
            finding(
                "GO-2026-0001",
                module="example.com/zip",
                version="v1.0.0",
                package="example.com/zip/huff",
                function="Close",
                receiver="Reader",
            ),
        )
    )
    assert found == {
        "GO-2026-0001": "Panic on odd frames in example.com/zip (example.com/zip@v1.0.0, fixed in"
        " v1.2.0; huff.ReadTable, huff.Reader.Close)"
    }


def test_a_finding_not_accepted_fails_and_so_does_an_acceptance_found_no_more():
    found = {"GO-2026-0001": "what", "GO-2026-0003": "what else"}
    accepted = {
        ("litestream", "GO-2026-0001"): "why",
        ("litestream", "GO-2026-0009"): "fixed since",
        ("helm", "GO-2026-0003"): "Helm's, not Litestream's",
    }
    assert vulncheck.verdicts("litestream", found, accepted) == [
        "litestream: GO-2026-0001 what: accepted, why",
        "FAIL litestream: GO-2026-0003 what else: fix it, or list it in ACCEPTED with why",
        "FAIL litestream: GO-2026-0009 is accepted but no longer found: remove it",
    ]
    assert vulncheck.verdicts("helm", {}, {}) == []
