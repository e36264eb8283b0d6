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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from registry.errors import BlobMissing, ConfigurationError
from registry.store._common import BlobCheck, BlobInfo, Progress, hash_stream, hex_of, receive

_SHARD = re.compile(r"[0-9a-f]{2}")
_HEX = re.compile(r"[0-9a-f]{64}")


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

    def delete(self, digest: str) -> None:
        """Remove the blob; an absent one is fine."""
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
        """Re-hash the stored bytes."""
        try:
            with self.open(digest) as stream:
                actual, size = hash_stream(stream)
        except BlobMissing:
            return BlobCheck(digest, "missing", None)
        return BlobCheck(digest, "ok" if actual == digest else "corrupt", size)

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
