"""How fast ``mbom register`` uploads and ``mbom pull`` downloads a model through ``mbom serve``.

Run from the repository root with the project's virtualenv::

    .venv/bin/python -m benchmarks.store_bench              # 1 GiB in 4 files, 3 runs
    .venv/bin/python -m benchmarks.store_bench --json
    .venv/bin/python -m benchmarks.store_bench --phases     # also: where the time goes

Everything lives in one temporary directory (the server's ``MBOM_HOME``, its
store and the model files share one disk) that is removed at the end. A real
``mbom serve`` runs on loopback with an admin token made by ``mbom tokens
create`` before it starts. Each run writes a *fresh* random model (untimed:
the store is content-addressed, so re-uploading the same bytes would measure
deduplication, not storing), flushes the page cache's dirty pages (``sync``),
then times whole processes, start-up and imports included, as a user pays them:

* ``mbom register DIR`` (upload of every file, the server hashing and writing
  it into its store, then the registry's admission scan) against its floor: one
  Python process copying the same files with ``shutil.copyfile`` and SHA-256ing
  the copies with ``hashlib``, one after another;
* ``mbom pull N@V DEST`` (download, SHA-256 verified while written) against
  ``cp`` of the stored blobs plus ``hashlib`` SHA-256 of the copies.

mbom and floor alternate which goes first from run to run, so neither always
meets a warmer machine. The files are ``.bin`` random bytes: the static scan
reads their first bytes, calls them opaque data and finds them clean, so the
admission scan costs what it costs for real weights and no more.

The server's peak memory is its ``VmHWM``, reset before each operation by
writing ``5`` to ``/proc/PID/clear_refs`` (where the kernel refuses that, the
peak since the server started is reported, and the output says so). mbom makes
files durable (``fsync``) before it calls them stored or pulled; the floors do
not, so ``--phases`` measures what ``fsync`` costs on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import json
import os
import platform
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.manifest import Manifest

REPO_ROOT = Path(__file__).resolve().parent.parent
WRITE_CHUNK = 64 * 1024 * 1024
COMMAND_TIMEOUT = 600.0
STARTUP_TIMEOUT = 60.0
MODEL_NAME = "bench/m"

#: Targets from the issue: mbom's median over its floor's median (and server memory).
REGISTER_TARGET = 1.5
PULL_TARGET = 1.3
RSS_TARGET_MIB = 200.0

COPY_AND_HASH = """
import hashlib, shutil, sys
from pathlib import Path
pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
for source, target in pairs:
    shutil.copyfile(source, target)
for _, target in pairs:
    with open(target, "rb") as stream:
        print(hashlib.file_digest(stream, "sha256").hexdigest(), target)
"""

SERVER_PROFILE_CODE = """
import cProfile, pstats, signal, sys, threading
import uvicorn
from registry.api.server import app
profilers = []
def start_in_thread(*_args):
    profiler = cProfile.Profile()
    profilers.append(profiler)
    sys.setprofile(None)
    profiler.enable()
threading.setprofile(start_in_thread)
# uvicorn re-raises the SIGTERM it shut down on once it restores this handler:
# a no-op, so the stats below are still written.
signal.signal(signal.SIGTERM, lambda *_args: None)
main = cProfile.Profile()
main.enable()
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
main.disable()
stats = pstats.Stats(main)
for profiler in profilers:
    stats.add(profiler)
stats.dump_stats(sys.argv[2])
"""

CP_AND_HASH = """
import hashlib, subprocess, sys
pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
for source, target in pairs:
    subprocess.run(["cp", source, target], check=True)
for _, target in pairs:
    with open(target, "rb") as stream:
        print(hashlib.file_digest(stream, "sha256").hexdigest(), target)
"""


@dataclass(frozen=True)
class Model:
    """One run's model directory and the SHA-256 of each of its files."""

    directory: Path
    digests: dict[str, str]


