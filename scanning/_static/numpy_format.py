"""NumPy ``.npy`` files: the header, and the pickle that follows for object arrays."""

from __future__ import annotations

import ast
import math
import re

from scanning._static.blobs import Blob, read_upto
from scanning._static.context import ScanContext, Where
from scanning._static.pickles import scan_pickles
from scanning.report import Severity

__all__ = ["scan_npy"]

#: numpy.load refuses larger headers by default (``max_header_size``); we allow more
#: before calling a header hostile, but never parse an unbounded one.
_MAX_HEADER = 1 << 20
_SIMPLE_DESCR = re.compile(r"^[<>|=]?([biufcSUVmM?])(\d*)")
_WHY = "a malformed .npy header is refused by numpy but may be parsed differently elsewhere"


def scan_npy(blob: Blob, ctx: ScanContext, where: Where) -> str:
    """Parse the header; an object dtype means a pickle follows, which is scanned."""
    with blob.open() as stream:
        prefix = read_upto(stream, 12)
        if len(prefix) < 10:
            _bad(ctx, where, "the file ends inside the .npy preamble", 0)
            return "npy"
        major = prefix[6]
        if major not in (1, 2, 3):
            _bad(ctx, where, f"unknown .npy format version {major}.{prefix[7]}", 6)
            return "npy"
        width = 2 if major == 1 else 4
        hlen = int.from_bytes(prefix[8 : 8 + width], "little")
        start = 8 + width
        if hlen > _MAX_HEADER:
            _bad(ctx, where, f"header of {hlen} bytes (numpy refuses above 10000)", 8)
            return "npy"
        raw = prefix[start:] + read_upto(stream, max(0, hlen - len(prefix) + start))
    header = _parse_header(raw[:hlen], ctx, where, start, truncated=len(raw) < hlen)
    if header is None:
        return "npy"
    descr, shape = header.get("descr"), header.get("shape")
    data_start = start + hlen
    if _has_object(descr):
        scan_pickles(blob, ctx, where, start=data_start, strict=True)
        return "npy-object"
    _check_size(descr, shape, blob.size, data_start, ctx, where)
    return "npy"


def _bad(ctx: ScanContext, where: Where, detail: str, offset: int) -> None:
    ctx.report(where, "npy.header", detail, Severity.SUSPICIOUS, _WHY, offset=offset)


def _parse_header(
    raw: bytes, ctx: ScanContext, where: Where, offset: int, *, truncated: bool
) -> dict[object, object] | None:
    if truncated:
        _bad(ctx, where, "the file ends inside the .npy header", offset)
        return None
    try:
        header = ast.literal_eval(raw.decode("latin-1"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        _bad(ctx, where, f"the header is not a Python literal: {exc}", offset)
        return None
    if not isinstance(header, dict) or not {"descr", "shape", "fortran_order"} <= set(header):
        _bad(ctx, where, "the header is not a dict with descr, fortran_order and shape", offset)
        return None
    return header


def _has_object(descr: object) -> bool:
    """True when the dtype description holds Python objects anywhere."""
    stack = [descr]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item.lstrip("<>|=").startswith("O"):
                return True
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _check_size(
    descr: object,
    shape: object,
    size: int | None,
    data_start: int,
    ctx: ScanContext,
    where: Where,
) -> None:
    if size is None or not isinstance(descr, str) or not isinstance(shape, tuple):
        return
    match = _SIMPLE_DESCR.match(descr)
    if match is None or not all(isinstance(n, int) and n >= 0 for n in shape):
        return
    kind, digits = match.groups()
    itemsize = int(digits) * (4 if kind == "U" else 1) if digits else 1
    expected = math.prod(shape) * itemsize
    actual = size - data_start
    if actual > expected:
        ctx.report(
            where,
            "npy.trailing_data",
            f"{actual - expected} bytes after the array data",
            Severity.INFO,
            "numpy.load ignores them; they may hide data",
            offset=data_start + expected,
        )
