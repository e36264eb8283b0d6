"""The sandboxed worker: ``python -m scanning.behavioral.worker WORKDIR ...``.

Started only by :mod:`scanning.behavioral.sandbox`, in a new session, on a
private copy of a model the static scan passed. Before anything else is imported
or read it confines itself (:func:`isolate`), with what Linux offers without
root:

- ``no_new_privs`` and death with its parent;
- a new user and network namespace with no interface up, where the kernel
  permits unprivileged user namespaces;
- Landlock (:func:`scanning.behavioral._confine.restrict_filesystem`): Python's
  own files, the system libraries, ``/proc`` and ``WORKDIR`` are readable,
  ``WORKDIR/scratch`` is the only writable place, nothing else is visible; no
  TCP, and no signals to processes outside the sandbox;
- seccomp (:func:`scanning.behavioral._confine.forbid_processes`): no ``fork``,
  ``execve``, ``ptrace``, sockets, namespaces or mounts, on every thread;
- an audit hook refusing the same from Python with a readable message, and
  memory, file-size and core-dump limits.

A mechanism the kernel lacks is skipped and named, with the reason, in the
confinement line the worker sends its parent before it opens the model; the
parent warns and lists what was applied in the report (``confinement``). Then
the worker loads the model (:mod:`scanning.behavioral.loader`) and runs the
detectors or the replay (:mod:`scanning.behavioral.detect`).

Nothing is pickled across the boundary and the worker writes no file the
parent reads. In ``WORKDIR`` (read-only to the worker) the parent writes
``request.json`` (task, model path, profile metadata, baseline),
``reference.npz`` (``x``, ``y``) and, for a replay, ``trigger_in.npz``. The
worker writes its result once, as one JSON object (``{"task", "ok", "report" |
"measure" | "error", "kind", "trigger"}``, the trigger as base64 ``.npz``), to
the pipe ``--result-fd`` the parent created before starting it. Progress goes as
JSON lines ``{"fraction": f, "message": m}`` to ``--progress-fd``; the first
line is ``{"confinement": {"applied": [...], "missing": {name: reason}}}``.

Once torch and the scanner are imported, and before the model is opened, an
audit hook that cannot be removed reports every sign of foreign code to the
parent as an alarm line (:func:`arm_alarms`): any refused event, ctypes, gc
introspection, signals, an ``open`` for writing outside the scratch directory.
Any alarm fails the scan, whatever result follows.

What a payload that runs inside the worker despite the static scan can still do
(it shares the worker's address space): read what the worker may read (its
Python installation, system libraries, ``/proc``, ``WORKDIR``), spend its time
and memory up to the limits, and — if it does nothing the audit hook sees, e.g.
only ``os.write`` to the result descriptor named on the command line and
``os._exit``, or first blinds the hook by patching the builtins it calls —
forge the worker's own result, ``clean`` included. No mechanism
inside one process can prevent that; the verdict of a model whose code runs is
worthless anyway, and keeping such code out is the static scan's job. It cannot
write outside the scratch directory, start a program or process, reach the
network, signal or trace other processes, or leave a result file for the
parent to find.

The module imports only the standard library at the top, so confinement happens
before NumPy (whose BLAS starts threads at import) or torch is loaded.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import resource
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanning.behavioral import _confine

__all__ = [
    "MECHANISMS",
    "REFERENCE_FILE",
    "REQUEST_FILE",
    "SCRATCH_DIR",
    "TRIGGER_IN_FILE",
    "Confinement",
    "ProgressPipe",
    "WorkerArgs",
    "isolate",
    "main",
    "parse_args",
    "send_result",
]

REQUEST_FILE = "request.json"
REFERENCE_FILE = "reference.npz"
TRIGGER_IN_FILE = "trigger_in.npz"
#: The one directory under WORKDIR the worker may write to (its TMPDIR and HOME).
SCRATCH_DIR = "scratch"
#: Every confinement mechanism, in the order applied; a report lists those that were.
MECHANISMS = (
    "no_new_privs",
    "network_namespace",
    "landlock",
    "seccomp",
    "audit_hook",
    "rlimits",
)

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
#: Audit events that, once the worker reads its inputs, can only be the model's code running:
#: the refused ones, a pickle naming code, native code through ctypes, and reaching for the
#: worker's own objects.
ALARM_EVENTS = REFUSED_EVENTS | {
    # The C unpickler resolving a global: how a pickle payload starts (the scanner's own
    # loaders read safetensors, and export archives with torch's weights-only unpickler).
    "pickle.find_class",
    "ctypes.dlopen",
    "ctypes.dlsym",
    "ctypes.dlsym/handle",
    "ctypes.string_at",
    "ctypes.wstring_at",
    "gc.get_objects",
    "gc.get_referrers",
    "gc.get_referents",
    "os.kill",
    "os.killpg",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_MAX_ALARMS = 5
# Writing outputs needs some room; anything beyond this is not a scan result.
_MAX_FILE_BYTES = 256 * 2**20

Progress = Callable[[float, str], None]


class WorkerArgs(argparse.Namespace):
    """The worker's command line."""

    workdir: Path
    progress_fd: int | None
    result_fd: int
    memory_mb: int