@dataclass
class Row:
    """One operation's timings: mbom and its floor, seconds per run."""

    operation: str
    target: float
    mbom: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)

    def ratio(self) -> float:
        """mbom's median over the floor's median."""
        return statistics.median(self.mbom) / statistics.median(self.floor)


@dataclass
class Peaks:
    """The server's peak resident memory (MiB) during each upload and each pull."""

    register: list[float] = field(default_factory=list)
    pull: list[float] = field(default_factory=list)
    idle: list[float] = field(default_factory=list)
    method: str = "VmHWM reset before each operation (/proc/PID/clear_refs)"


@dataclass(frozen=True)
class Server:
    """A running ``mbom serve`` and what a client needs to talk to it."""

    process: subprocess.Popen[bytes]
    base_url: str
    token: str


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-gib", type=float, default=1.0, help="model size (GiB)")
    parser.add_argument("--files", type=int, default=4, help="number of files")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (fresh model each)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--phases", action="store_true", help="also time the phases in-process and profile"
    )
    parser.add_argument(
        "--recycle-pages",
        action="store_true",
        help="write and delete a model-sized scratch file before each timed step "
        "(see recycle_pages)",
    )
    args = parser.parse_args(argv)
    if args.size_gib <= 0 or args.files < 1 or args.repeat < 1:
        parser.error("--size-gib, --files and --repeat must be positive")
    return args


def environment(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an mbom process: this checkout first on the path, ``MBOM_HOME``."""
    paths = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBOM_")}
    return {**env, "PYTHONPATH": os.pathsep.join(paths), "MBOM_HOME": str(home), **extra}


def mbom_argv(*args: str) -> list[str]:
    """``mbom ARGS``: the virtualenv's console script, as a user runs it."""
    script = Path(sys.executable).parent / "mbom"
    if script.exists():
        return [str(script), *args]
    launcher = "import sys; from registry.cli import main; sys.exit(main())"
    return [sys.executable, "-c", launcher, *args]


def run_timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of one whole process and its stdout; RuntimeError when it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip() or "no output")[-2000:]
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {done.returncode}:\n{tail}")
    return elapsed, done.stdout


def write_model(directory: Path, total_bytes: int, files: int) -> Model:
    """Random ``.bin`` shards (incompressible, like weights), hashed as they are written."""
    directory.mkdir(parents=True)
    sizes = [total_bytes // files] * files
    sizes[-1] += total_bytes - sum(sizes)
    digests = {}
    for index, size in enumerate(sizes, start=1):
        name = f"model-{index:05d}-of-{files:05d}.bin"
        hasher = hashlib.sha256()
        with (directory / name).open("wb") as stream:
            remaining = size
            while remaining:
                chunk = os.urandom(min(WRITE_CHUNK, remaining))
                hasher.update(chunk)
                stream.write(chunk)
                remaining -= len(chunk)
        digests[name] = hasher.hexdigest()
    os.sync()  # no dirty pages of ours left for a timed operation to wait behind
    return Model(directory, digests)


def create_token(home: Path) -> str:
    """An admin token, made in the server's registry before the server starts."""
    argv = mbom_argv("tokens", "create", "--user", "bench", "--role", "admin", "--json")
    _, stdout = run_timed(argv, environment(home))
    token: str = json.loads(stdout)["token"]
    return token


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def mbom_serve(home: Path, token: str, log: Path) -> Iterator[Server]:
    """``mbom serve`` on loopback, yielded once ``/healthz`` answers; always stopped after."""
    port = free_port()
    with log.open("ab") as sink:
        process = subprocess.Popen(
            mbom_argv("serve", "--port", str(port)),
            env=environment(home),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, process)
            yield Server(process, base_url, token)
        finally:
            stop(process)


def wait_until_healthy(base_url: str, process: subprocess.Popen[bytes]) -> None:
    """Poll ``/healthz`` until it answers 200; fail if the server exits first."""
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mbom serve exited with {process.returncode} during start-up")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/healthz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{base_url}/healthz did not answer within {STARTUP_TIMEOUT:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server, and kill it if it does not go."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux ``clear_refs`` 5); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def blob_path(home: Path, digest: str) -> Path:
    """Where the server's local store keeps a blob (``store/sha256/<2>/<64>``)."""
    return home / "store" / "sha256" / digest[:2] / digest


