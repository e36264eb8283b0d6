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
- **confinement**: before it imports torch the worker confines itself with what
  the kernel offers without root (see :mod:`scanning.behavioral.worker`): a
  network namespace, Landlock (read-only everywhere it may look, writable only
  ``WORKDIR/scratch``), seccomp (no fork, exec, ptrace or sockets), an audit
  hook. Its first progress line says what was applied; the parent keeps that,
  puts it in the report's ``confinement`` and logs a warning naming any
  mechanism that is missing here (never silently weaker);
- **result**: read only from a pipe the parent created before starting the
  worker, never from a file the loaded model could write; anything but exactly
  one JSON object on it is a failure, and so is any alarm the worker's audit
  hook raised on the progress pipe (foreign code seen running), whatever the
  result says. What code running inside the worker could still forge is
  described in :mod:`scanning.behavioral.worker`.

Every way the worker can fail — a timeout, a memory kill, a crash or a signal,
a non-zero exit, a model that does not load, missing or malformed output — is
raised as :class:`SandboxFailure` with a one-line reason; the caller
(:mod:`scanning.behavioral.api`) turns it into a ``scan_error``, never ``clean``.

Importing this module is cheap: NumPy and the standard library only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import logging
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

_log = logging.getLogger(__name__)

#: ``progress(fraction, message)``: fraction in [0, 1], called from the caller's thread.
Progress = Callable[[float, str], None]

