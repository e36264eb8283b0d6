"""How fast mbom hashes a model directory, against sha256sum and model-signing.

Run from the repository root with the project's virtualenv::

    .venv/bin/python -m benchmarks.hashing              # 1 GiB in 4 files
    .venv/bin/python benchmarks/hashing.py --size-gib 4 --files 8 --json

It writes random files under the temporary directory (reused by later runs of
the same size), reads them once so the page cache is warm for every tool, runs
each tool once untimed, then times each as a whole process (start-up and imports
included, as a user pays them) round-robin and keeps the best of ``--repeat``
(wall time, and CPU time, which a shared machine distorts less):

* ``mbom``: ``registry.manifest.hash_tree`` (files in parallel, one per thread);
* ``sha256sum``: coreutils over the same files, one process, one after another;
* ``model-signing``: ``model_signing.hashing.Config().use_file_serialization()``
  with its defaults (SHA-256, 1 MiB reads, a thread pool).

Every tool's per-file SHA-256 must agree with the others, or the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WRITE_CHUNK = 64 * 1024 * 1024

MBOM_CODE = """
import json, sys
from pathlib import Path
from registry.manifest import hash_tree
manifest = hash_tree(Path(sys.argv[1]))
print(json.dumps({entry.path: entry.sha256 for entry in manifest.entries}))
"""

MODEL_SIGNING_CODE = """
import json, sys
import model_signing.hashing
config = model_signing.hashing.Config().use_file_serialization(hashing_algorithm="sha256")
manifest = config.hash(sys.argv[1])
print(json.dumps({d.identifier: d.digest.digest_hex for d in manifest.resource_descriptors()}))
"""


@dataclass(frozen=True)
class Tool:
    """A command that hashes the data directory and prints per-file SHA-256s."""

    name: str
    argv: list[str]
    parse: Callable[[str], dict[str, str]]
    startup_argv: list[str] | None = None  #: The same process doing no hashing.


@dataclass
class Result:
    """The timings of one tool; ``error`` is set when it could not run."""

    tool: str
    seconds: float | None = None
    cpu_seconds: float | None = None  #: user + system CPU time of the best-CPU run.
    startup_seconds: float | None = None
    digests: dict[str, str] | None = None
    error: str | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-gib", type=float, default=1.0, help="total data size (GiB)")
    parser.add_argument("--files", type=int, default=4, help="number of files")
    parser.add_argument("--dir", type=Path, default=None, help="data directory (reused)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tool (best kept)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.size_gib <= 0 or args.files < 1 or args.repeat < 1:
        parser.error("--size-gib, --files and --repeat must be positive")
    return args


def default_dir(total_bytes: int, files: int) -> Path:
    """A data directory under the temporary directory, named by what it holds."""
    return Path(tempfile.gettempdir()) / f"mbom-bench-hashing-{total_bytes}B-{files}files"


def ensure_data(directory: Path, total_bytes: int, files: int) -> list[str]:
    """Create (or reuse) ``files`` random files totalling ``total_bytes``; their names."""
    directory.mkdir(parents=True, exist_ok=True)
    sizes = [total_bytes // files] * files
    sizes[-1] += total_bytes - sum(sizes)
    names = [f"shard-{index:02d}.bin" for index in range(files)]
    unexpected = {path.name for path in directory.iterdir()} - set(names)
    if unexpected:
        # Every tool hashes the whole directory: stray files would skew the run.
        sys.exit(f"{directory} holds other files ({', '.join(sorted(unexpected))}); use --dir")
    for name, size in zip(names, sizes, strict=True):
        path = directory / name
        if not path.exists() or path.stat().st_size != size:
            write_random(path, size)
    return names


def write_random(path: Path, size: int) -> None:
    """Write ``size`` random bytes: incompressible, like real weights."""
    print(f"writing {size / 2**20:.0f} MiB of random data to {path}", file=sys.stderr)
    with path.open("wb") as stream:
        remaining = size
        while remaining:
            chunk = os.urandom(min(WRITE_CHUNK, remaining))
            stream.write(chunk)
            remaining -= len(chunk)


def warm_page_cache(directory: Path, names: list[str]) -> None:
    """Read every file once so all tools hash from memory, not from disk."""
    buffer = memoryview(bytearray(WRITE_CHUNK))
    for name in names:
        with (directory / name).open("rb", buffering=0) as stream:
            while stream.readinto(buffer):
                pass


def build_tools(directory: Path, names: list[str]) -> list[Tool]:
    """The three commands, each hashing the same files."""
    python = sys.executable
    return [
        Tool("mbom", [python, "-c", MBOM_CODE, str(directory)], json.loads,
             [python, "-c", "import registry.manifest"]),
        Tool("sha256sum", ["sha256sum", *names], parse_sha256sum),
        Tool("model-signing", [python, "-c", MODEL_SIGNING_CODE, str(directory)], json.loads,
             [python, "-c", "import model_signing.hashing"]),
    ]  # fmt: skip


def parse_sha256sum(stdout: str) -> dict[str, str]:
    """``{file name: hex}`` from ``sha256sum`` output lines ``<hex>  <name>``."""
    pairs = (line.split(maxsplit=1) for line in stdout.splitlines() if line)
    return {name.lstrip("*"): digest for digest, name in pairs}


def run_once(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall time and CPU time (user + system) of one whole process, and its stdout.

    CPU time is what a busy, shared machine distorts least: wall time also
    counts the time other work held the cores.
    """
    # The repository first on the path: `registry` imports without an install.
    paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    cpu_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"exit {done.returncode}: {last}")
    return elapsed, cpu, done.stdout