def check_digests(stdout: str, model: Model) -> None:
    """The floor's ``<hex> <path>`` lines must name the model's digests."""
    got = {Path(path).name: digest for digest, path in (ln.split() for ln in stdout.splitlines())}
    if got != model.digests:
        raise RuntimeError("the floor's SHA-256s disagree with the files written")


def check_pulled(dest: Path, model: Model) -> None:
    """The pulled directory holds exactly the model's files (mbom verified their bytes)."""
    sizes = {p.name: p.stat().st_size for p in dest.iterdir()}
    expected = {name: (model.directory / name).stat().st_size for name in model.digests}
    if sizes != expected:
        raise RuntimeError(f"mbom pull wrote {sorted(sizes)}, expected {sorted(expected)}")


def register_once(server: Server, client_home: Path, model: Model, version: str) -> float:
    """Time ``mbom register`` through the server; the version must come out clean."""
    env = environment(client_home, MBOM_SERVER=server.base_url, MBOM_TOKEN=server.token)
    argv = mbom_argv(
        "register", str(model.directory), "--name", MODEL_NAME, "--version", version, "--json"
    )
    elapsed, stdout = run_timed(argv, env)
    finding = json.loads(stdout).get("finding")
    if finding != "clean":
        raise RuntimeError(f"the bench model registered {finding!r}, not clean: {stdout[:500]}")
    return elapsed


def pull_once(server: Server, client_home: Path, version: str, dest: Path) -> float:
    """Time ``mbom pull`` of the version through the server into ``dest``."""
    env = environment(client_home, MBOM_SERVER=server.base_url, MBOM_TOKEN=server.token)
    elapsed, _ = run_timed(mbom_argv("pull", f"{MODEL_NAME}@{version}", str(dest)), env)
    return elapsed


def floor_once(code: str, pairs: list[tuple[Path, Path]], model: Model) -> float:
    """Time one Python process running ``code`` over (source, target) pairs; check its hashes."""
    target_dir = pairs[0][1].parent
    target_dir.mkdir()
    argv = [sys.executable, "-c", code, *(str(p) for pair in pairs for p in pair)]
    elapsed, stdout = run_timed(argv, dict(os.environ))
    check_digests(stdout, model)
    shutil.rmtree(target_dir)
    return elapsed


@dataclass
class Bench:
    """The temporary directory's layout and the measurements gathered so far."""

    root: Path
    total_bytes: int
    files: int
    register: Row = field(
        default_factory=lambda: Row("register (upload + admission)", REGISTER_TARGET)
    )
    pull: Row = field(default_factory=lambda: Row("pull (download + verify)", PULL_TARGET))
    peaks: Peaks = field(default_factory=Peaks)
    recycle_pages: bool = False

    @property
    def home(self) -> Path:
        """The server's ``MBOM_HOME`` (its database and its store)."""
        return self.root / "server-home"

    @property
    def client_home(self) -> Path:
        """The client's ``MBOM_HOME``: empty, so nothing local is used by mistake."""
        return self.root / "client-home"