# -s: no user site-packages; -P: the working directory (the model copy) is not on sys.path.
_WORKER_COMMAND = (sys.executable, "-s", "-P", "-m", "scanning.behavioral.worker")
# The worker sees only what it needs of the caller's environment (no proxies, no tokens).
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_POLL_S = 0.1
_MAX_RESULT_BYTES = 32 * 2**20
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
    ``output``, ``escape`` (the model's code was seen running: see
    :func:`scanning.behavioral.worker.arm_alarms`).
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
    trigger = _read_trigger(result.get("trigger"))
    try:
        report = BehavioralReport.from_json(result["report"], trigger=trigger)
        _check_report(report, result["report"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SandboxFailure("output", f"the worker's report is malformed: {exc}") from exc
    return dataclasses.replace(report, confinement=tuple(result["confinement"]["applied"]))


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
    """Run ``command WORKDIR --progress-fd N --result-fd N --memory-mb M`` under the limits.

    Returns the one JSON object the worker wrote to its result pipe, which must
    say ``"ok": true``, with ``confinement`` set to what the worker announced before
    it read anything (``{"applied": [...], "missing": {...}}``). ``command`` is the
    worker module unless a test substitutes its own. Raises :class:`SandboxFailure`.
    """
    (workdir / worker.SCRATCH_DIR).mkdir(mode=0o700, exist_ok=True)
    progress_read, progress_write = os.pipe()
    result_read, result_write = os.pipe()
    argv = [
        *(_WORKER_COMMAND if command is None else command),
        str(workdir),
        "--progress-fd",
        str(progress_write),
        "--result-fd",
        str(result_write),
        "--memory-mb",
        str(limits.memory_mb),
    ]
    channels = _Channels(progress_read, result_read, progress)
    with (workdir / _LOG_FILE).open("wb") as log:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(progress_write, result_write),
                start_new_session=True,
                cwd=workdir,
                env=_worker_env(),
            )
        except BaseException:
            channels.close()
            raise
        finally:
            os.close(progress_write)
            os.close(result_write)
        try:
            _watch(process, channels, limits=limits)
        finally:
            channels.close()
            _kill_group(process)
    return _collect(workdir, channels, process.returncode)


def _collect(workdir: Path, channels: _Channels, returncode: int) -> dict[str, Any]:
    """The result the worker sent, unless an alarm, a failure or a missing confinement says no."""
    if channels.lines.alarms:
        raise SandboxFailure(
            "escape",
            f"the model ran code in the scan sandbox: it tried {channels.lines.alarms[0]} "
            "(code that runs on load, which the static scan missed; the sandbox refused "
            "what it could and no verdict is given)",
        )
    result = _read_result(workdir, bytes(channels.result), returncode)
    if channels.confinement is None:
        raise SandboxFailure("output", "the scan worker did not say how it is confined")
    result["confinement"] = channels.confinement
    return result


def _worker_env() -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    # The worker imports this very package, wherever it is installed or checked out.
    env["PYTHONPATH"] = str(Path(scanning.__file__).resolve().parent.parent)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class _Channels:
    """The parent's ends of the worker's two pipes: progress lines and the one result."""

    def __init__(self, progress_fd: int, result_fd: int, progress: Progress | None) -> None:
        self.progress_fd = progress_fd
        self.result_fd = result_fd
        self.lines = _ProgressLines(progress)
        self.result = bytearray()
        self._open = [progress_fd, result_fd]

    @property
    def confinement(self) -> dict[str, Any] | None:
        """What the worker's first line said about its confinement (None if it said nothing)."""
        return self.lines.confinement

    def drain(self, selector: selectors.BaseSelector, timeout: float) -> bool:
        """Read what is ready on either pipe (a pipe at its end is unregistered); was any?"""
        ready = selector.select(timeout=timeout) if selector.get_map() else []
        for key, _ in ready:
            fd = int(key.fd)
            data = os.read(fd, 65536)
            if not data:
                selector.unregister(fd)
            elif fd == self.progress_fd:
                self.lines.feed(data)
            else:
                self.result += data
                if len(self.result) > _MAX_RESULT_BYTES:
                    raise SandboxFailure("output", "the scan worker's result is implausibly large")
        return bool(ready)

    def close(self) -> None:
        """Close the parent's ends."""
        for fd in self._open:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._open = []


def _watch(process: subprocess.Popen[bytes], channels: _Channels, *, limits: Limits) -> None:
    """Relay progress and collect the result until the worker exits; kill it past a limit."""
    deadline = time.monotonic() + limits.timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(channels.progress_fd, selectors.EVENT_READ)
        selector.register(channels.result_fd, selectors.EVENT_READ)
        while process.poll() is None:
            channels.drain(selector, _POLL_S)
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
        # The worker is gone; with anything left of its group killed, read what it wrote.
        _kill_group(process)
        while channels.drain(selector, 0):
            pass


class _ProgressLines:
    """Turns the worker's JSON lines into ``progress`` calls; malformed lines are dropped."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._pending = b""
        self._first = True
        #: The worker's confinement, from its first line (written before it opened the model).
        self.confinement: dict[str, Any] | None = None
        #: What the worker's audit hook saw foreign code try (``{"alarm": ...}`` lines).
        self.alarms: list[str] = []

    def feed(self, data: bytes) -> None:
        self._pending += data
        *complete, self._pending = self._pending.split(b"\n")
        self._pending = self._pending[-_MAX_PROGRESS_LINE:]
        for line in complete:
            self._dispatch(line[:_MAX_PROGRESS_LINE])

    def _dispatch(self, line: bytes) -> None:
        if self._first:
            self._first = False
            self.confinement = _confinement(line)
            if self.confinement is not None:
                return
        item = _json_object(line)
        if "alarm" in item:
            if len(self.alarms) < 5:
                self.alarms.append(str(item["alarm"])[:300])
            return
        if self._progress is None:
            return
        try:
            fraction = float(item["fraction"])
            message = str(item["message"])[:200]
        except (ValueError, KeyError, TypeError):
            return
        if math.isfinite(fraction):
            self._progress(min(max(fraction, 0.0), 1.0), message)


def _json_object(line: bytes) -> dict[str, Any]:
    """A progress line as a JSON object; ``{}`` when it is not one."""
    try:
        item = json.loads(line)
    except ValueError:
        return {}
    return item if isinstance(item, dict) else {}


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


def _confinement(line: bytes) -> dict[str, Any] | None:
    """The confinement a worker's first line announces, warning about what is missing."""
    try:
        announced = json.loads(line)["confinement"]
        applied = [str(name) for name in announced["applied"] if name in worker.MECHANISMS]
        missing = {str(k): str(v)[:300] for k, v in dict(announced["missing"]).items()}
    except (ValueError, KeyError, TypeError):
        return None
    for name, reason in missing.items():
        _log.warning(
            "behavioral scan sandbox: %s is not available here, the model runs less confined (%s)",
            name,
            reason,
        )
    return {"applied": applied, "missing": missing}


def _read_result(workdir: Path, data: bytes, returncode: int) -> dict[str, Any]:
    """The worker's result from its pipe, or a :class:`SandboxFailure` saying what went wrong."""
    result = _load_result(data) if data else None
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


def _load_result(data: bytes) -> dict[str, Any]:
    try:
        result = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        # Also what two writers on the pipe (the worker and a payload) produce.
        raise SandboxFailure(
            "output", f"the scan worker's result is not one JSON object: {exc}"
        ) from exc
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


def _read_trigger(encoded: Any) -> TriggerPattern | None:
    if encoded is None:
        return None
    try:
        return TriggerPattern.from_npz(base64.b64decode(str(encoded), validate=True))
    except (ValueError, binascii.Error) as exc:
        raise SandboxFailure("output", f"the recovered trigger is malformed: {exc}") from exc


def _check_report(report: BehavioralReport, raw: Mapping[str, Any]) -> None:
    """Refuse a report whose facts contradict each other or are not numbers."""
    if bool(raw.get("has_trigger")) != (report.trigger is not None):
        raise ValueError("the report and its trigger disagree on whether there is a trigger")
    for name in ("score", "trigger_asr"):
        value = raw.get(name)
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
            raise ValueError(f"{name} is {value!r}, not a finite number")