def _children_cpu() -> float:
    """User + system CPU seconds of all waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(tools: list[Tool], directory: Path, repeat: int) -> list[Result]:
    """One untimed run per tool, then ``repeat`` timed rounds, round-robin."""
    results = {tool.name: Result(tool.name) for tool in tools}
    for tool in tools:
        try:
            _, _, stdout = run_once(tool.argv, directory)
            results[tool.name].digests = tool.parse(stdout)
        except (RuntimeError, OSError) as exc:  # a tool missing or broken here
            results[tool.name].error = str(exc)
    runnable = [tool for tool in tools if results[tool.name].error is None]
    for _ in range(repeat):
        # Round-robin, so a noisy moment on the machine hurts every tool alike.
        for tool in runnable:
            record_best(results[tool.name], tool, directory)
    return [results[tool.name] for tool in tools]


def record_best(result: Result, tool: Tool, directory: Path) -> None:
    """Time one run of ``tool`` (and of its start-up alone) and keep the best."""
    elapsed, cpu, _ = run_once(tool.argv, directory)
    result.seconds = min(elapsed, result.seconds or elapsed)
    result.cpu_seconds = min(cpu, result.cpu_seconds or cpu)
    if tool.startup_argv is not None:
        startup, _, _ = run_once(tool.startup_argv, REPO_ROOT)
        result.startup_seconds = min(startup, result.startup_seconds or startup)


def disagreements(results: list[Result]) -> list[str]:
    """Files whose SHA-256 differs between the tools that ran, or that one lacks."""
    ran = [result for result in results if result.digests is not None]
    if not ran:
        return ["no tool ran"]
    reference = ran[0]
    problems = []
    for other in ran[1:]:
        if other.digests != reference.digests:
            problems.append(f"{other.tool} disagrees with {reference.tool}")
    return problems


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "sha_ni": " sha_ni" in flags,
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "sha256sum": _first_line(["sha256sum", "--version"]),
        "model_signing": _package_version("model-signing"),
        # Other work on the machine skews every number: say how busy it was.
        "loadavg_1min": os.getloadavg()[0],
    }


def _first_line(argv: list[str]) -> str:
    """First output line of a command, or ``unavailable``."""
    if shutil.which(argv[0]) is None:
        return "unavailable"
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (done.stdout.splitlines() or ["unknown"])[0]


def _package_version(name: str) -> str:
    """Installed version of a distribution, or ``not installed``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def report(results: list[Result], total_bytes: int, files: int, host: dict[str, object]) -> str:
    """The human table: tool, wall seconds, GB/s, ratio to mbom, CPU seconds, start-up."""
    base = next((r.seconds for r in results if r.tool == "mbom" and r.seconds), None)
    lines = [
        f"Hashing {total_bytes / 2**30:.2f} GiB in {files} files, page cache warm, "
        f"whole process, best of the timed runs",
        f"machine: {host['nproc']} CPUs, {host['cpu']}, SHA-NI {host['sha_ni']}, "
        f"Python {host['python']}, {host['openssl']}, load average {host['loadavg_1min']:.2f}",
        "",
        f"{'tool':<15}{'seconds':>9}{'GB/s':>8}{'vs mbom':>9}{'CPU s':>8}{'start-up s':>12}",
    ]
    for result in results:
        if result.seconds is None:
            lines.append(f"{result.tool:<15}  not run: {result.error}")
            continue
        ratio = f"{result.seconds / base:.2f}x" if base else "-"
        startup = f"{result.startup_seconds:.3f}" if result.startup_seconds else "-"
        lines.append(
            f"{result.tool:<15}{result.seconds:>9.3f}{total_bytes / 1e9 / result.seconds:>8.2f}"
            f"{ratio:>9}{result.cpu_seconds or 0:>8.3f}{startup:>12}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Prepare the data, measure, check agreement, print; non-zero on disagreement."""
    args = parse_args(argv)
    total_bytes = int(args.size_gib * 2**30)
    directory = args.dir or default_dir(total_bytes, args.files)
    names = ensure_data(directory, total_bytes, args.files)
    warm_page_cache(directory, names)
    results = measure(build_tools(directory, names), directory, args.repeat)
    problems = disagreements(results)
    host = machine()
    if args.json:
        print(json.dumps(_as_json(results, total_bytes, args, host, problems), indent=2))
    else:
        print(report(results, total_bytes, args.files, host))
        agreeing = ", ".join(r.tool for r in results if r.digests is not None)
        print("\nper-file SHA-256: " + ("; ".join(problems) or f"identical ({agreeing})"))
    return 1 if problems else 0


def _as_json(
    results: list[Result],
    total_bytes: int,
    args: argparse.Namespace,
    host: dict[str, object],
    problems: list[str],
) -> dict[str, object]:
    """The machine-readable report."""
    return {
        "total_bytes": total_bytes,
        "files": args.files,
        "repeat": args.repeat,
        "machine": host,
        "agreement": problems or "identical",
        "results": [
            {
                "tool": r.tool,
                "seconds": r.seconds,
                "gb_per_s": total_bytes / 1e9 / r.seconds if r.seconds else None,
                "cpu_seconds": r.cpu_seconds,
                "startup_seconds": r.startup_seconds,
                "error": r.error,
            }
            for r in results
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