def one_run(bench: Bench, server: Server, run: int) -> None:
    """Write a fresh model, then time register and pull against their floors."""
    model = write_model(bench.root / f"model-{run}", bench.total_bytes, bench.files)
    version = f"{run}.0"
    pid = server.process.pid
    exact = reset_peak(pid)
    bench.peaks.idle.append(peak_mib(pid))
    copies = [(model.directory / n, bench.root / "floor" / n) for n in sorted(model.digests)]

    def register() -> None:
        reset_peak(pid)
        bench.register.mbom.append(register_once(server, bench.client_home, model, version))
        bench.peaks.register.append(peak_mib(pid))

    def register_floor() -> None:
        bench.register.floor.append(floor_once(COPY_AND_HASH, copies, model))

    recycle = bench.total_bytes if bench.recycle_pages else 0
    alternate(run, register, register_floor, recycle=bench.root, size=recycle)
    blobs = [
        (blob_path(bench.home, model.digests[n]), bench.root / "floor" / n)
        for n in sorted(model.digests)
    ]
    dest = bench.root / "pulled"

    def pull() -> None:
        reset_peak(pid)
        bench.pull.mbom.append(pull_once(server, bench.client_home, version, dest))
        bench.peaks.pull.append(peak_mib(pid))
        check_pulled(dest, model)
        shutil.rmtree(dest)

    def pull_floor() -> None:
        bench.pull.floor.append(floor_once(CP_AND_HASH, blobs, model))

    alternate(run, pull, pull_floor, recycle=bench.root, size=recycle)
    if not exact:
        bench.peaks.method = "VmHWM since the server started (clear_refs refused): only rises"
    shutil.rmtree(model.directory)


def alternate(
    run: int, mbom: Callable[[], None], floor: Callable[[], None], *, recycle: Path, size: int
) -> None:
    """mbom first on even runs, the floor first on odd ones; ``sync`` before each, then
    (``size`` > 0) that many bytes of recently freed memory for each (:func:`recycle_pages`)."""
    for step in (mbom, floor) if run % 2 == 0 else (floor, mbom):
        os.sync()
        if size:
            recycle_pages(recycle, size)
        step()


def recycle_pages(directory: Path, size: int) -> None:
    """Write and delete a scratch file of ``size`` bytes (untimed): the step timed next
    finds that much memory the kernel has only just freed.

    A virtual machine may hand memory back to its host a couple of seconds after it is
    freed (virtio-balloon free page reporting); the next first touch of such memory
    costs a page fault on the host, 1-3 s per GiB on this project's machine. Without
    this, whichever step ran second reused the pages the first had just freed (the
    pulled copy, the floor's copies) and was measured that much faster, whatever it did.
    """
    block = bytes(WRITE_CHUNK)
    scratch = directory / "recycled-pages"
    with scratch.open("wb") as stream:
        for offset in range(0, size, WRITE_CHUNK):
            stream.write(block[: min(WRITE_CHUNK, size - offset)])
    scratch.unlink()  # before writeback: the dirty pages are dropped, never written


def machine() -> dict[str, object]:
    """What the numbers were measured on, and at which commit."""
    commit = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kib / 2**20),
        "python": platform.python_version(),
        "commit": commit or "unknown",
        "loadavg_1min": os.getloadavg()[0],
    }


def verdict(value: float, target: float) -> str:
    """``pass`` when the value is at or under its target."""
    return "pass" if value <= target else "FAIL"


