"""How well mbom's static scanner catches hostile model files, against modelscan,
picklescan and fickling, and how fast each scans a >= 500 MB checkpoint.

Run from the repository root with the project's virtualenv::

    .venv/bin/python -m benchmarks.scan_bench                    # corpus under $TMPDIR
    .venv/bin/python -m benchmarks.scan_bench --corpus DIR --json

The corpus (``benchmarks.scan_corpus``) is built first when ``DIR/manifest.json``
is missing, with the big checkpoint. Every tool scans every corpus file in its
own process, one file per call (start-up and imports included, as a user pays
them), two calls at a time:

* ``mbom``: ``scanning.static.scan_path(FILE)`` in ``python -c`` (the code of
  ``mbom scan``), judged on the report's verdict;
* ``modelscan``: ``modelscan -p FILE -r json -o OUT --show-skipped``, judged on
  the JSON (issues by severity, errors, skipped);
* ``picklescan``: ``picklescan --strict --path FILE`` (unknown globals are
  dangerous), judged on the exit code and the "dangerous import" lines;
* ``fickling``: its Python scanning API in ``python -c``:
  ``fickling.scan_zip_archive(FILE, graceful=True)`` for zips, else
  ``fickling.scan_file(FILE, graceful=True)`` (its CLI, ``fickling
  --check-safety``, crashes on PyTorch zips: "Add support for Pickle opcode
  PERSID"), judged on the worst severity of its analyses; what it reports as
  "invalid opcode" or an interpretation error is a parse failure (``E``).

Each answer is one mark: ``M`` flagged as malicious/dangerous, ``S`` flagged as
suspicious, ``E`` the tool could not scan the file (error, crash, time-out),
``~`` the tool skipped the file as unsupported, ``.`` clean. A hostile file is
*caught* when the mark is M, S or E (an error stops a pipeline as surely as a
finding); a benign file is *flagged* on the same marks. ``~`` is neither: it is
what a directory scan does silently.

Throughput: each tool scans the big checkpoint once untimed (page cache warm),
then ``--repeat`` rounds run every tool in turn; each tool's best whole-process
wall time gives MB/s (10^6 B/s).
``python -c pass`` is timed alongside: the interpreter start-up every tool pays.

The modelscan, picklescan and fickling executables are looked up beside this
Python, then in ``--peers-venv`` (default ``/tmp/peers-venv``), then on PATH: a
tool whose dependencies clash with mbom's (modelscan pins ``rich<15``) can live
in its own virtualenv. A tool that is not found is reported as missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import scan_corpus

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = Path(tempfile.gettempdir()) / "mbom-scan-corpus"
DEFAULT_PEERS_VENV = Path("/tmp/peers-venv")
SCAN_TIMEOUT_S = 300
CAUGHT = frozenset("MSE")

MBOM_CODE = """
import json, sys
from pathlib import Path
from scanning.static import scan_path
print(json.dumps(scan_path(Path(sys.argv[1])).to_json()))
"""

FICKLING_CODE = """
import json, sys, zipfile
import fickling
from fickling.analysis import Severity
path = sys.argv[1]
if zipfile.is_zipfile(path):
    results = list(fickling.scan_zip_archive(path, graceful=True).values())
else:
    results = [fickling.scan_file(path, graceful=True)]
worst, errors = Severity.LIKELY_SAFE, []
for result in results:
    errors.extend(result.errors)
    for analysis in result.results:
        for item in analysis.results:
            # "invalid opcode" and interpretation errors say "could not parse", not "found"
            if "invalid opcode" in str(item) or item.analysis_name == "InterpretationError":
                errors.append(str(item))
            elif item.severity > worst:
                worst = item.severity
print(json.dumps({"severity": worst.name, "scanned": len(results), "errors": errors}))
"""


@dataclass(frozen=True)
class Outcome:
    """One tool's answer on one file."""

    mark: str  # M, S, E, ~ or .
    detail: str
    seconds: float


@dataclass(frozen=True)
class Tool:
    """A scanner run as a subprocess on one file, and how to read its answer."""

    name: str
    version: str
    command: Callable[[Path, Path], list[str]]  # (file, scratch dir) -> argv
    judge: Callable[[subprocess.CompletedProcess[str], Path], tuple[str, str]]
    cwd: Path | None = None

    def scan(self, path: Path) -> Outcome:
        """Scan ``path`` in a fresh process; a time-out is an ``E``."""
        with tempfile.TemporaryDirectory(prefix=f"scan-bench-{self.name}-") as scratch:
            started = time.perf_counter()
            try:
                result = subprocess.run(
                    self.command(path, Path(scratch)),
                    cwd=self.cwd or scratch,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=SCAN_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return Outcome("E", f"timed out after {SCAN_TIMEOUT_S} s", SCAN_TIMEOUT_S)
            seconds = time.perf_counter() - started
            mark, detail = self.judge(result, Path(scratch))
            return Outcome(mark, detail, seconds)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:200] if lines else ""


