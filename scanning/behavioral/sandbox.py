"""Run the behavioral scan or a trigger replay in a separate, limited process.

The parent side of :mod:`scanning.behavioral.worker`. :func:`scan_in_sandbox`
and :func:`replay_in_sandbox` write the request into a working directory
(JSON and ``.npz``, never pickle), start the worker in its own session, and
watch it:

- **time**: past ``Limits.timeout_s`` of wall time the whole process group is
  killed (``SIGKILL``);
- **memory**: the worker caps itself with ``RLIMIT_DATA`` at ``Limits.memory_mb``
  (heap and private anonymous mappings, where tensors live) and a generous
  ``RLIMIT_AS`` backstop; the parent also polls the worker's resident set and
  kills the group when it passes the limit (memory the rlimits do not count,
  such as shared mappings);
- **network**: the worker enters a new network namespace when the kernel allows
  it and in any case refuses sockets and new processes with an audit hook,
  before anything is loaded.

Every way the worker can fail — a timeout, a memory kill, a crash or a signal,
a non-zero exit, a model that does not load, missing or malformed output — is
raised as :class:`SandboxFailure` with a one-line reason; the caller
(:mod:`scanning.behavioral.api`) turns it into a ``scan_error``, never ``clean``.

Importing this module is cheap: NumPy and the standard library only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import scanning
from scanning.behavioral import worker
from scanning.behavioral.profile import profile_to_npz
from scanning.behavioral.report import (
    BehavioralReport,
    RelativeStatistics,
    ReplayMeasure,
    ScanProfile,
    TriggerPattern,
)

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "Progress",
    "SandboxFailure",
    "replay_in_sandbox",
    "scan_in_sandbox",
]

#: ``progress(fraction, message)``: fraction in [0, 1], called from the caller's thread.
Progress = Callable[[float, str], None]

# -s: no user site-packages; -P: the working directory (the model copy) is not on sys.path.
_WORKER_COMMAND = (sys.executable, "-s", "-P", "-m", "scanning.behavioral.worker")
# The worker sees only what it needs of the caller's environment (no proxies, no tokens).
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_POLL_S = 0.1
_MAX_RESULT_BYTES = 4 * 2**20
_MAX_PROGRESS_LINE = 4096
_LOG_FILE = "worker.log"


@dataclass(frozen=True)
class Limits:
    """The sandbox's limits: wall time in seconds and memory in MiB.

    The defaults (300 s, 4 GiB) leave room to spare. Measured on this 2-core
    machine under load, a digit model's whole scan (worker start, torch import,
    load, detectors) takes 10 s from safetensors and 16 s from a ``.pt2``
    (``torch.export.load`` imports much of torch's compiler stack), with a peak
    resident set of about 250 and 350 MiB, most of it torch itself.
    """

    timeout_s: float = 300.0
    memory_mb: int = 4096

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(
                f"the scan timeout must be a positive number of seconds, got {self.timeout_s}"
            )
        if self.memory_mb < 256:
            raise ValueError(
                f"the memory limit must be at least 256 MiB (torch alone needs about 300), "
                f"got {self.memory_mb}"
            )


#: The limits used when the caller gives none.
DEFAULT_LIMITS = Limits()


class SandboxFailure(Exception):
    """The worker did not produce a result; ``kind`` says how, the message says why.

    ``kind`` is one of ``timeout``, ``memory``, ``load``, ``invalid``, ``crash``,
    ``output``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def scan_in_sandbox(
    model: Path,
    profile: ScanProfile,
    *,
    workdir: Path,
    baseline: Sequence[RelativeStatistics] = (),
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> BehavioralReport:
    """Load ``model`` and run the detectors on it in the worker; the report they return.

    ``model`` must already have passed the static scan (the api guarantees it);
    ``workdir`` is a private, empty-enough directory the request and results go
    through. Raises :class:`SandboxFailure` when no valid report comes back.
    """
    _write_request(workdir, "scan", model, profile, baseline=baseline)
    result = run_worker(workdir, limits=limits, progress=progress)
    trigger = _read_trigger(workdir)
    try:
        report = BehavioralReport.from_json(result["report"], trigger=trigger)
        _check_report(report, result["report"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SandboxFailure("output", f"the worker's report is malformed: {exc}") from exc
    return report


def replay_in_sandbox(
    model: Path,
    profile: ScanProfile,
    trigger: TriggerPattern,
    *,
    workdir: Path,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> ReplayMeasure:
    """Load ``model`` and measure ``trigger`` on its references in the worker.

    Same preconditions as :func:`scan_in_sandbox`; raises :class:`SandboxFailure`.
    """
    _write_request(workdir, "replay", model, profile)
    (workdir / worker.TRIGGER_IN_FILE).write_bytes(trigger.to_npz())
    result = run_worker(workdir, limits=limits, progress=progress)
    try:
        measure = ReplayMeasure.from_json(result["measure"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SandboxFailure("output", f"the worker's replay measure is malformed: {exc}") from exc
    if not (0.0 <= measure.rate <= 1.0 and 0.0 <= measure.clean_accuracy <= 1.0):
        raise SandboxFailure("output", f"the worker's replay rates are out of [0, 1]: {measure}")
    return measure


def _write_request(
    workdir: Path,
    task: str,
    model: Path,
    profile: ScanProfile,
    *,
    baseline: Sequence[RelativeStatistics] = (),
) -> None:
    for stale in (worker.RESULT_FILE, worker.TRIGGER_OUT_FILE):
        (workdir / stale).unlink(missing_ok=True)
    request = {
        "task": task,
        "model": str(Path(model).resolve()),
        "input_shape": list(profile.input_shape),
        "value_range": list(profile.value_range),
        "num_classes": profile.num_classes,
        "baseline": [
            {str(k): v if isinstance(v, str) else float(v) for k, v in entry.items()}
            for entry in baseline
        ],
    }
    (workdir / worker.REQUEST_FILE).write_text(json.dumps(request), encoding="utf-8")
    (workdir / worker.REFERENCE_FILE).write_bytes(profile_to_npz(profile))


def run_worker(
    workdir: Path,
    *,
    limits: Limits,
    progress: Progress | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run ``command WORKDIR --progress-fd N --memory-mb M`` under the limits; its result.

    The worker's ``result.json`` must say ``"ok": true``. ``command`` is the worker
    module unless a test substitutes its own. Raises :class:`SandboxFailure`.
    """
    read_end, write_end = os.pipe()
    argv = [
        *(_WORKER_COMMAND if command is None else command),
        str(workdir),
        "--progress-fd",
        str(write_end),
        "--memory-mb",
        str(limits.memory_mb),
    ]
    with (workdir / _LOG_FILE).open("wb") as log:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(write_end,),
                start_new_session=True,
                cwd=workdir,
                env=_worker_env(),
            )
        finally:
            os.close(write_end)
        try:
            _watch(process, read_end, limits=limits, progress=progress)
        finally:
            os.close(read_end)
            _kill_group(process)
    return _read_result(workdir, process.returncode)


def _worker_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    # The worker imports this very package, wherever it is installed or checked out.
    env["PYTHONPATH"] = str(Path(scanning.__file__).resolve().parent.parent)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _watch(
    process: subprocess.Popen[bytes], read_end: int, *, limits: Limits, progress: Progress | None
) -> None:
    """Relay progress until the worker exits; kill it past the time or memory limit."""
    deadline = time.monotonic() + limits.timeout_s
    lines = _ProgressLines(progress)
    with selectors.DefaultSelector() as selector:
        selector.register(read_end, selectors.EVENT_READ)
        while process.poll() is None:
            if selector.select(timeout=_POLL_S):
                lines.feed(os.read(read_end, 65536))
            if time.monotonic() > deadline:
                _kill_group(process)
                raise SandboxFailure(
                    "timeout",
                    f"the scan took longer than the {limits.timeout_s:g} s limit "
                    "and was stopped (raise it with --timeout)",
                )
            rss_mb = _resident_mb(process.pid)
            if rss_mb > limits.memory_mb:
                _kill_group(process)
                raise SandboxFailure(
                    "memory",
                    f"the scan used {rss_mb} MiB, more than the {limits.memory_mb} MiB "
                    "limit, and was stopped (raise it with --memory-limit)",
                )
    os.set_blocking(read_end, False)
    with contextlib.suppress(OSError):  # nothing left to read
        lines.feed(os.read(read_end, 65536))


class _ProgressLines:
    """Turns the worker's JSON lines into ``progress`` calls; malformed lines are dropped."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._pending += data
        *complete, self._pending = self._pending.split(b"\n")
        self._pending = self._pending[-_MAX_PROGRESS_LINE:]
        for line in complete:
            self._dispatch(line[:_MAX_PROGRESS_LINE])

    def _dispatch(self, line: bytes) -> None:
        if self._progress is None:
            return
        try:
            item = json.loads(line)
            fraction = float(item["fraction"])
            message = str(item["message"])[:200]
        except (ValueError, KeyError, TypeError):
            return
        if math.isfinite(fraction):
            self._progress(min(max(fraction, 0.0), 1.0), message)


def _resident_mb(pid: int) -> int:
    """The process's resident set in MiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the worker's whole process group (anything it started dies with it) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _read_result(workdir: Path, returncode: int) -> dict[str, Any]:
    """The worker's ``result.json``, or a :class:`SandboxFailure` saying what went wrong."""
    path = workdir / worker.RESULT_FILE
    result = _load_result(path) if path.is_file() else None
    if result is not None and result.get("ok") is False:
        kind = str(result.get("kind", "crash"))
        raise SandboxFailure(kind, str(result.get("error", "the worker failed"))[:2000])
    if returncode < 0:
        number = -returncode
        name = signal.Signals(number).name if number in signal.valid_signals() else "?"
        tail = _log_tail(workdir)
        raise SandboxFailure(
            "crash", f"the scan worker was killed by signal {name} ({number}){tail}"
        )
    if returncode != 0:
        raise SandboxFailure(
            "crash", f"the scan worker exited with code {returncode}{_log_tail(workdir)}"
        )
    if result is None or result.get("ok") is not True:
        raise SandboxFailure("output", "the scan worker exited without a valid result")
    return result


def _load_result(path: Path) -> dict[str, Any] | None:
    if path.stat().st_size > _MAX_RESULT_BYTES:
        raise SandboxFailure("output", "the scan worker's result is implausibly large")
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SandboxFailure("output", f"the scan worker's result is not JSON: {exc}") from exc
    if not isinstance(result, dict):
        raise SandboxFailure("output", "the scan worker's result is not a JSON object")
    return result


def _log_tail(workdir: Path) -> str:
    """The last line the worker printed, for the error message."""
    try:
        lines = (workdir / _LOG_FILE).read_bytes()[-4096:].decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return f": {last[:300]}" if last else ""


def _read_trigger(workdir: Path) -> TriggerPattern | None:
    path = workdir / worker.TRIGGER_OUT_FILE
    if not path.is_file():
        return None
    try:
        return TriggerPattern.from_npz(path.read_bytes())
    except ValueError as exc:
        raise SandboxFailure("output", f"the recovered trigger is malformed: {exc}") from exc


def _check_report(report: BehavioralReport, raw: Mapping[str, Any]) -> None:
    """Refuse a report whose facts contradict each other or are not numbers."""
    if bool(raw.get("has_trigger")) != (report.trigger is not None):
        raise ValueError("the report and the trigger file disagree on whether there is a trigger")
    for name in ("score", "trigger_asr"):
        value = raw.get(name)
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
            raise ValueError(f"{name} is {value!r}, not a finite number")