def table(bench: Bench, host: dict[str, object], repeat: int) -> str:
    """The markdown table: operation, mbom min / median, floor, ratio, target, pass/fail."""
    gib = bench.total_bytes / 2**30
    lines = [
        f"{gib:.2f} GiB in {bench.files} files through mbom serve on loopback, "
        f"{repeat} runs (fresh model each), whole processes",
        f"{host['date']}, {host['nproc']} cores / {host['memory_gib']} GiB, "
        f"Python {host['python']}, commit {host['commit']}, load {host['loadavg_1min']:.2f}",
        "",
        "| operation | mbom s (min / median) | floor s (min / median) | ratio | target | |",
        "|---|---|---|---|---|---|",
    ]
    for row in (bench.register, bench.pull):
        ratio = row.ratio()
        lines.append(
            f"| {row.operation} | {min(row.mbom):.2f} / {statistics.median(row.mbom):.2f} "
            f"| {min(row.floor):.2f} / {statistics.median(row.floor):.2f} | {ratio:.2f}x "
            f"| ≤ {row.target}x | {verdict(ratio, row.target)} |"
        )
    for label, values in (("upload", bench.peaks.register), ("pull", bench.peaks.pull)):
        peak = max(values)
        lines.append(
            f"| server peak RSS during {label} (MiB, max of runs) | {peak:.0f} | – | – "
            f"| < {RSS_TARGET_MIB:.0f} MiB | {verdict(peak, RSS_TARGET_MIB - 1e-9)} |"
        )
    lines += [
        "",
        f"register floor: shutil.copyfile + hashlib SHA-256 of the copies; pull floor: cp of the "
        f"stored blobs + hashlib SHA-256. Server RSS: {bench.peaks.method}; idle "
        f"{max(bench.peaks.idle):.0f} MiB; per run, upload {_mib(bench.peaks.register)}, "
        f"pull {_mib(bench.peaks.pull)}.",
    ]
    return "\n".join(lines)


def _mib(values: list[float]) -> str:
    return " / ".join(f"{value:.0f}" for value in values)


def as_json(bench: Bench, host: dict[str, object], phases: dict[str, object] | None) -> str:
    """Every measurement, machine-readable."""
    rows = {
        key: {
            "mbom_seconds": row.mbom,
            "floor_seconds": row.floor,
            "ratio_of_medians": row.ratio(),
            "target": row.target,
            "pass": row.ratio() <= row.target,
        }
        for key, row in (("register", bench.register), ("pull", bench.pull))
    }
    memory = {
        "register_mib": bench.peaks.register,
        "pull_mib": bench.peaks.pull,
        "idle_mib": bench.peaks.idle,
        "method": bench.peaks.method,
        "target_mib": RSS_TARGET_MIB,
        "pass": max(bench.peaks.register + bench.peaks.pull) < RSS_TARGET_MIB,
    }
    report = {
        "total_bytes": bench.total_bytes,
        "files": bench.files,
        "machine": host,
        "operations": rows,
        "server_peak_rss": memory,
        "phases": phases,
    }
    return json.dumps(report, indent=2)


# --- where the time goes (--phases) --------------------------------------------------------


def timed(action: Callable[[], object]) -> float:
    """Seconds one in-process call takes."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def phases(bench: Bench, server: Server) -> tuple[dict[str, float], dict[str, str]]:
    """Each piece of register and pull timed in this process, and the profiles.

    Client hashing is ``hashlib`` over the files one after another; storing is the
    server's own ``LocalBlobStore.put`` (hash + write + fsync) without HTTP; fsync
    is a plain copy with and without it; upload, admission and pull are the client
    library's calls (``store_files``, ``admit_model``, ``pull``) with no CLI
    start-up. The cheap in-process steps keep the best of two tries.
    """
    model = write_model(bench.root / "model-phases", bench.total_bytes, bench.files)
    paths = [model.directory / name for name in sorted(model.digests)]
    results = _fixed_costs(bench)
    results["client: hashlib sha256, sequential"] = best_of(2, lambda: [_sha256(p) for p in paths])
    results.update(_copy_costs(bench.root, paths))
    results["server store.put (hash + write + fsync), no HTTP"] = _store_put(bench.root, paths)
    profiles = _client_calls(bench, server, model, results)
    results.update(_tiny_model_costs(bench, server))
    profiles["server"] = server_profile(bench, server.token, model)
    shutil.rmtree(model.directory)
    return results, profiles


def best_of(
    tries: int, action: Callable[[], object], cleanup: Callable[[], object] | None = None
) -> float:
    """The fastest of ``tries`` in-process runs, each after a ``sync``, ``cleanup`` untimed."""
    seconds = []
    for _ in range(tries):
        os.sync()
        seconds.append(timed(action))
        if cleanup is not None:
            cleanup()
    return min(seconds)


def _fixed_costs(bench: Bench) -> dict[str, float]:
    """What a CLI process pays before it moves a byte."""
    env = environment(bench.client_home)
    imports = [sys.executable, "-c", "import registry.cli.main, registry.client, httpx"]
    return {
        "cli start-up (mbom --help)": min(run_timed(mbom_argv("--help"), env)[0] for _ in range(3)),
        "python -c import registry.cli.main, registry.client": min(
            run_timed(imports, env)[0] for _ in range(3)
        ),
    }


def _tiny_model_costs(bench: Bench, server: Server) -> dict[str, float]:
    """Whole-process register and pull of a 1 KiB model: what each call pays whatever the size."""
    tiny = write_model(bench.root / "model-tiny", 1024, 1)
    dest = bench.root / "pulled-tiny"
    costs = {
        "mbom register, 1 KiB model (fixed cost)": register_once(
            server, bench.client_home, tiny, "tiny"
        ),
        "mbom pull, 1 KiB model (fixed cost)": pull_once(server, bench.client_home, "tiny", dest),
    }
    shutil.rmtree(dest)
    shutil.rmtree(tiny.directory)
    return costs


def _store_put(root: Path, paths: list[Path]) -> float:
    """The server's storing step alone: ``LocalBlobStore.put_path`` of each file."""
    from registry.store import LocalBlobStore

    scratch = root / "scratch-store"

    def put_all() -> None:
        store = LocalBlobStore(scratch)
        for path in paths:
            store.put_path(path)

    return best_of(2, put_all, lambda: shutil.rmtree(scratch))


