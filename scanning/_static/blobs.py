"""Byte sources the scanner reads: files, archive members and decompressed streams.

A :class:`Blob` gives sequential streams from its first byte (``open``) and, when a
format needs random access (a zip inside a gzip, say), a seekable handle
(``seekable``), spooled to a temporary file if it has to be. Nothing is ever read
whole unless a caller asks for it with a bound (:func:`read_bounded`).
"""

from __future__ import annotations

import io
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from scanning._static.context import LimitExceeded, ScanContext

__all__ = [
    "Blob",
    "BytesBlob",
    "DecompressReader",
    "FileBlob",
    "StreamBlob",
    "WindowBlob",
    "read_bounded",
]

_CHUNK = 1 << 20
_RAW_CHUNK = 1 << 16  # compressed input per step: a head read stays cheap
#: What decompressors raise on corrupt input.
DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (zlib.error, OSError, EOFError, ValueError)


class Blob(ABC):
    """Bytes to scan. ``size`` is None when unknown before reading (a stream)."""

    size: int | None

    @abstractmethod
    def open(self) -> BinaryIO:
        """A new sequential stream positioned at the first byte; the caller closes it."""

    @abstractmethod
    def seekable(self, ctx: ScanContext) -> BinaryIO:
        """A seekable handle on the bytes, closed when the file's scan ends."""

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer if the blob is shorter)."""
        with self.open() as stream:
            return read_upto(stream, n)


def read_upto(stream: IO[bytes], n: int) -> bytes:
    """Read until ``n`` bytes or end of stream (``read`` may return short)."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        part = stream.read(min(n - got, _CHUNK))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_bounded(blob: Blob, ctx: ScanContext, what: str) -> bytes:
    """The whole blob, refusing (:class:`LimitExceeded`) past ``max_read_bytes``."""
    cap = ctx.limits.max_read_bytes
    if blob.size is not None and blob.size > cap:
        raise LimitExceeded(f"{what} of {blob.size} bytes is over the {cap}-byte read limit")
    with blob.open() as stream:
        data = read_upto(stream, cap + 1)
    if len(data) > cap:
        raise LimitExceeded(f"{what} is over the {cap}-byte read limit")
    return data


class FileBlob(Blob):
    """A file on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size

    def open(self) -> BinaryIO:
        return self.path.open("rb")

    def seekable(self, ctx: ScanContext) -> BinaryIO:
        return ctx.cleanup.enter_context(self.path.open("rb"))


class BytesBlob(Blob):
    """Bytes already in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)

    def seekable(self, ctx: ScanContext) -> BinaryIO:  # noqa: ARG002 - nothing to clean up
        return io.BytesIO(self.data)


class _Window(io.RawIOBase):
    """A read-only view of ``length`` bytes at ``start`` of a shared seekable handle."""

    def __init__(self, base: BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self._base = base
        self._start = start
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origin = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, origin + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        self._base.seek(self._start + self._pos)
        data = self._base.read(want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class WindowBlob(Blob):
    """``length`` bytes at ``start`` of another blob (a stored archive member)."""

    def __init__(self, base: BinaryIO, start: int, length: int) -> None:
        self._base = base
        self._start = start
        self.size = length

    def open(self) -> BinaryIO:
        assert self.size is not None
        return io.BufferedReader(_Window(self._base, self._start, self.size), 1 << 16)

    def seekable(self, ctx: ScanContext) -> BinaryIO:  # noqa: ARG002 - holds no resource
        assert self.size is not None
        return _Window(self._base, self._start, self.size)  # type: ignore[return-value]


class Decompressor(Protocol):
    """What zlib, bz2 and lzma decompressor objects have in common for our use."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class DecompressReader(io.RawIOBase):
    """Decompress ``raw`` lazily, charging every output byte to the scan's budget.

    ``make`` builds a fresh decompressor; ``concatenated`` restarts one after the
    end of a stream when input remains (gzip, bz2 and xz allow several streams).
    Corrupt or truncated input ends the stream early and is remembered in
    ``problem`` for the caller to report; bytes before the problem are served.
    """

    def __init__(
        self,
        raw: IO[bytes],
        make: Callable[[], Any],
        ctx: ScanContext,
        *,
        concatenated: bool = False,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._make = make
        self._d = make()
        self._ctx = ctx
        self._concatenated = concatenated
        self._pending = b""
        self._done = False
        self.problem: str | None = None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        while not self._done:
            try:
                out = self._step(len(buffer))
            except DECOMPRESS_ERRORS as exc:
                self.problem = f"corrupt compressed data: {exc}"
                self._done = True
                return 0
            if out:
                self._ctx.count_decompressed(len(out))
                buffer[: len(out)] = out
                return len(out)
        return 0

    def _step(self, want: int) -> bytes:
        d = self._d
        if d.eof:
            rest = d.unused_data + self._pending
            self._pending = b""
            if self._concatenated and self._next_stream(rest):
                self._d = self._make()
                return b""
            self._done = True
            return b""
        if hasattr(d, "unconsumed_tail"):  # zlib: input it could not use comes back
            data = self._pending or self._raw.read(_RAW_CHUNK)
            if not data:
                return self._truncated()
            out: bytes = d.decompress(data, want)
            self._pending = d.unconsumed_tail
            return out
        if d.needs_input:
            data = self._pending or self._raw.read(_RAW_CHUNK)
            self._pending = b""
            if not data:
                return self._truncated()
        else:
            data = b""
        result: bytes = d.decompress(data, want)
        return result

    def _next_stream(self, rest: bytes) -> bool:
        """Does another stream follow this one? Zero padding is skipped, as gzip does."""
        while True:
            rest = rest.lstrip(b"\0")
            if rest:
                self._pending = rest
                return True
            rest = self._raw.read(_RAW_CHUNK)
            if not rest:
                return False

    def _truncated(self) -> bytes:
        self.problem = "compressed stream ends before its end marker (truncated)"
        self._done = True
        return b""


class StreamBlob(Blob):
    """Bytes produced by a stream factory (decompression); size unknown until read."""

    def __init__(self, factory: Callable[[], BinaryIO], size: int | None = None) -> None:
        self._factory = factory
        self.size = size
        self.last: BinaryIO | None = None

    def open(self) -> BinaryIO:
        stream = self._factory()
        self.last = stream
        return stream

    def seekable(self, ctx: ScanContext) -> BinaryIO:
        import tempfile  # only nested archives need a spool

        spool = ctx.cleanup.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
        with self.open() as stream:
            while chunk := stream.read(_CHUNK):
                spool.write(chunk)
        spool.seek(0)
        return spool