def parse_args(argv: Sequence[str]) -> WorkerArgs:
    """Parse ``WORKDIR --result-fd N [--progress-fd N] --memory-mb M``."""
    parser = argparse.ArgumentParser(prog="python -m scanning.behavioral.worker")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--progress-fd", type=int, default=None)
    parser.add_argument("--result-fd", type=int, required=True)
    parser.add_argument("--memory-mb", type=int, required=True)
    return parser.parse_args(list(argv), namespace=WorkerArgs())


@dataclass
class Confinement:
    """What :func:`isolate` applied (names from :data:`MECHANISMS`) and why the rest is missing."""

    applied: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    def attempt(self, name: str, apply: Callable[[], str]) -> None:
        """Apply one mechanism; record it, or record why the kernel refused it."""
        try:
            self.details[name] = apply()
        except _confine.Unavailable as exc:
            self.missing[name] = str(exc)
            sys.stderr.write(f"sandbox: {name} not applied: {exc}\n")
        else:
            self.applied.append(name)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"applied": self.applied, "missing": self.missing, "details": self.details}


def isolate(*, memory_mb: int, workdir: Path, alarm_fd: int | None = None) -> Confinement:
    """Confine this process before it imports or opens anything else; say what was applied.

    Call first thing, while the process is still single-threaded (a new user
    namespace and Landlock require that). ``workdir`` becomes readable and its
    ``scratch`` subdirectory (created if needed) the only writable place, and
    ``TMPDIR`` and ``HOME`` point there. Mechanisms the kernel lacks are recorded
    in :attr:`Confinement.missing`; the rest always apply. With ``alarm_fd``, each
    refused audit event is also reported there as an alarm (see :func:`arm_alarms`).
    """
    confinement = Confinement()
    _prctl(_PR_SET_PDEATHSIG, _SIGKILL)
    confinement.attempt("no_new_privs", _no_new_privs)
    confinement.attempt("network_namespace", _enter_network_namespace)
    scratch = _prepare_scratch(workdir)
    confinement.attempt("landlock", lambda: _restrict_filesystem(workdir, scratch))
    confinement.attempt("seccomp", _confine.forbid_processes)
    sys.addaudithook(_refusal_hook(None if alarm_fd is None else _alarm_writer(alarm_fd)))
    confinement.applied.append("audit_hook")
    _limit_resources(memory_mb)
    confinement.applied.append("rlimits")
    confinement.details["rlimits"] = f"memory {memory_mb} MiB, no core dumps"
    return confinement


def _prepare_scratch(workdir: Path) -> Path:
    scratch = workdir.resolve() / SCRATCH_DIR
    scratch.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = os.environ["HOME"] = str(scratch)
    tempfile.tempdir = None
    return scratch


def _restrict_filesystem(workdir: Path, scratch: Path) -> str:
    if _confine.threads() != 1:
        raise _confine.Unavailable("Landlock not applied: the worker already runs several threads")
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    readable = [Path(entry) for entry in [*prefixes, *sys.path] if entry]
    readable += [*_confine.system_readable(), workdir.resolve()]
    return _confine.restrict_filesystem(
        readable=readable, writable=scratch, writable_files=[Path(os.devnull)]
    )


