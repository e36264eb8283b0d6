"""Detect a blob's format from its content and route it to the right scanner.

Detection looks at the first bytes (magic numbers, structure), never at the
name alone: a name only makes the scan stricter (a ``.pkl`` that breaks before
importing anything is still reported, raw tensor bytes in ``data/0`` are not).
Anything no detector claims is tried as a pickle, so payloads hide behind no
extension. Any exception while scanning a part becomes an ``error`` finding.
"""

from __future__ import annotations

import zlib

from scanning._static.blobs import Blob
from scanning._static.context import LimitExceeded, ScanContext, TimeExceeded, Where
from scanning._static.detect import (
    GGUF_MAGIC,
    HDF5_MAGIC,
    NPY_MAGIC,
    looks_like_onnx,
    looks_like_safetensors,
)
from scanning._static.pickles import scan_pickles
from scanning.report import Severity

__all__ = ["detect", "scan_part"]

_HEAD = 4096
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
_COMPRESSED_MAGICS = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "xz": b"\xfd7zXZ\x00"}
_UNSUPPORTED = {b"\x04\x22\x4d\x18": "lz4", b"\x28\xb5\x2f\xfd": "zstd"}
_PICKLE_NAMES = (
    ".pkl",
    ".pickle",
    ".pt",
    ".pth",
    ".ckpt",
    ".bin",
    ".joblib",
    ".p",
    ".dat",
    ".data",
    ".npy",
    ".model",
    ".sav",
)
_EOCD_SEARCH = 65_536 + 22


def detect(head: bytes, size: int | None, hint: str = "") -> str:
    """The format the first bytes announce; ``other`` when nothing claims them.

    >>> detect(b"PK\\x03\\x04rest", 100)
    'zip'
    >>> detect(b"\\x80\\x04\\x95", 10)
    'other'
    """
    if head.startswith(_ZIP_MAGICS):
        return "zip"
    if head.startswith(NPY_MAGIC):
        return "npy"
    for kind, magic in _COMPRESSED_MAGICS.items():
        if head.startswith(magic):
            return kind
    if head.startswith(_SEVENZIP_MAGIC):
        return "7z"
    for magic, kind in _UNSUPPORTED.items():
        if head.startswith(magic):
            return kind
    if head.startswith(GGUF_MAGIC):
        return "gguf"
    if HDF5_MAGIC in (head[0:8], head[512:520], head[1024:1032], head[2048:2056]):
        return "hdf5"
    if looks_like_safetensors(head, size):
        return "safetensors"
    if head[257:262] == b"ustar":
        return "tar"
    if _is_zlib(head):
        return "zlib"
    if head[:3] == b"\x5d\x00\x00" and _is_lzma_alone(head):
        return "lzma"
    if looks_like_onnx(head, size) or (head[:1] == b"\x08" and hint.lower().endswith(".onnx")):
        return "onnx"
    if hint.lower().endswith(".safetensors"):
        return "safetensors"
    return "other"


def _is_zlib(head: bytes) -> bool:
    if len(head) < 2 or head[0] & 0x0F != 8 or head[0] >> 4 > 7 or (head[0] << 8 | head[1]) % 31:
        return False
    try:
        zlib.decompressobj().decompress(head[:1024], 64)
    except zlib.error:
        return False
    return True


def _is_lzma_alone(head: bytes) -> bool:
    import lzma  # rare format, keep start-up light

    try:
        lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(head[:1024], 64)
    except lzma.LZMAError:
        return False
    return True


def scan_part(blob: Blob, ctx: ScanContext, where: Where) -> str:
    """Scan one file or member; internal errors and limits become ``error`` findings."""
    try:
        return _scan(blob, ctx, where)
    except TimeExceeded:
        raise
    except LimitExceeded as exc:
        ctx.report(
            where,
            "scan.limit",
            exc.what,
            Severity.ERROR,
            "a scan limit was reached: the rest of this part was not scanned",
        )
        return "limited"
    except RecursionError as exc:
        ctx.report(
            where,
            "scan.error",
            f"too deeply nested: {exc}",
            Severity.ERROR,
            "this part could not be scanned, so it cannot be called clean",
        )
        return "error"
    except Exception as exc:  # never "clean" on an internal failure
        ctx.report(
            where,
            "scan.error",
            f"{type(exc).__name__}: {exc}",
            Severity.ERROR,
            "the scanner failed on this part, so it cannot be called clean",
        )
        return "error"