def _client_calls(
    bench: Bench, server: Server, model: Model, results: dict[str, float]
) -> dict[str, str]:
    """Upload, admission and pull through the client library, the transfers profiled."""
    from registry.client import RemoteRegistry

    dest = bench.root / "pulled-phases"
    with RemoteRegistry(server.base_url, server.token) as remote:
        stored: list[Manifest] = []
        # The server hashes and writes every uploaded byte even when it holds the
        # blob already, so the second (profiled) upload of the same files costs the same.
        results["upload: RemoteRegistry.store_files"] = best_of(
            1, lambda: stored.append(remote.store_files(model.directory))
        )
        os.sync()
        upload_profile, _ = _profiled(lambda: remote.store_files(model.directory))
        results["admission: RemoteRegistry.admit_model (static scan + record)"] = timed(
            lambda: remote.admit_model(manifest=stored[0], name=MODEL_NAME, version="phases")
        )
        ref = f"{MODEL_NAME}@phases"
        results["pull: RemoteRegistry.pull"] = best_of(
            1, lambda: remote.pull(ref, dest), lambda: shutil.rmtree(dest)
        )
        os.sync()
        pull_profile, _ = _profiled(lambda: remote.pull(ref, dest))
    shutil.rmtree(dest)
    return {"client upload": upload_profile, "client pull": pull_profile}


def server_profile(bench: Bench, token: str, model: Model) -> str:
    """The server's own profile (every thread) over one upload and one pull of ``model``.

    The app runs under uvicorn in a profiled ``python -c`` on the same registry;
    profiling slows it, so read the shares, not the seconds.
    """
    from registry.client import RemoteRegistry

    port = free_port()
    stats_file = bench.root / "server.prof"
    argv = [sys.executable, "-c", SERVER_PROFILE_CODE, str(port), str(stats_file)]
    with (bench.root / "serve.log").open("ab") as sink:
        process = subprocess.Popen(
            argv, env=environment(bench.home), stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, process)
            dest = bench.root / "pulled-profiled"
            with RemoteRegistry(base_url, token) as remote:
                remote.store_files(model.directory)
                remote.pull(f"{MODEL_NAME}@phases", dest)
            shutil.rmtree(dest)
        finally:
            stop(process)
    text = io.StringIO()
    pstats.Stats(str(stats_file), stream=text).sort_stats("tottime").print_stats(20)
    return text.getvalue()