def _no_new_privs() -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _confine.Unavailable(f"prctl refused: {os.strerror(ctypes.get_errno())}")
    return "no_new_privs"


def _limit_resources(memory_mb: int) -> None:
    limit = memory_mb * 2**20
    # RLIMIT_DATA counts the heap and private anonymous mappings (Linux >= 4.7),
    # which is where tensors live, but not the shared libraries torch maps; the
    # address-space cap is only a generous backstop for shared anonymous memory.
    _cap(resource.RLIMIT_DATA, limit)
    _cap(resource.RLIMIT_AS, 2 * limit + 4 * 2**30)
    _cap(resource.RLIMIT_CORE, 0)
    _cap(resource.RLIMIT_FSIZE, _MAX_FILE_BYTES)


def _cap(which: int, value: int) -> None:
    """Set soft and hard limit to ``value``, or keep a lower hard limit already in force."""
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


def _enter_network_namespace() -> str:
    """Move into a new user and network namespace; only loopback exists there, and it is down."""
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        reason = os.strerror(ctypes.get_errno())
        raise _confine.Unavailable(
            f"unprivileged user namespaces are not permitted here ({reason})"
        )
    # Map our own ids so files we create keep their owner (and can be created at all).
    try:
        for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny")):
            Path(f"/proc/self/{name}").write_text(text, encoding="ascii")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1", encoding="ascii")
    except OSError:
        pass  # the network is cut either way; only file ownership is affected
    return "user and network namespace, no interface up"


def _refusal_hook(
    alarm: Callable[[str, tuple[Any, ...]], None] | None,
) -> Callable[[str, tuple[Any, ...]], None]:
    # Bound here rather than read from the module's globals, which foreign code could change.
    refused, is_network_socket = REFUSED_EVENTS, _is_network_socket

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in refused or (event == "socket.__new__" and is_network_socket(args)):
            if alarm is not None:
                alarm(event, args)
            raise PermissionError(
                f"the behavioral scan sandbox refuses {event}: no network, no new processes"
            )

    return hook


def _is_network_socket(args: tuple[Any, ...]) -> bool:
    family = args[1] if len(args) > 1 else -1
    return family != _AF_UNIX


def arm_alarms(fd: int, *, scratch: Path) -> None:
    """From now on, tell the parent on ``fd`` of every sign that foreign code is running.

    An audit hook (it cannot be removed) writes ``{"alarm": "..."}`` lines for
    :data:`ALARM_EVENTS` and for any ``open`` for writing outside ``scratch``,
    before the operation is refused or done (the refused events are reported by
    the hook :func:`isolate` installed, given ``alarm_fd``). The parent turns any alarm into a
    failed scan, even when a result that says ``clean`` follows. Call once the
    worker's own setup is done: the worker itself does none of these things.
    """
    sys.addaudithook(_alarm_hook(fd, str(scratch) + os.sep))


def _alarm_writer(fd: int) -> Callable[[str, tuple[Any, ...]], None]:
    """A function writing ``{"alarm": "event(args)"}`` lines to ``fd`` (a few); never raises."""
    write, dumps, brief, sent = os.write, json.dumps, _brief, [0]

    def alarm(event: str, args: tuple[Any, ...]) -> None:
        if sent[0] >= _MAX_ALARMS:
            return
        sent[0] += 1
        try:  # the arguments are foreign objects: their repr may raise or lie
            what = f"{event}{brief(args)}"
        except Exception:
            what = f"{event}(...)"
        with contextlib.suppress(OSError, ValueError):
            write(fd, (dumps({"alarm": what[:300]}) + "\n").encode("utf-8"))

    return alarm


def _alarm_hook(fd: int, scratch: str) -> Callable[[str, tuple[Any, ...]], None]:
    # What the hook uses is bound here, out of reach of the module's globals (not of a
    # payload that knows this code and patches builtins: see the module's residual risks).
    events, alarm = ALARM_EVENTS - REFUSED_EVENTS, _alarm_writer(fd)
    writes_outside = _writes_outside

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in events or (event == "open" and writes_outside(args, scratch)):
            alarm(event, args)

    return hook


