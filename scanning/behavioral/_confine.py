"""Kernel confinement for the behavioral worker, without privileges: Landlock and seccomp.

Used by :func:`scanning.behavioral.worker.isolate` before the worker imports
NumPy or torch and long before it opens the untrusted model. Both mechanisms
need no root, only ``no_new_privs`` (set by the worker first), and both are
inherited by every thread created afterwards:

- :func:`restrict_filesystem` — a Landlock domain: the listed directories and
  files are readable (and their libraries loadable), the scratch directory is
  the only place anything may be written, created, renamed or deleted, and
  everything else is invisible. Where the kernel's Landlock ABI offers it (4+),
  TCP bind and connect are refused too, and (6+) signals and abstract Unix
  sockets cannot reach processes outside the sandbox. Landlock only confines
  the calling thread, so it must run while the process has one thread (the
  worker checks ``/proc/self/task``).
- :func:`forbid_processes` — a seccomp-BPF filter on every thread
  (``SECCOMP_FILTER_FLAG_TSYNC``): ``fork``, ``vfork``, ``clone`` without
  ``CLONE_THREAD`` or into a new namespace (threads stay possible: torch's
  pools need them), ``execve``, ``execveat``, ``ptrace``, ``process_vm_*``,
  ``pidfd_getfd``, ``socket``, ``io_uring_*``, namespace, mount, BPF and
  kernel-module calls fail with ``EPERM``; ``clone3`` fails with ``ENOSYS`` so
  that the C library falls back to ``clone``, whose flags a filter can see. A
  syscall of another ABI (i386 or x32 on x86-64) fails with ``EPERM``. The
  failures are errors, not kills, so that a payload's attempt ends as an
  ordinary exception and the scan as ``scan_error``.

Each raises :class:`Unavailable` saying why when the kernel (or a container's
own filter) does not offer the mechanism; the worker reports that, loudly.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "Unavailable",
    "forbid_processes",
    "install_syscall_errors",
    "landlock_abi",
    "restrict_filesystem",
]


class Unavailable(Exception):
    """The kernel does not offer a confinement mechanism here; the message says why."""


# --- Landlock (include/uapi/linux/landlock.h) ----------------------------------------------

_SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_ALL_V1 = (1 << 13) - 1  # EXECUTE ... MAKE_SYM
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1
# Rights a rule on a single file may carry (the others only make sense on directories).
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_READ_ONLY = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: object) -> int:
    wide = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    result = int(_libc.syscall(ctypes.c_long(number), *wide))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (1 for Linux 5.13, 7 for 6.15+); raises ``Unavailable``."""
    try:
        return _syscall(
            _SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _LANDLOCK_CREATE_RULESET_VERSION
        )
    except OSError as exc:
        reason = {
            errno.ENOSYS: "the kernel was built without Landlock or a filter hides it",
            errno.EOPNOTSUPP: "Landlock is built in but disabled at boot (lsm=)",
        }.get(exc.errno or 0, os.strerror(exc.errno or 0))
        raise Unavailable(f"Landlock is not available: {reason}") from exc


def restrict_filesystem(
    *,
    readable: Iterable[Path],
    writable: Path,
    writable_files: Iterable[Path] = (),
) -> str:
    """Confine this thread and its future threads: read ``readable``, write only ``writable``.

    Paths that do not exist are skipped. Returns what was applied, e.g.
    ``"landlock ABI 7 (filesystem, tcp, signals)"``; raises :class:`Unavailable`.
    Must be called while the process is single-threaded and after ``no_new_privs``.
    """
    abi = landlock_abi()
    handled_fs = _FS_ALL_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    handled_fs |= _FS_IOCTL_DEV if abi >= 5 else 0
    handled_net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
    try:
        ruleset = _syscall(
            _SYS_LANDLOCK_CREATE_RULESET, attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)
        )
    except OSError as exc:
        raise Unavailable(f"Landlock refused the ruleset: {exc.strerror}") from exc
    try:
        for path in readable:
            _allow(ruleset, path, _READ_ONLY)
        for path in writable_files:
            _allow(ruleset, path, handled_fs & (_FS_READ_FILE | _FS_WRITE_FILE | _FS_TRUNCATE))
        _allow(ruleset, writable, handled_fs)
        _syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0))
    except OSError as exc:
        raise Unavailable(f"Landlock could not be applied: {exc.strerror}") from exc
    finally:
        os.close(ruleset)
    extras = ["filesystem"] + (["tcp"] if handled_net else []) + (["signals"] if scoped else [])
    return f"landlock ABI {abi} ({', '.join(extras)})"


def _allow(ruleset: int, path: Path, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # absent: nothing to allow
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        rule = struct.pack("=Qi", rights, fd)
        _syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, rule, 0)
    finally:
        os.close(fd)


# --- seccomp-BPF (include/uapi/linux/seccomp.h, filter.h, audit.h) -------------------------

_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0 = 0, 4, 16  # struct seccomp_data, little-endian
_CLONE_THREAD = 0x00010000
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
_CLONE_NEW_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x70000000
_X32_SYSCALL_BIT = 0x40000000


class _Arch:
    """An architecture's audit tag and the numbers of the syscalls the filter names."""

    def __init__(self, audit: int, seccomp: int, numbers: Mapping[str, int], *, x32: bool) -> None:
        self.audit = audit
        self.seccomp = seccomp
        self.numbers = numbers
        self.x32 = x32