def _sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _copy_costs(root: Path, paths: list[Path]) -> dict[str, float]:
    """A plain copy of the files, then the same copy fsynced: what durability costs."""
    out: dict[str, float] = {}
    target = root / "copy-cost"
    for label, durable in (("copyfile, no fsync", False), ("copyfile + fsync", True)):

        def copy_all(durable: bool = durable) -> None:
            target.mkdir()
            for path in paths:
                _copy(path, target / path.name, durable)

        out[label] = best_of(2, copy_all, lambda: shutil.rmtree(target))
    return out


def _copy(source: Path, target: Path, durable: bool) -> None:
    shutil.copyfile(source, target)
    if durable:
        with target.open("rb+") as stream:
            os.fsync(stream.fileno())


def _profiled(action: Callable[[], object]) -> tuple[str, float]:
    """cProfile of ``action`` in this thread and every thread it starts; the top entries.

    cProfile follows one thread only; the upload runs on a thread pool, so each
    new thread gets a profiler of its own through ``threading.setprofile``.
    """
    profilers: list[cProfile.Profile] = []

    def start_in_thread(*_args: object) -> None:
        profiler = cProfile.Profile()
        profilers.append(profiler)
        sys.setprofile(None)
        profiler.enable()

    main = cProfile.Profile()
    threading.setprofile(start_in_thread)
    main.enable()
    try:
        elapsed = timed(action)
    finally:
        main.disable()
        threading.setprofile(None)
    text = io.StringIO()
    stats = pstats.Stats(main, stream=text)
    for profiler in profilers:
        stats.add(profiler)
    stats.sort_stats("tottime").print_stats(15)
    return text.getvalue(), elapsed


def phases_report(results: dict[str, float], total_bytes: int) -> str:
    """The breakdown as a markdown table with throughput."""
    lines = ["| phase | seconds | GB/s |", "|---|---|---|"]
    fixed = ("start-up", "import", "admission", "fixed")  # costs that do not grow with the bytes
    for label, seconds in results.items():
        per_byte = not any(word in label for word in fixed)
        rate = f"{total_bytes / 1e9 / seconds:.2f}" if per_byte else "–"
        lines.append(f"| {label} | {seconds:.2f} | {rate} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Start the server, run the timed rounds, print the table; non-zero if a target fails."""
    args = parse_args(argv)
    total_bytes = int(args.size_gib * 2**30)
    root = Path(tempfile.mkdtemp(prefix="mbom-store-bench-"))
    try:
        bench = Bench(root, total_bytes, args.files, recycle_pages=args.recycle_pages)
        bench.home.mkdir()
        bench.client_home.mkdir()
        token = create_token(bench.home)
        breakdown: dict[str, float] | None = None
        profiles: dict[str, str] = {}
        for run in range(args.repeat):
            # A fresh server per run: each run's memory figures start from a new process.
            with mbom_serve(bench.home, token, root / "serve.log") as server:
                one_run(bench, server, run)
                if args.phases and run == args.repeat - 1:
                    breakdown, profiles = phases(bench, server)
            print(f"run {run + 1}/{args.repeat} done", file=sys.stderr)
        host = machine()
        if args.json:
            print(as_json(bench, host, dict(breakdown) if breakdown else None))
        else:
            print(table(bench, host, args.repeat))
            if breakdown is not None:
                print("\nWhere the time goes (in-process, one run):\n")
                print(phases_report(breakdown, total_bytes))
                for label, text in profiles.items():
                    print(f"\nProfile, {label} (all threads, by own time):\n")
                    print(text)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    passed = (
        bench.register.ratio() <= REGISTER_TARGET
        and bench.pull.ratio() <= PULL_TARGET
        and max(bench.peaks.register + bench.peaks.pull) < RSS_TARGET_MIB
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
