"""govulncheck on the Helm and Litestream builds, without vuln.go.dev: `make vulncheck`.

    python3 scripts/vulncheck.py [BINARY...]     (default: Helm and Litestream, built if missing)

The Go vulnerability database is made from golang.org/x/vulndb, which the Go module proxy serves:
its newest commit, as a pseudo-version the go command checks against Go's checksum database.
Its OSV reports are indexed by vulndb's own cmd/indexdb into the layout govulncheck reads with
`-db file://`, once per snapshot, kept outside the clone. What the check knows is as new as that
snapshot: its date is printed.

govulncheck -mode binary reads a binary's modules, its Go version and its symbol table; a finding
is a vulnerable function the binary holds. Stripped of its symbol table (`-ldflags -s`), a binary
would get every vulnerability of every module it names, linked or not: it is refused, and
scripts/go-tool.sh builds with `-w` only.

The check fails on a finding ACCEPTED does not list, and on an accepted one no longer found.
When the Go module proxy cannot be reached it is skipped, with one line saying so.
"""

import datetime
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "app-python"
VULNDB = "golang.org/x/vulndb"
TRANSCRIPT = ROOT / "docs" / "transcripts" / "vulncheck.txt"
TIMEOUT = 120  # seconds for the database's download (about 25 MB)

# (binary, vulnerability) -> why it stays, and what would end it.
ACCEPTED: dict[tuple[str, str], str] = {}


class Unreachable(Exception):
    """The Go module proxy did not answer."""


def go_tool(name: str) -> str:
    """A tool scripts/go-tool.sh builds (once, cached), or $NAME's binary."""
    return _run("bash", str(ROOT / "scripts" / "go-tool.sh"), name).strip()


def _run(*command: str, **kwargs) -> str:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        sys.exit(f"vulncheck: {' '.join(command)} failed:\n{done.stderr.strip()}")
    return done.stdout


def vulndb() -> tuple[str, Path]:
    """The newest golang.org/x/vulndb on the proxy, indexed: its version and its directory."""
    with tempfile.TemporaryDirectory() as outside_any_module:
        try:
            done = subprocess.run(
                ["go", "mod", "download", "-json", f"{VULNDB}@latest"],
                cwd=outside_any_module,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired as error:
            raise Unreachable(f"no answer within {TIMEOUT} s") from error
    module = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Dir" not in module:
        raise Unreachable(module.get("Error") or done.stderr.strip() or "no answer")
    version = module["Version"]
    indexed = CACHE / f"vulndb-{version}"
    if not (indexed / "index" / "db.json").exists():
        print(f"vulncheck: indexing {VULNDB}@{version}", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tools:
            env = {**os.environ, "GOBIN": tools}
            _run("go", "install", f"{VULNDB}/cmd/indexdb@{version}", env=env, cwd=tools)
            partial = Path(tools) / "db"
            _run(f"{tools}/indexdb", "-vulns", f"{module['Dir']}/data/osv", "-out", str(partial))
            for older in CACHE.glob("vulndb-*"):
                shutil.rmtree(older)
            shutil.move(partial, indexed)
    return version, indexed


def snapshot_date(version: str) -> datetime.date:
    """The commit date of a pseudo-version, v0.0.0-20261105234957-e22db6528018."""
    return datetime.datetime.strptime(version.split("-")[1][:8], "%Y%m%d").date()


def symbol_table(binary: Path) -> bool:
    """Whether an ELF binary has a symbol table (a section of type SHT_SYMTAB)."""
    with binary.open("rb") as file:
        head = file.read(64)
        if head[:4] != b"\x7fELF" or head[4:6] != b"\x02\x01":
            return True  # not 64-bit little-endian ELF: left to govulncheck
        (offset,) = struct.unpack_from("<Q", head, 0x28)
        size, count = struct.unpack_from("<HH", head, 0x3A)
        file.seek(offset)
        sections = file.read(size * count)
    return any(struct.unpack_from("<I", sections, i * size + 4)[0] == 2 for i in range(count))


def findings(stream: str) -> dict[str, str]:
    """What govulncheck's JSON stream reports at the level of functions: id -> summary, module
    and version, the fix, a few of the functions."""
    decoder, at, messages = json.JSONDecoder(), 0, []
    while (at := len(stream) - len(stream[at:].lstrip())) < len(stream):
        message, at = decoder.raw_decode(stream, at)
        messages.append(message)
    summaries = {m["osv"]["id"]: m["osv"].get("summary", "") for m in messages if "osv" in m}
    found: dict[str, tuple[str, str, set[str]]] = {}
    for message in messages:
        finding = message.get("finding") or {}
        frame = (finding.get("trace") or [{}])[0]
        if frame.get("function"):
            where = f"{frame['module']}@{frame.get('version')}"
            fixed = finding.get("fixed_version") or "no fixed version"
            name = ".".join(filter(None, (frame.get("receiver"), frame["function"])))
            if "/" not in name:  # a wildcard is "<package>/*" already
                name = f"{frame.get('package', '').rsplit('/', 1)[-1]}.{name}"
            found.setdefault(finding["osv"], (where, fixed, set()))[2].add(name)
    return {
        osv: f"{summaries.get(osv, '')} ({where}, fixed in {fixed}; {', '.join(sorted(names)[:3])}"
        + (", ...)" if len(names) > 3 else ")")
        for osv, (where, fixed, names) in sorted(found.items())
    }


def verdicts(name: str, found: dict[str, str], accepted: dict[tuple[str, str], str]) -> list[str]:
    """One line per finding and per stale acceptance; those that fail the check start with
    "FAIL"."""
    lines = []
    for osv, what in sorted(found.items()):
        reason = accepted.get((name, osv))
        if reason is None:
            lines.append(f"FAIL {name}: {osv} {what}: fix it, or list it in ACCEPTED with why")
        else:
            lines.append(f"{name}: {osv} {what}: accepted, {reason}")
    for binary, osv in sorted(accepted):
        if binary == name and osv not in found:
            lines.append(f"FAIL {name}: {osv} is accepted but no longer found: remove it")
    return lines


def main() -> int:
    try:
        version, db = vulndb()
    except Unreachable as error:
        print(f"vulncheck: skipped: the Go module proxy cannot be reached ({error})")
        return 0
    govulncheck = go_tool("govulncheck")
    binaries = sys.argv[1:] or [go_tool("helm"), go_tool("litestream")]
    day = snapshot_date(version)
    age = (datetime.date.today() - day).days
    failed = False
    report = []  # the lines printed, kept as the transcript the docs link to

    def say(line: str) -> None:
        print(line)
        report.append(line)

    for binary in map(Path, binaries):
        name = binary.name
        if not symbol_table(binary):
            say(
                f"vulncheck: FAIL {name}: {binary} is stripped (-ldflags -s), so govulncheck"
                " cannot tell which functions it holds: delete it, and scripts/go-tool.sh"
                " builds it again with its symbol table"
            )
            failed = True
            continue
        command = [govulncheck, "-db", f"file://{db}", "-mode", "binary", "-format", "json"]
        done = subprocess.run([*command, str(binary)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"vulncheck: govulncheck failed on {binary}:\n{done.stderr.strip()}")
        found = findings(done.stdout)
        for line in verdicts(name, found, ACCEPTED):
            failed |= line.startswith("FAIL")
            say(f"vulncheck: {line}")
        say(
            f"vulncheck: {name}: {len(found)} found, with {VULNDB}@{version} (of {day},"
            f" {age} days old)"
        )
    if not sys.argv[1:]:  # the project's own binaries: the run the docs show
        TRANSCRIPT.write_text("".join(f"{line}\n" for line in report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
