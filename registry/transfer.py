"""Moving model files into the registry's store and back out, with every byte hashed on the way.

Storing walks a model directory with the same safety checks as hashing
(:func:`registry._hashing.plan_tree`: no symlink out of the tree, no special
files) and hands each file to a ``put`` (the local store's, or an upload to a
server); the manifest is built from what the receiving side hashed, and the
sender's own hash must agree. Pulling writes each file under a temporary name,
hashing while writing, and renames it only when size and SHA-256 match, so a
corrupt blob or a cut connection never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from registry import _hashing
from registry._hashing import PlannedFile, ProgressCallback
from registry.errors import InvalidInput, UnsafePath
from registry.manifest import Manifest, ManifestEntry
from registry.store import BlobInfo

#: Sends one open file to the store; returns what the store received.
PutFile = Callable[[BinaryIO, PlannedFile, Callable[[int], None] | None], BlobInfo]


def store_tree(
    path: Path,
    put: PutFile,
    *,
    workers: int = 2,
    progress: ProgressCallback | None = None,
    allowed_roots: tuple[Path, ...] = (),
) -> Manifest:
    """Put every file under ``path`` through ``put``; the manifest of what was stored."""
    planned = _hashing.plan_tree(path, allowed_roots=allowed_roots)
    ordered = sorted(planned, key=lambda item: item.size, reverse=True)
    if progress is not None:
        progress.start(sum(item.size for item in ordered), len(ordered))
    advance = progress.advance if progress is not None else None

    def one(item: PlannedFile) -> ManifestEntry:
        with _open_checked(item) as stream:
            info = put(stream, item, advance)
        if info.size != item.size:
            raise UnsafePath(
                item.name, f"changed while it was stored ({item.size} -> {info.size} bytes)"
            )
        return ManifestEntry(item.name, info.size, info.digest.removeprefix("sha256:"))

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(ordered)))) as pool:
        futures = [pool.submit(one, item) for item in ordered]
        try:
            entries = [future.result() for future in futures]
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return Manifest(tuple(entries))


@contextmanager
def _open_checked(item: PlannedFile) -> Iterator[BinaryIO]:
    """Open a planned file with the hashing module's checks (regular, not swapped)."""
    fd, _before = _hashing._open_regular(item)
    with open(fd, "rb", closefd=True) as stream:
        yield stream


class HashingReader:
    """Wraps a stream: hashes and counts what is read through it (an upload's body)."""

    def __init__(self, stream: BinaryIO, chunk: int = 1 << 20) -> None:
        self._stream = stream
        self._chunk = chunk
        self.sha256 = hashlib.sha256()
        self.size = 0

    def chunks(self, advance: Callable[[int], None] | None = None) -> Iterator[bytes]:
        """The stream's bytes in chunks, hashed as they go."""
        while data := self._stream.read(self._chunk):
            self.sha256.update(data)
            self.size += len(data)
            if advance is not None:
                advance(len(data))
            yield data

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of what was read so far."""
        return "sha256:" + self.sha256.hexdigest()


def check_destination(dest: Path) -> None:
    """A pull writes into a new or empty directory only: it never overwrites files."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInput(
            f"{dest} exists and is not an empty directory",
            hint="pull into a new directory; mbom never overwrites files",
        )


@dataclass(frozen=True)
class Staging:
    """Where a pull writes before it is complete: the tree, and a private spot for partials."""

    tree: Path
    parts: Path

    def partial(self, index: int) -> Path:
        """The temporary file of the ``index``-th file: never a name the manifest can use."""
        return self.parts / str(index)


@contextmanager
def staged(dest: Path) -> Iterator[Staging]:
    """Pull into a private directory beside ``dest``; it becomes ``dest`` only when every
    file is in and verified, so a failed pull leaves nothing half-written behind."""
    check_destination(dest)
    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tree = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dest.name}.mbom-pull-"))
    parts = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dest.name}.mbom-parts-"))
    try:
        yield Staging(tree, parts)
        if dest.exists():
            dest.rmdir()  # empty, as checked: someone who filled it since makes this fail
        os.replace(tree, dest)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
        shutil.rmtree(tree, ignore_errors=True)


def write_verified(
    staging: Staging,
    index: int,
    relative: str,
    *,
    size: int,
    sha256: str,
    chunks: Iterator[bytes | memoryview],
    advance: Callable[[int], None] | None = None,
) -> None:
    """Write one pulled file, hashing while writing; moved into the tree only if it matches.

    Each chunk is consumed before the next is asked for (a reader may reuse one buffer).
    """
    from registry.errors import BlobCorrupt

    if _hashing.path_problem(relative) is not None:
        raise UnsafePath(relative, "is not a safe relative path")
    target = staging.tree / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = staging.partial(index)
    digest = hashlib.sha256()
    written = 0
    try:
        with open(partial, "xb") as out:
            for data in chunks:
                written += len(data)
                if written > size:
                    break
                digest.update(data)
                out.write(data)
                if advance is not None:
                    advance(len(data))
            # No fsync: a pulled copy is verified as it is written, and cp makes no more
            # promise; after a power loss, `mbom verify DEST N@V` (or a new pull) tells.
        if written != size or digest.hexdigest() != sha256:
            got = f"{written} bytes, sha256:{digest.hexdigest()}"
            raise BlobCorrupt(
                f"sha256:{sha256}", f"received {got} for {relative}", store="registry"
            )
        if target.exists():
            raise UnsafePath(relative, "is listed twice or clashes with another file")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