_GENERIC_NEW = {  # numbers shared by every architecture since Linux 5.1
    "pidfd_getfd": 438,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "mount_setattr": 442,
}
_ARCHES = {
    "x86_64": _Arch(
        0xC000003E,
        317,
        {
            "clone": 56,
            "fork": 57,
            "vfork": 58,
            "execve": 59,
            "execveat": 322,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "socket": 41,
            "unshare": 272,
            "setns": 308,
            "mount": 165,
            "umount2": 166,
            "pivot_root": 155,
            "chroot": 161,
            "bpf": 321,
            "userfaultfd": 323,
            "perf_event_open": 298,
            "kexec_load": 246,
            "init_module": 175,
            "finit_module": 313,
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
            **_GENERIC_NEW,
        },
        x32=True,
    ),
    "aarch64": _Arch(
        0xC00000B7,
        277,
        {
            "clone": 220,
            "execve": 221,
            "execveat": 281,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "socket": 198,
            "unshare": 97,
            "setns": 268,
            "mount": 40,
            "umount2": 39,
            "pivot_root": 41,
            "chroot": 51,
            "bpf": 280,
            "userfaultfd": 282,
            "perf_event_open": 241,
            "kexec_load": 104,
            "init_module": 105,
            "finit_module": 273,
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
            **_GENERIC_NEW,
        },
        x32=False,
    ),
}
#: What :func:`forbid_processes` refuses, with which errno (``clone`` without CLONE_THREAD).
FORBIDDEN: dict[str | int, int] = {name: errno.EPERM for name in _ARCHES["x86_64"].numbers}
FORBIDDEN["clone3"] = errno.ENOSYS


def _arch() -> _Arch:
    machine = platform.machine()
    if machine not in _ARCHES:
        raise Unavailable(f"seccomp filter not available: no syscall table for {machine}")
    return _ARCHES[machine]


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _program(arch: _Arch, errors: Mapping[str | int, int]) -> bytes:
    """A BPF program failing ``errors``' syscalls (by name or number) with their errno."""
    deny = _SECCOMP_RET_ERRNO | errno.EPERM
    code = [
        _insn(_BPF_LD_W_ABS, _OFFSET_ARCH),
        _insn(_BPF_JEQ_K, arch.audit, jt=1),
        _insn(_BPF_RET_K, deny),  # another ABI (i386 on x86-64): refuse everything
        _insn(_BPF_LD_W_ABS, _OFFSET_NR),
    ]
    if arch.x32:
        code += [_insn(_BPF_JGE_K, _X32_SYSCALL_BIT, jf=1), _insn(_BPF_RET_K, deny)]
    for name, error in errors.items():
        number = name if isinstance(name, int) else arch.numbers.get(name)
        if number is None:
            continue  # the architecture lacks it (fork on aarch64): nothing to refuse
        if name == "clone":  # a thread is allowed; a process, or a thread in a new namespace, not
            code += [
                _insn(_BPF_JEQ_K, number, jf=5),
                _insn(_BPF_LD_W_ABS, _OFFSET_ARG0),
                _insn(_BPF_JSET_K, _CLONE_NEW_NAMESPACES, jt=2),
                _insn(_BPF_JSET_K, _CLONE_THREAD, jf=1),
                _insn(_BPF_RET_K, _SECCOMP_RET_ALLOW),
                _insn(_BPF_RET_K, _SECCOMP_RET_ERRNO | error),
            ]
        else:
            code += [_insn(_BPF_JEQ_K, number, jf=1), _insn(_BPF_RET_K, _SECCOMP_RET_ERRNO | error)]
    code.append(_insn(_BPF_RET_K, _SECCOMP_RET_ALLOW))
    return b"".join(code)


def install_syscall_errors(errors: Mapping[str | int, int]) -> None:
    """Make syscalls (by name or number) fail with an errno in every thread of this process.

    Sets ``no_new_privs`` (required). Raises :class:`Unavailable`.
    """
    arch = _arch()
    program = _program(arch, errors)
    filters = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("=HxxxxxxQ", len(program) // 8, ctypes.addressof(filters))
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise Unavailable(f"no_new_privs refused: {os.strerror(ctypes.get_errno())}")
    try:
        result = _syscall(arch.seccomp, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, fprog)
    except OSError as exc:
        raise Unavailable(f"seccomp filter refused: {exc.strerror}") from exc
    if result != 0:
        raise Unavailable(f"seccomp filter could not reach thread {result}")


def forbid_processes() -> str:
    """No new processes, programs, debuggers, sockets, namespaces or mounts; what was applied."""
    install_syscall_errors(FORBIDDEN)
    return "seccomp (no fork, exec, ptrace, sockets, namespaces, mounts)"


def threads() -> int:
    """How many threads this process has."""
    return len(os.listdir("/proc/self/task"))


def system_readable() -> Sequence[Path]:
    """What any Python process with NumPy and torch needs to read beyond its ``sys.path``."""
    return [
        Path(p)
        for p in (
            "/usr/lib",
            "/usr/lib64",
            "/usr/local/lib",
            "/lib",
            "/lib64",
            "/etc/ld.so.cache",
            "/etc/localtime",
            "/proc",
            "/sys/devices/system/cpu",
            "/sys/fs/cgroup",
            "/dev/urandom",
            "/dev/random",
            "/dev/zero",
            "/dev/null",
        )
    ]