def _crash(result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    return "E", f"exit {result.returncode}: {_last_line(result.stderr or result.stdout)}"


# --- mbom -----------------------------------------------------------------------------


def _judge_mbom(result: subprocess.CompletedProcess[str], _scratch: Path) -> tuple[str, str]:
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return _crash(result)
    mark = {"malicious": "M", "suspicious": "S", "error": "E", "clean": "."}[report["verdict"]]
    ranked = sorted(report["findings"], key=lambda f: _SEVERITY_ORDER.get(f["severity"], 0))
    worst = ranked[-1] if ranked else None
    detail = f"{worst['kind']}: {worst['detail']}" if worst else ""
    return mark, detail[:200]


_SEVERITY_ORDER = {"info": 0, "suspicious": 1, "error": 2, "malicious": 3}


def _mbom_tool() -> Tool | str:
    if importlib.util.find_spec("scanning.static") is None:
        return "scanning.static is not importable"
    return Tool(
        name="mbom",
        version=_git_describe(),
        command=lambda path, _scratch: [sys.executable, "-c", MBOM_CODE, str(path)],
        judge=_judge_mbom,
        cwd=REPO_ROOT,
    )


def _git_describe() -> str:
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return f"git {result.stdout.strip() or 'unknown'}"


# --- modelscan ------------------------------------------------------------------------


def _judge_modelscan(result: subprocess.CompletedProcess[str], scratch: Path) -> tuple[str, str]:
    try:
        report = json.loads((scratch / "report.json").read_text())
    except (OSError, json.JSONDecodeError):
        return _crash(result)
    issues = report.get("issues", [])
    severities = {issue["severity"] for issue in issues}
    names = ", ".join(sorted({f"{i.get('module')}.{i.get('operator')}" for i in issues}))[:200]
    if severities & {"CRITICAL", "HIGH"}:
        return "M", names
    if severities:
        return "S", names
    if report.get("errors"):
        return "E", str(report["errors"][0].get("description", report["errors"][0]))[:200]
    summary = report.get("summary", {})
    if summary.get("scanned", {}).get("total_scanned", 0) == 0:
        skipped = summary.get("skipped", {}).get("skipped_files", [])
        return "~", (skipped[0].get("description", "") if skipped else "nothing scanned")[:200]
    return ".", ""


def _modelscan_tool(peers: Path) -> Tool | str:
    exe = _find_executable("modelscan", peers)
    if exe is None:
        return "modelscan not found"
    return Tool(
        name="modelscan",
        version=_version(exe, "modelscan"),
        command=lambda path, scratch: [
            str(exe),
            "-p",
            str(path),
            "-r",
            "json",
            "-o",
            str(scratch / "report.json"),
            "--show-skipped",
        ],  # fmt: skip
        judge=_judge_modelscan,
    )


# --- picklescan -----------------------------------------------------------------------


def _judge_picklescan(result: subprocess.CompletedProcess[str], _scratch: Path) -> tuple[str, str]:
    output = result.stdout + result.stderr
    dangerous = [
        line.split("dangerous import ", 1)[1].replace(" FOUND", "")
        for line in output.splitlines()
        if "dangerous import " in line
    ]
    detail = ", ".join(sorted(set(dangerous)))[:200]
    if dangerous:
        return "M", detail
    if result.returncode == 0:
        return ".", ""
    return _crash(result)


def _picklescan_tool(peers: Path) -> Tool | str:
    exe = _find_executable("picklescan", peers)
    if exe is None:
        return "picklescan not found"
    return Tool(
        name="picklescan",
        version=_version(exe, "picklescan"),
        command=lambda path, _scratch: [str(exe), "--strict", "--path", str(path)],
        judge=_judge_picklescan,
    )


# --- fickling -------------------------------------------------------------------------

_FICKLING_MARKS = {
    "LIKELY_SAFE": ".",
    "POSSIBLY_UNSAFE": "S",
    "SUSPICIOUS": "S",
    "LIKELY_UNSAFE": "M",
    "LIKELY_OVERTLY_MALICIOUS": "M",
    "OVERTLY_MALICIOUS": "M",
}


def _judge_fickling(result: subprocess.CompletedProcess[str], _scratch: Path) -> tuple[str, str]:
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return _crash(result)
    mark = _FICKLING_MARKS[report["severity"]]
    if report["scanned"] == 0:
        return "~", "no pickle member (.pkl/.pickle/.bin) in the zip"
    if report["errors"] and mark == ".":
        return "E", report["errors"][0][:200]
    return mark, report["severity"]


def _fickling_tool(peers: Path) -> Tool | str:
    python = _python_with("fickling", peers)
    if python is None:
        return "fickling not importable"
    return Tool(
        name="fickling",
        version=_version(python.parent / "fickling", "fickling"),
        command=lambda path, _scratch: [str(python), "-c", FICKLING_CODE, str(path)],
        judge=_judge_fickling,
    )


def _startup_tool() -> Tool:
    """``python -c pass``: the floor under every whole-process time."""
    return Tool(
        name="(python -c pass)",
        version=platform.python_version(),
        command=lambda _path, _scratch: [sys.executable, "-c", "pass"],
        judge=lambda _result, _scratch: (".", ""),
    )


# --- locating the peers ---------------------------------------------------------------


def _find_executable(name: str, peers: Path) -> Path | None:
    for folder in (Path(sys.executable).parent, peers / "bin"):
        if (folder / name).is_file():
            return folder / name
    found = shutil.which(name)
    return Path(found) if found else None


def _python_with(module: str, peers: Path) -> Path | None:
    if importlib.util.find_spec(module) is not None:
        return Path(sys.executable)
    candidate = peers / "bin" / "python"
    probe = [str(candidate), "-c", f"import {module}"]
    if (
        candidate.is_file()
        and subprocess.run(probe, capture_output=True, check=False).returncode == 0
    ):
        return candidate
    return None


def _version(exe: Path, distribution: str) -> str:
    """The installed version, read by the tool's own interpreter."""
    python = exe.parent / "python"
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    where = "" if exe.parent == Path(sys.executable).parent else f" ({exe.parent.parent})"
    return (result.stdout.strip() or "unknown") + where


def tools(peers: Path) -> tuple[list[Tool], dict[str, str]]:
    """The tools that can run here, and why the others cannot."""
    found: list[Tool] = []
    missing: dict[str, str] = {}
    for make in (_mbom_tool, lambda: _modelscan_tool(peers), lambda: _picklescan_tool(peers),
                 lambda: _fickling_tool(peers)):  # fmt: skip
        tool = make()
        if isinstance(tool, Tool):
            found.append(tool)
        else:
            missing[tool.split()[0]] = tool
    return found, missing


# ---------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------


def run_efficacy(
    corpus: Path, files: list[dict[str, Any]], scanners: list[Tool], jobs: int
) -> None:
    """Scan every file with every tool; store each Outcome in ``file["results"]``."""
    jobs_list = [(entry, tool) for entry in files for tool in scanners]

    def scan(job: tuple[dict[str, Any], Tool]) -> Outcome:
        entry, tool = job
        return tool.scan(corpus / entry["file"])

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = list(pool.map(scan, jobs_list))
    for (entry, tool), outcome in zip(jobs_list, outcomes, strict=True):
        entry.setdefault("results", {})[tool.name] = outcome.__dict__


def run_throughput(path: Path, scanners: list[Tool], repeat: int) -> dict[str, dict[str, Any]]:
    """Best whole-process wall time of each tool (and of a bare interpreter) on the big file."""
    with path.open("rb") as handle:  # warm the page cache for every tool alike
        while handle.read(64 << 20):
            pass
    size = path.stat().st_size
    timed = [*scanners, _startup_tool()]
    first = {tool.name: tool.scan(path) for tool in timed}  # untimed warm-up
    best = {tool.name: float("inf") for tool in timed}
    for _ in range(repeat):  # round-robin, so a busy moment hits every tool alike
        for tool in timed:
            best[tool.name] = min(best[tool.name], tool.scan(path).seconds)
    return {
        name: {
            "seconds": round(seconds, 3),
            "mb_per_s": round(size / 1e6 / seconds, 1),
            "mark": first[name].mark,
            "detail": first[name].detail,
        }
        for name, seconds in best.items()
    }


def summarize(files: list[dict[str, Any]], names: list[str]) -> dict[str, dict[str, Any]]:
    """Per tool: hostile files caught (and how), benign files flagged."""
    hostile = [f for f in files if f["kind"] != "benign"]
    benign = [f for f in files if f["kind"] == "benign"]
    summary = {}
    for name in names:
        marks = [f["results"][name]["mark"] for f in hostile]
        summary[name] = {
            "caught": sum(m in CAUGHT for m in marks),
            "hostile": len(hostile),
            "as_malicious": marks.count("M"),
            "as_suspicious": marks.count("S"),
            "as_error": marks.count("E"),
            "benign_flagged": sum(f["results"][name]["mark"] in CAUGHT for f in benign),
            "benign": len(benign),
            "missed": [f["file"] for f in hostile if f["results"][name]["mark"] not in CAUGHT],
            "false_positives": [f["file"] for f in benign if f["results"][name]["mark"] in CAUGHT],
        }
    return summary


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    """The Markdown tables: summary, throughput, hit matrix."""
    names = [tool["name"] for tool in result["tools"]]
    summary, speed = result["summary"], result.get("throughput", {})
    rows = []
    for tool in result["tools"]:
        s, t = summary[tool["name"]], speed.get(tool["name"])
        rows.append([
            f"**{tool['name']}** {tool['version']}",
            f"{s['caught']}/{s['hostile']}",
            f"{s['as_malicious']} / {s['as_suspicious']} / {s['as_error']}",
            f"{s['benign_flagged']}/{s['benign']}",
            f"{t['mb_per_s']:,.0f} MB/s ({t['seconds']:.2f} s)" if t else "n/a",
        ])  # fmt: skip
    parts = [
        _table(["tool", "hostile caught", "as M / S / E", "benign flagged", "big checkpoint"], rows)
    ]
    baseline = speed.get("(python -c pass)")
    if baseline:
        parts.append(f"Interpreter start-up alone (`python -c pass`): {baseline['seconds']:.2f} s.")
    if result.get("missing"):
        parts.append("Not run: " + "; ".join(f"{k} ({v})" for k, v in result["missing"].items()))
    if not result["files"]:
        return "\n\n".join(parts)
    matrix = []
    for entry in result["files"]:
        marks = [f"`{entry['results'][n]['mark']}`" for n in names]
        name = Path(entry["file"]).name
        matrix.append([f"{name}", entry["technique"], *marks])
    parts.append(_table(["file", "technique", *names], matrix))
    return "\n\n".join(parts)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.scan_bench [--corpus DIR] [--json]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs on the big checkpoint")
    parser.add_argument("--jobs", type=int, default=2, help="scans run in parallel")
    parser.add_argument("--peers-venv", type=Path, default=DEFAULT_PEERS_VENV)
    parser.add_argument("--no-throughput", action="store_true", help="skip the big checkpoint")
    parser.add_argument("--no-efficacy", action="store_true", help="only the big checkpoint")
    args = parser.parse_args(argv)

    manifest_path = args.corpus / "manifest.json"
    if not manifest_path.exists():
        print(f"building the corpus in {args.corpus} ...", file=sys.stderr)
        scan_corpus.build(args.corpus, big=not args.no_throughput)
    manifest = json.loads(manifest_path.read_text())
    scanners, missing = tools(args.peers_venv)
    files = [] if args.no_efficacy else manifest["files"]
    started = time.perf_counter()
    run_efficacy(args.corpus, files, scanners, args.jobs)
    result: dict[str, Any] = {
        "machine": machine(),
        "corpus": str(args.corpus),
        "tools": [{"name": t.name, "version": t.version} for t in scanners],
        "missing": missing,
        "files": files,
        "summary": summarize(files, [t.name for t in scanners]),
        "efficacy_seconds": round(time.perf_counter() - started, 1),
    }
    if not args.no_throughput:
        big = scan_corpus.write_big_checkpoint(args.corpus)
        result["big_checkpoint"] = {"file": str(big), "size": big.stat().st_size}
        result["throughput"] = run_throughput(big, scanners, args.repeat)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(render(result))
        box, size = result["machine"], result.get("big_checkpoint", {}).get("size", 0)
        load = " ".join(str(x) for x in box["load_average"])
        print(
            f"\n{box['platform']}, Python {box['python']}, {box['cpus']} CPUs, load average "
            f"{load}; big checkpoint {size / 1e6:,.0f} MB; efficacy run "
            f"{result['efficacy_seconds']} s"
        )


if __name__ == "__main__":
    main()
