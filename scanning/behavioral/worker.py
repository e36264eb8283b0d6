"""The sandboxed worker: ``python -m scanning.behavioral.worker WORKDIR ...``.

Started only by :mod:`scanning.behavioral.sandbox`, in a new session, on a
private copy of a model the static scan passed. Before anything else is imported
or read it isolates itself (:func:`isolate`): a new network namespace with no
interfaces up (when the kernel permits unprivileged user namespaces), an audit
hook refusing sockets and new processes, memory and core-dump limits, no new
privileges, and death with its parent. Then it loads the model
(:mod:`scanning.behavioral.loader`) and runs the detectors or the replay
(:mod:`scanning.behavioral.detect`).

Nothing is pickled across the boundary. In ``WORKDIR``: the parent writes
``request.json`` (task, model path, profile metadata, baseline), ``reference.npz``
(``x``, ``y``) and, for a replay, ``trigger_in.npz``; the worker writes
``result.json`` (``{"task", "ok", "report" | "measure" | "error", "kind"}``) and,
when the detectors recovered one, ``trigger.npz``. Progress goes as JSON lines
``{"fraction": f, "message": m}`` to the file descriptor ``--progress-fd``.

The module imports only the standard library at the top, so isolation happens
before NumPy or torch is loaded.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REFERENCE_FILE",
    "REQUEST_FILE",
    "RESULT_FILE",
    "TRIGGER_IN_FILE",
    "TRIGGER_OUT_FILE",
    "WorkerArgs",
    "isolate",
    "main",
    "parse_args",
]

REQUEST_FILE = "request.json"
REFERENCE_FILE = "reference.npz"
TRIGGER_IN_FILE = "trigger_in.npz"
RESULT_FILE = "result.json"
TRIGGER_OUT_FILE = "trigger.npz"

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_SIGKILL = 9
_AF_UNIX = 1
#: Audit events (PEP 578) the worker refuses once isolated: the network, and new processes.
REFUSED_EVENTS = frozenset(
    {
        "socket.bind",
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyaddr",
        "socket.gethostbyname",
        "socket.getnameinfo",
        "socket.sendmsg",
        "socket.sendto",
        "os.exec",
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.spawn",
        "os.system",
        "pty.spawn",
        "subprocess.Popen",
    }
)
# Writing outputs needs some room; anything beyond this is not a scan result.
_MAX_FILE_BYTES = 256 * 2**20

Progress = Callable[[float, str], None]


class WorkerArgs(argparse.Namespace):
    """The worker's command line."""

    workdir: Path
    progress_fd: int | None
    memory_mb: int


def parse_args(argv: Sequence[str]) -> WorkerArgs:
    """Parse ``WORKDIR [--progress-fd N] --memory-mb M``."""
    parser = argparse.ArgumentParser(prog="python -m scanning.behavioral.worker")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--progress-fd", type=int, default=None)
    parser.add_argument("--memory-mb", type=int, required=True)
    return parser.parse_args(list(argv), namespace=WorkerArgs())


def isolate(*, memory_mb: int) -> list[str]:
    """Cut this process off from the network and cap its memory; say what was applied.

    Call first thing, while the process is still single-threaded (a new user
    namespace requires that). The network namespace is best effort (refused
    where unprivileged user namespaces are disabled); the audit hook and the
    resource limits are always applied.
    """
    applied = []
    _prctl(_PR_SET_PDEATHSIG, _SIGKILL)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    if _enter_network_namespace():
        applied.append("network namespace")
    sys.addaudithook(_refuse_escapes)
    applied.append("audit hook")
    limit = memory_mb * 2**20
    # RLIMIT_DATA counts the heap and private anonymous mappings (Linux >= 4.7),
    # which is where tensors live, but not the shared libraries torch maps; the
    # address-space cap is only a generous backstop for shared anonymous memory.
    _cap(resource.RLIMIT_DATA, limit)
    _cap(resource.RLIMIT_AS, 2 * limit + 4 * 2**30)
    _cap(resource.RLIMIT_CORE, 0)
    _cap(resource.RLIMIT_FSIZE, _MAX_FILE_BYTES)
    applied.append(f"memory {memory_mb} MiB")
    return applied


def _cap(which: int, value: int) -> None:
    """Set soft and hard limit to ``value``, or keep a lower hard limit already in force."""
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


def _enter_network_namespace() -> bool:
    """Move into a new user and network namespace; only loopback exists there, and it is down."""
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return False
    # Map our own ids so files we create keep their owner (and can be created at all).
    try:
        for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny")):
            Path(f"/proc/self/{name}").write_text(text, encoding="ascii")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1", encoding="ascii")
    except OSError:
        pass  # the network is cut either way; only file ownership is affected
    return True


