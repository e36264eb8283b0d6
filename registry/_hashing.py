"""Walking a model directory safely and hashing its files in parallel.

This is the private engine behind :mod:`registry.manifest`. It works in two
phases so that a refusal happens before any byte is hashed:

1. :func:`plan_tree` walks the tree, checks every entry (no escaping symlink, no
   device or fifo, nothing unreadable, every name recordable) and returns the
   list of files to hash;
2. :func:`hash_planned` hashes them with SHA-256 on a thread pool. ``hashlib``
   releases the GIL while it digests a buffer, so threads scale with cores.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from registry.errors import InvalidInput, UnsafePath

#: Bytes read per ``readinto`` call. Large enough that the per-call overhead
#: (a syscall, a GIL round trip, a progress callback) is negligible next to
#: hashing; small enough that a worker's buffer stays modest.
CHUNK_SIZE = 4 * 1024 * 1024

#: A manifest digest: ``sha256:`` then 64 lowercase hex digits.
MANIFEST_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")

#: A file's SHA-256, as recorded in a manifest entry.
SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")


class ProgressCallback(Protocol):
    """Receives the progress of :func:`registry.manifest.hash_tree`.

    ``start`` is called once, from the calling thread, after the tree was
    checked and before the first byte is read. ``advance`` is called from the
    worker threads, concurrently, once per chunk read: implementations must be
    thread-safe (a lock around a counter, or a ``rich`` progress bar, whose
    ``advance`` takes a lock). The sum of the ``advance`` calls equals
    ``total_bytes`` unless a file changes while it is hashed (then hashing fails).
    """

    def start(self, total_bytes: int, files: int) -> None:
        """Announce the work: ``files`` files holding ``total_bytes`` bytes."""

    def advance(self, nbytes: int) -> None:
        """Record that ``nbytes`` more bytes were hashed (any thread)."""


@dataclass(frozen=True)
class PlannedFile:
    """A file that passed the checks: its manifest name and what to open."""

    name: str  #: POSIX path relative to the root, as recorded in the manifest.
    source: str  #: Real path opened for reading (a symlink's resolved target).
    size: int  #: Size seen while planning; used for ordering and progress only.


@dataclass(frozen=True)
class HashedFile:
    """The result of hashing one planned file."""

    name: str
    size: int
    sha256: str


def path_problem(path: object) -> str | None:
    """Why ``path`` cannot be a manifest path, or ``None`` when it can.

    A manifest path is relative, uses ``/`` only, has no empty, ``.`` or ``..``
    component and no NUL, and is valid UTF-8 (the digest encodes it as UTF-8).
    """
    if not isinstance(path, str):
        return f"must be a string, not {type(path).__name__}"
    if not path:
        return "is empty"
    if "\x00" in path:
        return "contains a NUL character"
    if "\\" in path:
        return "contains a backslash; manifest paths use '/' separators only"
    if path.startswith("/"):
        return "is absolute; give a path relative to the model directory"
    parts = path.split("/")
    if "" in parts:
        return "has an empty component (a doubled or trailing '/')"
    if "." in parts or ".." in parts:
        return "has a '.' or '..' component"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def plan_tree(path: Path, *, allowed_roots: Sequence[Path] = ()) -> list[PlannedFile]:
    """Check the file or directory at ``path`` and list the files to hash.

    Raises :class:`InvalidInput` when ``path`` does not exist or holds no file,
    and :class:`UnsafePath` for the first entry that cannot be hashed safely.
    """
    if not os.path.lexists(path):
        raise InvalidInput(f"{path} does not exist", hint="check the path to the model")
    # The root itself may be a symlink (e.g. a `latest` link): the user named it,
    # so follow it and judge every link inside against its real location.
    root = os.path.realpath(path)
    mode = _stat_mode(root, display=path.name or str(path))
    if stat.S_ISREG(mode):
        return [_plan_regular(root, _checked_name(path.name))]
    if not stat.S_ISDIR(mode):
        raise UnsafePath(str(path), _special_kind(mode))
    allowed = (root, *(os.path.realpath(extra) for extra in allowed_roots))
    planned = _walk(root, allowed)
    if not planned:
        raise InvalidInput(
            f"{path} holds no files: no files to register",
            hint="point at the directory that contains the model files",
        )
    return planned


def hash_planned(
    files: Sequence[PlannedFile], *, workers: int, progress: ProgressCallback | None = None
) -> list[HashedFile]:
    """Hash ``files`` on ``workers`` threads, biggest first, in no particular order."""
    # Biggest first: the long jobs start at once and the small ones fill the
    # gaps at the end, so no thread is left hashing one huge file alone.
    ordered = sorted(files, key=lambda planned: planned.size, reverse=True)
    if progress is not None:
        progress.start(sum(planned.size for planned in ordered), len(ordered))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(ordered)))) as pool:
        futures = [pool.submit(hash_file, planned, progress) for planned in ordered]
        try:
            return [future.result() for future in futures]
        except BaseException:
            # Stop queued files on the first failure; running ones finish.
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def hash_file(planned: PlannedFile, progress: ProgressCallback | None = None) -> HashedFile:
    """SHA-256 of one planned file, streamed in :data:`CHUNK_SIZE` chunks.

    ``readinto`` one reused buffer rather than ``mmap``: mmap saves a copy
    (~8% here) but a file truncated while mapped kills the process with SIGBUS.
    """
    fd, before = _open_regular(planned)
    digest = hashlib.sha256()
    size = 0
    view = memoryview(bytearray(CHUNK_SIZE))
    try:
        with open(fd, "rb", buffering=0, closefd=True) as stream:
            while nread := stream.readinto(view):
                digest.update(view[:nread])
                size += nread
                if progress is not None:
                    progress.advance(nread)
                if size > before.st_size:
                    break  # growing under us: stop now, or a busy writer keeps us forever
            _check_unchanged(planned.name, before, os.fstat(stream.fileno()), size)
    except OSError as exc:
        raise UnsafePath(planned.name, f"cannot be read: {exc.strerror or exc}") from exc
    return HashedFile(planned.name, size, digest.hexdigest())


def _walk(root: str, allowed: tuple[str, ...]) -> list[PlannedFile]:
    """Every file under ``root``, checked; an explicit stack avoids deep recursion."""
    planned: list[PlannedFile] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        for entry in _list_dir(root, rel_dir):
            rel = _checked_name(f"{rel_dir}/{entry.name}" if rel_dir else entry.name)
            if entry.is_symlink():
                planned.append(_plan_symlink(entry.path, rel, allowed))
            elif entry.is_dir(follow_symlinks=False):
                pending.append(rel)
            else:
                planned.append(_plan_regular(entry.path, rel))
    return planned


def _list_dir(root: str, rel_dir: str) -> list[os.DirEntry[str]]:
    """The entries of one directory, or :class:`UnsafePath` if it cannot be listed."""
    try:
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as entries:
            return list(entries)
    except OSError as exc:
        raise UnsafePath(
            _display(rel_dir or "."), f"directory cannot be listed: {exc.strerror or exc}"
        ) from exc


def _plan_symlink(link: str, rel: str, allowed: tuple[str, ...]) -> PlannedFile:
    """Follow a symlink if it stays inside an allowed root and names a regular file."""
    try:
        target = os.path.realpath(link, strict=True)
    except OSError as exc:
        raise UnsafePath(_display(rel), f"symlink is broken or loops: {exc.strerror}") from exc
    if not any(_is_within(target, root) for root in allowed):
        where = "the model directory"
        if len(allowed) > 1:
            where += " and the allowed roots"
        raise UnsafePath(_display(rel), f"symlink resolves to {target}, outside {where}")
    if stat.S_ISDIR(_stat_mode(target, display=rel)):
        # Following directory links could loop or hash a subtree twice; refusing
        # them keeps the manifest a plain list of files.
        raise UnsafePath(_display(rel), "symlinked directory: mbom follows links to files only")
    return _plan_regular(target, rel)


def _plan_regular(source: str, rel: str) -> PlannedFile:
    """A planned file for ``source``, if it is a regular file we may read."""
    try:
        info = os.stat(source, follow_symlinks=False)
    except OSError as exc:
        raise UnsafePath(_display(rel), f"cannot be inspected: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(_display(rel), _special_kind(info.st_mode))
    if not os.access(source, os.R_OK):
        raise UnsafePath(_display(rel), "file is not readable (permission denied)")
    return PlannedFile(name=rel, source=source, size=info.st_size)


def _open_regular(planned: PlannedFile) -> tuple[int, os.stat_result]:
    """Open a planned file without following a link or blocking on a fifo.

    The tree may change between planning and hashing: ``O_NOFOLLOW`` refuses a
    link swapped in, ``O_NONBLOCK`` keeps a fifo swapped in from hanging us, and
    the ``fstat`` refuses anything that is no longer a regular file.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(planned.source, flags)
    except OSError as exc:
        raise UnsafePath(planned.name, f"cannot be opened: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafePath(planned.name, f"changed while hashing: {_special_kind(info.st_mode)}")
    os.set_blocking(fd, True)
    return fd, info


def _check_unchanged(name: str, before: os.stat_result, after: os.stat_result, hashed: int) -> None:
    """Refuse a file that was written to while we hashed it: the digest is torn."""
    if after.st_size != hashed or after.st_mtime_ns != before.st_mtime_ns:
        raise UnsafePath(
            name, "file changed while it was hashed; register it when nothing writes to it"
        )


def _stat_mode(path: str, *, display: str) -> int:
    """``st_mode`` of ``path`` (following links), or :class:`UnsafePath`."""
    try:
        return os.stat(path).st_mode
    except OSError as exc:
        raise UnsafePath(_display(display), f"cannot be inspected: {exc.strerror}") from exc


def _checked_name(rel: str) -> str:
    """``rel`` if it can be recorded in a manifest, else :class:`UnsafePath`."""
    problem = path_problem(rel)
    if problem is not None:
        raise UnsafePath(_display(rel), f"file name {problem}")
    return rel


def _is_within(path: str, root: str) -> bool:
    """Whether the real path ``path`` is ``root`` or below it."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _special_kind(mode: int) -> str:
    """Why a non-regular file is refused, naming its kind."""
    kinds = {
        stat.S_IFIFO: "a fifo (named pipe)",
        stat.S_IFSOCK: "a socket",
        stat.S_IFBLK: "a block device",
        stat.S_IFCHR: "a character device",
    }
    kind = kinds.get(stat.S_IFMT(mode), "a special file")
    return f"is {kind}; only regular files can be hashed"


def _display(rel: str) -> str:
    """``rel`` printable even when it holds undecodable bytes (surrogate escapes)."""
    return os.fsencode(rel).decode("utf-8", errors="backslashreplace")
