"""The blob store on a local directory: ``<root>/sha256/<hex[:2]>/<hex>``.

A blob becomes visible only by an atomic rename of a complete, verified, fsynced temp
file from ``<root>/tmp/``; a reader never sees half a blob, and a crash leaves at most
a stray temp file, never a wrong blob.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from registry.errors import BlobCorrupt, BlobMissing, ConfigurationError
from registry.store._common import (
    CHUNK,
    BlobCheck,
    BlobInfo,
    Progress,
    hash_stream,
    hashed_chunks,
    hex_of,
    receive,
)

_SHARD = re.compile(r"[0-9a-f]{2}")
_HEX = re.compile(r"[0-9a-f]{64}")
#: Blobs a store remembers as verified (a few MiB of memory at most); the oldest go first.
_VOUCHED_MAX = 65536


@dataclass(frozen=True)
class _Stamp:
    """One state of a blob file, told from its metadata without reading it.

    Any write through the file system changes the modification time (or the size);
    a rename over the blob changes the inode; making the read-only file writable
    changes the mode. So a file whose stamp is the one taken when this store last
    hashed it in full holds the bytes it hashed then. The change time is left out on
    purpose: hard-linking a blob for a scan (admission does) changes it, bytes intact.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    mode: int

    @classmethod
    def of(cls, result: os.stat_result) -> _Stamp:
        """The stamp of a ``stat``/``fstat`` result."""
        return cls(result.st_dev, result.st_ino, result.st_size, result.st_mtime_ns, result.st_mode)


