"""safetensors header validation: the only part of the file that is parsed.

The format is an 8-byte little-endian header length, a JSON object header and a
data section. Nothing in it runs code, but a malformed header is how parser bugs
are reached and how a file can say one thing to one loader and another to the
next, so every rule the reference implementation enforces is checked here.
"""

from __future__ import annotations

import json
import math

from scanning._static.blobs import Blob, read_upto
from scanning._static.context import ScanContext, Where
from scanning.report import Severity

__all__ = ["DTYPE_BITS", "MAX_HEADER", "scan_safetensors"]

#: The reference implementation refuses headers above 100 MB.
MAX_HEADER = 100_000_000
#: Known dtypes and their size in bits.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E4M3FN": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "C64": 64,
    "C128": 128,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
_WHY = (
    "a malformed safetensors header is refused by the reference loader but may be read "
    "differently by others (out-of-bounds reads, overlapping tensors, parser bugs)"
)


class _Checker:
    def __init__(self, ctx: ScanContext, where: Where) -> None:
        self.ctx = ctx
        self.where = where

    def bad(self, kind: str, detail: str, offset: int | None = None) -> None:
        self.ctx.report(
            self.where, f"safetensors.{kind}", detail, Severity.SUSPICIOUS, _WHY, offset=offset
        )


def scan_safetensors(blob: Blob, ctx: ScanContext, where: Where) -> str:
    """Validate the header of a safetensors file; report each broken rule."""
    check = _Checker(ctx, where)
    size = blob.size
    with blob.open() as stream:
        prefix = read_upto(stream, 8)
        if len(prefix) < 8:
            check.bad("header_length", "the file is shorter than the 8-byte header length", 0)
            return "safetensors"
        n = int.from_bytes(prefix, "little")
        if n > MAX_HEADER:
            check.bad("header_length", f"header length {n} is over the 100 MB limit", 0)
            return "safetensors"
        if size is not None and 8 + n > size:
            check.bad(
                "header_length", f"header length {n} runs past the end of the {size}-byte file", 0
            )
            return "safetensors"
        raw = read_upto(stream, n)
        if size is None:
            rest = 0
            while chunk := stream.read(1 << 20):
                rest += len(chunk)
            size = 8 + len(raw) + rest
    if len(raw) < n:
        check.bad("header_length", f"header length {n} runs past the end of the file", 0)
        return "safetensors"
    header = _parse_header(raw, check)
    if header is not None:
        _check_entries(header, size - 8 - n, check)
    return "safetensors"


def _parse_header(raw: bytes, check: _Checker) -> dict[str, object] | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        check.bad("header_encoding", f"the header is not valid UTF-8 ({exc.reason})", 8 + exc.start)
        return None
    if not text.startswith("{"):
        check.bad("header_json", "the header does not start with a JSON object", 8)
        return None
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        seen: dict[str, object] = {}
        for key, value in items:
            if key in seen:
                duplicates.append(key)
            seen[key] = value
        return seen

    try:
        header = json.loads(text.rstrip(" "), object_pairs_hook=pairs)
    except (ValueError, RecursionError) as exc:
        check.bad("header_json", f"the header is not valid JSON: {exc}", 8)
        return None
    if not isinstance(header, dict):
        check.bad("header_json", "the header is not a JSON object", 8)
        return None
    for key in dict.fromkeys(duplicates):
        check.bad("duplicate_key", f"key {key!r} appears more than once in the header")
    return header


def _check_entries(header: dict[str, object], data_size: int, check: _Checker) -> None:
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            _check_metadata(entry, check)
            continue
        span = _check_tensor(name, entry, data_size, check)
        if span is not None:
            spans.append((span[0], span[1], name))
    spans.sort()
    end = 0
    for begin, stop, name in spans:
        if begin < end:
            check.bad(
                "overlap",
                f"tensor {name!r} [{begin}, {stop}) overlaps the previous "
                f"tensor, which ends at {end}",
            )
        elif begin > end:
            check.bad("gap", f"{begin - end} unused bytes before tensor {name!r} at {begin}")
        end = max(end, stop)
    if end < data_size:
        check.bad(
            "trailing_data",
            f"{data_size - end} bytes after the last tensor are not described by the header",
            8,
        )


def _check_metadata(entry: object, check: _Checker) -> None:
    if not isinstance(entry, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
    ):
        check.bad("metadata", "__metadata__ must map strings to strings")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tensor(
    name: str, entry: object, data_size: int, check: _Checker
) -> tuple[int, int] | None:
    if not isinstance(entry, dict):
        check.bad("entry", f"tensor {name!r} is not described by a JSON object")
        return None
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        check.bad("dtype", f"tensor {name!r} has unknown dtype {dtype!r}")
        dtype = None
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        check.bad(
            "shape", f"tensor {name!r} shape {shape!r} is not a list of non-negative integers"
        )
        shape = None
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_count(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        check.bad(
            "offsets",
            f"tensor {name!r} data_offsets {offsets!r} are not [begin, end] with 0 <= begin <= end",
        )
        return None
    begin, end = int(offsets[0]), int(offsets[1])
    if end > data_size:
        check.bad(
            "out_of_bounds",
            f"tensor {name!r} ends at {end}, past the {data_size}-byte data section",
        )
    if dtype is not None and shape is not None:
        bits = math.prod(shape) * DTYPE_BITS[dtype]
        if bits % 8 or bits // 8 != end - begin:
            check.bad(
                "size",
                f"tensor {name!r}: shape {shape} of {dtype} needs {bits / 8:g} "
                f"bytes but its offsets span {end - begin}",
            )
    return begin, end