def _writes_outside(
    args: tuple[Any, ...],
    scratch: str,
    abspath: Callable[[str], str] = os.path.abspath,
    fsdecode: Callable[[Any], str] = os.fsdecode,
) -> bool:
    """Whether an ``open`` event's arguments open a named file outside ``scratch`` to write."""
    path, mode, flags = (*args, None, None, 0)[:3]
    if isinstance(mode, str):
        writing = any(letter in mode for letter in "wax+")
    else:
        writing = isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
    if not writing or isinstance(path, int):
        return False
    try:
        target = abspath(fsdecode(path))
    except (TypeError, ValueError):
        return True  # a path that does not even decode: suspicious enough
    return not target.startswith(scratch)


def _brief(args: tuple[Any, ...]) -> str:
    shown = ", ".join(repr(arg)[:200] for arg in args[:3])
    return f"({shown})"


class ProgressPipe:
    """Writes progress lines to the parent; a closed pipe is ignored (the parent decides)."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def announce(self, confinement: Confinement) -> None:
        """Tell the parent how the worker is confined: the first line, before the model is read."""
        self._write({"confinement": confinement.to_json()})

    def __call__(self, fraction: float, message: str) -> None:
        self._write({"fraction": float(fraction), "message": str(message)[:200]})

    def _write(self, item: dict[str, Any]) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, (json.dumps(item) + "\n").encode("utf-8"))
        except OSError:
            self._fd = None


def main(argv: Sequence[str] | None = None) -> int:
    """Isolate, run the task in ``WORKDIR``, send the result; 0 on success, 1 on failure."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    confinement = isolate(memory_mb=args.memory_mb, workdir=args.workdir, alarm_fd=args.progress_fd)
    progress = ProgressPipe(args.progress_fd)
    progress.announce(confinement)
    task = "unknown"
    try:
        request = json.loads((args.workdir / REQUEST_FILE).read_text(encoding="utf-8"))
        task = str(request["task"])
        _import_what_the_task_needs(Path(request["model"]))
        if args.progress_fd is not None:
            arm_alarms(args.progress_fd, scratch=args.workdir.resolve() / SCRATCH_DIR)
        result = _run_task(task, request, args.workdir, progress)
    except BaseException as exc:  # every failure must reach the parent as a result
        kind, message = _describe_failure(exc)
        send_result(args.result_fd, {"task": task, "ok": False, "kind": kind, "error": message})
        return 1
    send_result(args.result_fd, {"task": task, "ok": True, **result})
    return 0


def _import_what_the_task_needs(model: Path) -> None:
    """Import torch and the scanner now, so that their own start-up (torch loads libraries
    with ctypes) is over before :func:`arm_alarms` watches for foreign code."""
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401

    import scanning.architectures  # noqa: F401
    import scanning.behavioral.detect  # noqa: F401
    from scanning.behavioral.loader import ModelFormat, model_format

    if model_format(model) is ModelFormat.EXPORT:  # reads names only; heavy, so only for .pt2
        import torch.export  # noqa: F401


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
        return _scan(loaded.module, profile, request, progress)
    if task == "replay":
        return _replay(loaded.module, profile, workdir, progress)
    raise ValueError(f"unknown task {task!r}")


def _scan(module: Any, profile: Any, request: dict[str, Any], progress: Progress) -> dict[str, Any]:
    from scanning.behavioral.detect import detect

    def scaled(fraction: float, message: str) -> None:
        progress(0.05 + 0.95 * fraction, message)

    report = detect(module, profile, baseline=request.get("baseline", ()), progress=scaled)
    trigger = None
    if report.trigger is not None:
        trigger = base64.b64encode(report.trigger.to_npz()).decode("ascii")
    progress(1.0, f"verdict: {report.verdict}")
    return {"report": report.to_json(), "trigger": trigger}


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


def send_result(fd: int, result: dict[str, Any]) -> None:
    """Write ``result`` as one JSON object to the parent's result pipe and close it."""
    try:
        data = json.dumps(result).encode("utf-8")
    except (TypeError, ValueError) as exc:
        data = json.dumps({"ok": False, "kind": "crash", "error": f"unencodable: {exc}"}).encode()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.close(fd)
    except OSError as exc:
        sys.stderr.write(f"could not send the result: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