class LocalBlobStore:
    """Blobs as read-only files under ``root``; ``local_path`` hands them to scanners."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self._blobs = self.root / "sha256"
        #: Where uploads are written until verified; same file system, so the rename is atomic.
        self.temp_dir = self.root / "tmp"
        try:
            self._blobs.mkdir(parents=True, exist_ok=True)
            self.temp_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot use {self.root} as an artifact store: {exc.strerror or exc}",
                hint="point the store URL at a directory mbom can write",
            ) from exc
        self.url = self.root.as_uri()
        #: Blobs this store hashed in full and found intact, with the file's stamp then.
        self._vouched: dict[str, _Stamp] = {}
        self._vouched_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalBlobStore({self.url!r})"

    def _path(self, digest: str) -> Path:
        hex_ = hex_of(digest)
        return self._blobs / hex_[:2] / hex_

    def put(
        self,
        stream: BinaryIO,
        *,
        expected: str | None = None,
        expected_size: int | None = None,
        max_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> BlobInfo:
        """Store the stream's bytes; visible only once complete and verified."""
        fd, name = tempfile.mkstemp(dir=self.temp_dir, prefix="put-", suffix=".part")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as sink:
                info = receive(
                    stream,
                    sink,
                    expected=expected,
                    expected_size=expected_size,
                    max_bytes=max_bytes,
                    progress=progress,
                )
                sink.flush()
                os.fsync(sink.fileno())
            self._publish(temp, info)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return info

    def _publish(self, temp: Path, info: BlobInfo) -> None:
        """Rename ``temp`` into place, durably; a present blob of that size stays as is."""
        final = self._path(info.digest)
        # A present blob is kept only when it is intact: uploading the true bytes again
        # is how a blob `mbom store verify` calls corrupt is repaired.
        if self.size(info.digest) == info.size and self.check(info.digest).state == "ok":
            temp.unlink()
            return
        if not final.parent.is_dir():
            final.parent.mkdir(exist_ok=True)
            _fsync_dir(self._blobs)
        temp.chmod(0o444)
        os.replace(temp, final)
        _fsync_dir(final.parent)
        self._vouch(info.digest, _Stamp.of(final.stat()))  # its bytes were hashed on the way in

    def put_path(self, path: Path, *, progress: Progress | None = None) -> BlobInfo:
        """Store a file's bytes (read once, hashed while copied)."""
        with path.open("rb") as stream:
            return self.put(stream, progress=progress)

    def exists(self, digest: str) -> bool:
        """Whether the blob is stored."""
        return self._path(digest).is_file()

    def size(self, digest: str) -> int | None:
        """The stored blob's size, None when it is absent."""
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def open(self, digest: str) -> Iterator[BinaryIO]:
        """The blob's bytes, unverified (``copy_verified`` checks while it copies)."""
        try:
            stream = self._path(digest).open("rb")
        except FileNotFoundError:
            raise BlobMissing(digest, store=self.url) from None
        with stream:
            yield stream

    def local_path(self, digest: str) -> Path:
        """The blob's file, for readers that need a path; BlobMissing when absent."""
        path = self._path(digest)
        if not path.is_file():
            raise BlobMissing(digest, store=self.url)
        return path

    def read_verified(self, digest: str, size: int, *, chunk: int = CHUNK) -> Iterator[bytes]:
        """The blob's bytes in chunks; the last one only once the blob is known intact.

        A blob this store hashed in full before (stored it, checked it, or served it
        hashing) and whose file is unchanged since (:class:`_Stamp`) is read without
        hashing it again; its file is looked at again before the last chunk, so a change
        while it is read cuts it short too. Any other is hashed on the way, as on S3,
        and remembered once found intact. BlobCorrupt comes instead of the last chunk.
        """
        with self.open(digest) as stream:
            seen = _Stamp.of(os.fstat(stream.fileno()))
            if seen.size == size and self._vouched_for(digest) == seen:
                yield from self._unchanged_chunks(stream, digest, seen, chunk)
                return

            def intact() -> None:
                if _Stamp.of(os.fstat(stream.fileno())) == seen:  # not changed while hashed
                    self._vouch(digest, seen)

            try:
                yield from hashed_chunks(
                    stream, digest, size, chunk=chunk, store=self.url, on_intact=intact
                )
            except BlobCorrupt:
                self._forget(digest)
                raise

    def _unchanged_chunks(
        self, stream: BinaryIO, digest: str, seen: _Stamp, chunk: int
    ) -> Iterator[bytes]:
        """A vouched-for blob's bytes; the last chunk only if the file is still as ``seen``."""
        count = 0
        held = b""
        while data := stream.read(chunk):
            count += len(data)
            if held:
                yield held
            held = data
        if count != seen.size or _Stamp.of(os.fstat(stream.fileno())) != seen:
            self._forget(digest)
            raise BlobCorrupt(digest, "its file changed while it was read", store=self.url)
        if held:
            yield held

    def _vouched_for(self, digest: str) -> _Stamp | None:
        with self._vouched_lock:
            return self._vouched.get(digest)

    def _vouch(self, digest: str, stamp: _Stamp) -> None:
        """Remember that the file as ``stamp`` describes it was hashed and is ``digest``."""
        with self._vouched_lock:
            self._vouched.pop(digest, None)
            self._vouched[digest] = stamp
            if len(self._vouched) > _VOUCHED_MAX:
                del self._vouched[next(iter(self._vouched))]

    def _forget(self, digest: str) -> None:
        with self._vouched_lock:
            self._vouched.pop(digest, None)

    def delete(self, digest: str) -> None:
        """Remove the blob; an absent one is fine."""
        self._forget(digest)
        self._path(digest).unlink(missing_ok=True)

    def digests(self) -> Iterator[str]:
        """Every complete blob, in digest order (temp files are never listed)."""
        for shard in sorted(_names(self._blobs)):
            if not _SHARD.fullmatch(shard):
                continue
            for name in sorted(_names(self._blobs / shard)):
                if _HEX.fullmatch(name) and name.startswith(shard):
                    yield f"sha256:{name}"

    def check(self, digest: str) -> BlobCheck:
        """Re-hash the stored bytes (an intact blob is remembered as verified)."""
        try:
            with self.open(digest) as stream:
                seen = _Stamp.of(os.fstat(stream.fileno()))
                actual, size = hash_stream(stream)
                unchanged = _Stamp.of(os.fstat(stream.fileno())) == seen
        except BlobMissing:
            self._forget(digest)
            return BlobCheck(digest, "missing", None)
        if actual != digest:
            self._forget(digest)
            return BlobCheck(digest, "corrupt", size)
        if unchanged:
            self._vouch(digest, seen)
        return BlobCheck(digest, "ok", size)

    def clean_temp(self, *, older_than: float = 86400.0) -> int:
        """Remove temp files a crashed ``put`` left behind; how many were removed."""
        removed = 0
        cutoff = time.time() - older_than
        for entry in os.scandir(self.temp_dir):
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        return removed


def _names(directory: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(directory) if e.is_dir() or e.is_file()]
    except FileNotFoundError:
        return []


def _fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