def _refuse_escapes(event: str, args: tuple[Any, ...]) -> None:
    if event in REFUSED_EVENTS or (event == "socket.__new__" and _is_network_socket(args)):
        raise PermissionError(
            f"the behavioral scan sandbox refuses {event}: no network, no new processes"
        )


def _is_network_socket(args: tuple[Any, ...]) -> bool:
    family = args[1] if len(args) > 1 else -1
    return family != _AF_UNIX


class _ProgressPipe:
    """Writes progress lines to the parent; a closed pipe is ignored (the parent decides)."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def __call__(self, fraction: float, message: str) -> None:
        if self._fd is None:
            return
        line = json.dumps({"fraction": float(fraction), "message": str(message)[:200]}) + "\n"
        try:
            os.write(self._fd, line.encode("utf-8"))
        except OSError:
            self._fd = None


def main(argv: Sequence[str] | None = None) -> int:
    """Isolate, run the task in ``WORKDIR``, write the result; 0 on success, 1 on failure."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    isolate(memory_mb=args.memory_mb)
    progress = _ProgressPipe(args.progress_fd)
    task = "unknown"
    try:
        request = json.loads((args.workdir / REQUEST_FILE).read_text(encoding="utf-8"))
        task = str(request["task"])
        result = _run_task(task, request, args.workdir, progress)
    except BaseException as exc:  # every failure must reach the parent as a result
        kind, message = _describe_failure(exc)
        _write_result(args.workdir, {"task": task, "ok": False, "kind": kind, "error": message})
        return 1
    _write_result(args.workdir, {"task": task, "ok": True, **result})
    return 0


def _run_task(
    task: str, request: dict[str, Any], workdir: Path, progress: Progress
) -> dict[str, Any]:
    from scanning.behavioral.loader import load_model
    from scanning.behavioral.profile import profile_from_npz

    profile = profile_from_npz(
        (workdir / REFERENCE_FILE).read_bytes(),
        input_shape=request["input_shape"],
        value_range=request["value_range"],
        num_classes=request["num_classes"],
    )
    progress(0.0, "loading the model")
    loaded = load_model(
        Path(request["model"]), input_shape=profile.input_shape, min_batch=len(profile.x)
    )
    progress(0.05, f"loaded the {loaded.format} model")
    if task == "scan":
        return _scan(loaded.module, profile, request, workdir, progress)
    if task == "replay":
        return _replay(loaded.module, profile, workdir, progress)
    raise ValueError(f"unknown task {task!r}")


def _scan(
    module: Any, profile: Any, request: dict[str, Any], workdir: Path, progress: Progress
) -> dict[str, Any]:
    from scanning.behavioral.detect import detect

    def scaled(fraction: float, message: str) -> None:
        progress(0.05 + 0.95 * fraction, message)

    report = detect(module, profile, baseline=request.get("baseline", ()), progress=scaled)
    if report.trigger is not None:
        (workdir / TRIGGER_OUT_FILE).write_bytes(report.trigger.to_npz())
    progress(1.0, f"verdict: {report.verdict}")
    return {"report": report.to_json()}


def _replay(module: Any, profile: Any, workdir: Path, progress: Progress) -> dict[str, Any]:
    from scanning.behavioral.detect import measure_replay
    from scanning.behavioral.report import TriggerPattern

    trigger = TriggerPattern.from_npz((workdir / TRIGGER_IN_FILE).read_bytes())
    progress(0.1, "replaying the trigger on the reference inputs")
    measure = measure_replay(module, profile, trigger)
    progress(1.0, f"attack success rate {measure.rate:.2f}")
    return {"measure": measure.to_json()}


def _describe_failure(exc: BaseException) -> tuple[str, str]:
    """A failure's kind (``load``, ``memory``, ``invalid``, ``crash``) and one-line message."""
    from scanning.behavioral.loader import ModelLoadError, NotScannable

    if isinstance(exc, NotScannable | ModelLoadError):
        return "load", str(exc)
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc):
        return "memory", f"ran out of memory under the sandbox's limit: {exc}"[:2000]
    if type(exc) is ValueError:  # the profile or the model's outputs do not fit
        return "invalid", str(exc)[:2000]
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {Path(frame[0].filename).name}:{frame[0].lineno}" if frame else ""
    return "crash", f"{type(exc).__name__}{where}: {exc}"[:2000]


def _write_result(workdir: Path, result: dict[str, Any]) -> None:
    try:
        (workdir / RESULT_FILE).write_text(json.dumps(result), encoding="utf-8")
    except (OSError, TypeError, ValueError) as exc:
        sys.stderr.write(f"could not write the result: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