def _scan(blob: Blob, ctx: ScanContext, where: Where) -> str:
    ctx.check_time()
    head = blob.head(_HEAD)
    if not head:
        return "empty"
    fmt = detect(head, blob.size, where.hint)
    if fmt in ("zip", "gzip", "bz2", "xz", "zlib", "lzma", "7z", "tar"):
        return _archive(fmt, blob, head, ctx, where)
    if fmt in ("lz4", "zstd"):
        ctx.report(
            where,
            "compression.unsupported",
            f"{fmt}-compressed data",
            Severity.SUSPICIOUS,
            "the scanner cannot decompress it, so its content "
            "(often a pickle, e.g. joblib) cannot be called clean",
        )
        return fmt
    if fmt == "npy":
        from scanning._static.numpy_format import scan_npy

        return scan_npy(blob, ctx, where)
    if fmt == "gguf":
        from scanning._static.gguf_format import scan_gguf

        return scan_gguf(blob, ctx, where)
    if fmt == "hdf5":
        from scanning._static.keras_format import scan_hdf5

        return scan_hdf5(blob, ctx, where)
    if fmt == "safetensors":
        from scanning._static.safetensors_format import scan_safetensors

        return scan_safetensors(blob, ctx, where)
    if fmt == "onnx":
        from scanning._static.onnx_format import scan_onnx

        return scan_onnx(blob, ctx, where, ctx.directory if where.member is None else None)
    return _other(blob, head, ctx, where)


def _archive(fmt: str, blob: Blob, head: bytes, ctx: ScanContext, where: Where) -> str:
    from scanning._static import archives  # only when an archive shows up

    def member(inner: Blob, inner_where: Where) -> str:
        return scan_part(inner, ctx, inner_where)

    if fmt == "zip":
        found = archives.scan_zip(blob, ctx, where, member)
        if found is None and head.startswith(b"PK\x03\x04"):
            ctx.report(
                where,
                "zip.invalid",
                "zip local headers but no central directory",
                Severity.ERROR,
                "the members cannot be listed (truncated or damaged archive): not scanned",
            )
            return "zip"
        return found or _other(blob, head, ctx, where)
    if fmt == "7z":
        return archives.scan_7z(blob, ctx, where, member)
    if fmt == "tar":
        return archives.scan_tar(blob, ctx, where, member)
    return archives.scan_compressed(blob, ctx, where, member, fmt)


def _other(blob: Blob, head: bytes, ctx: ScanContext, where: Where) -> str:
    """No magic number: JSON, a pickle, a zip appended to something, or plain data."""
    if head.lstrip()[:1] in (b"{", b"["):
        from scanning._static.keras_format import scan_json

        fmt = scan_json(blob, ctx, where)
        if fmt is not None:
            return fmt
    strict = (
        head[:1] == b"\x80"
        and len(head) > 1
        and head[1] <= 5
        and (where.member is None or where.hint.lower().endswith(_PICKLE_NAMES))
    )
    fmt = scan_pickles(blob, ctx, where, strict=strict)
    if where.member is None and _has_zip_end(blob, ctx):
        from scanning._static.archives import scan_zip

        zipped = scan_zip(blob, ctx, where, lambda b, w: scan_part(b, ctx, w), appended=True)
        if zipped is not None:
            return zipped if fmt is None else f"{fmt}+{zipped}"
    if fmt is not None:
        return fmt
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "text" if exc.start > len(head) - 4 else "data"
    return "text"


def _has_zip_end(blob: Blob, ctx: ScanContext) -> bool:
    if blob.size is None or blob.size < 22:
        return False
    handle = blob.seekable(ctx)
    handle.seek(max(0, blob.size - _EOCD_SEARCH))
    return b"PK\x05\x06" in handle.read(_EOCD_SEARCH)
