"""What every blob store shares: digest values, validation, and the one receive loop.

The receive loop is where the store's promises are kept for every backend: bytes are
hashed while they are written, reading stops at the limit, and a mismatch is raised
before the caller makes anything visible.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

from registry.errors import BlobCorrupt, BlobMismatch, InvalidInput, LimitExceeded

#: A blob's name: the SHA-256 of its bytes. Use ``fullmatch``: ``$`` alone lets a
#: trailing newline through.
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

#: Bytes read, hashed and written at a time: memory stays bounded whatever the size.
CHUNK = 1024 * 1024

Progress = Callable[[int], None]


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its digest (``sha256:<64 hex>``) and its size in bytes."""

    digest: str
    size: int


@dataclass(frozen=True)
class BlobCheck:
    """The outcome of re-hashing one stored blob (``size`` is None when it is missing)."""

    digest: str
    state: Literal["ok", "missing", "corrupt"]
    size: int | None


def hex_of(digest: str) -> str:
    """The 64 hex characters of a valid digest; InvalidInput for anything else.

    Every path and object key is built from this, so a hostile digest such as
    ``sha256:../../x`` never reaches the file system or the bucket.
    """
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise InvalidInput(
            f"{digest!r} is not a blob digest",
            hint="a digest is sha256: followed by 64 lowercase hex characters",
        )
    return digest.removeprefix("sha256:")


def receive(
    stream: BinaryIO,
    sink: BinaryIO,
    *,
    expected: str | None = None,
    expected_size: int | None = None,
    max_bytes: int | None = None,
    progress: Progress | None = None,
) -> BlobInfo:
    """Copy ``stream`` into ``sink`` chunk by chunk, hashing as it goes.

    Reads at most one byte past the tightest announced bound, so an oversized or
    overlong upload is refused without reading the rest. Raises LimitExceeded or
    BlobMismatch; the caller then throws ``sink`` away. ``progress`` gets the number
    of bytes of each chunk read.
    """
    if expected is not None:
        hex_of(expected)
    bounds = [b for b in (max_bytes, expected_size) if b is not None]
    cap = min(bounds) if bounds else None
    hasher = hashlib.sha256()
    size = 0
    while True:
        chunk = stream.read(CHUNK if cap is None else min(CHUNK, cap + 1 - size))
        if not chunk:
            break
        size += len(chunk)
        _check_bounds(size, expected_size=expected_size, max_bytes=max_bytes)
        hasher.update(chunk)
        sink.write(chunk)
        if progress is not None:
            progress(len(chunk))
    info = BlobInfo(f"sha256:{hasher.hexdigest()}", size)
    if expected_size is not None and size != expected_size:
        raise BlobMismatch(f"{expected_size} bytes", f"{size} bytes")
    if expected is not None and info.digest != expected:
        raise BlobMismatch(expected, info.digest)
    return info


def _check_bounds(size: int, *, expected_size: int | None, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise LimitExceeded(
            "the upload",
            f"more than {max_bytes} bytes",
            hint=f"nothing was stored; the store takes at most {max_bytes} bytes here",
        )
    if expected_size is not None and size > expected_size:
        raise BlobMismatch(f"{expected_size} bytes", f"more than {expected_size} bytes")


def hash_stream(stream: BinaryIO) -> tuple[str, int]:
    """The digest and size of everything left in ``stream``, read chunk by chunk."""
    hasher = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    return f"sha256:{hasher.hexdigest()}", size


def hashed_chunks(
    stream: BinaryIO,
    digest: str,
    size: int,
    *,
    chunk: int = CHUNK,
    store: str,
    on_intact: Callable[[], None] | None = None,
) -> Iterator[bytes]:
    """``stream``'s bytes in chunks, hashed on the way; the last chunk is held back until
    the whole blob is known to be ``digest`` and ``size`` bytes long, and BlobCorrupt
    comes instead of it otherwise: a corrupt blob never reaches a reader complete.

    Reads at most one byte past ``size``. ``on_intact`` runs once the blob is verified,
    before the last chunk goes out.
    """
    hasher = hashlib.sha256()
    count = 0
    held = b""
    while data := stream.read(min(chunk, size + 1 - count)):
        count += len(data)
        if count > size:
            raise BlobCorrupt(digest, f"it holds more than the {size} bytes recorded", store=store)
        hasher.update(data)
        if held:
            yield held
        held = data
    if count != size:
        raise BlobCorrupt(digest, f"it holds {count} bytes, not the {size} recorded", store=store)
    if f"sha256:{hasher.hexdigest()}" != digest:
        raise BlobCorrupt(digest, f"its bytes hash to sha256:{hasher.hexdigest()}", store=store)
    if on_intact is not None:
        on_intact()
    if held:
        yield held
