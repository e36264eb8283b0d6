"""GGUF (llama.cpp) header sanity: magic, version, counts, key/values, tensor infos.

The metadata is walked without keeping it, except the chat templates, which are
Jinja code run when the model is served and are checked for sandbox escapes.
"""

from __future__ import annotations

import struct

from scanning._static.blobs import Blob
from scanning._static.context import ScanContext, Where
from scanning._static.pickle_vm import EndOfData, Reader
from scanning._static.templates import check_chat_template
from scanning.report import Severity

__all__ = ["scan_gguf"]

_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 4
_MAX_KEY = 65_535
_MAX_TEMPLATE = 1 << 20
_WHY = (
    "a GGUF header that contradicts the file is refused by llama.cpp but has been used "
    "to reach memory-safety bugs in GGUF parsers"
)


class _Bad(Exception):
    def __init__(self, detail: str, offset: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.offset = offset


class _Walker:
    def __init__(self, reader: Reader, size: int, version: int) -> None:
        self.r = reader
        self.size = size
        self.len_bytes = 4 if version == 1 else 8

    def count(self, what: str, unit: int) -> int:
        at = self.r.pos
        n = int.from_bytes(self.r.read(self.len_bytes), "little")
        if n * unit > self.size - self.r.pos:
            raise _Bad(f"{what} of {n} entries cannot fit in the file", at)
        return n

    def string(self, what: str, keep: int = 0) -> str | None:
        at = self.r.pos
        n = self.count(f"{what} length", 1)
        if n <= keep:
            try:
                return self.r.read(n).decode("utf-8")
            except UnicodeDecodeError:
                raise _Bad(f"{what} is not valid UTF-8", at) from None
        self.r.skip(n)
        return None

    def value(self, vtype: int, depth: int = 0) -> None:
        if vtype in _SCALAR_SIZES:
            self.r.skip(_SCALAR_SIZES[vtype])
        elif vtype == _STRING:
            self.string("string value")
        elif vtype == _ARRAY and depth < 2:
            at = self.r.pos
            item = int.from_bytes(self.r.read(4), "little")
            n = self.count("array", _SCALAR_SIZES.get(item, 8))
            if item in _SCALAR_SIZES:
                self.r.skip(n * _SCALAR_SIZES[item])
                return
            if item not in (_STRING, _ARRAY):
                raise _Bad(f"array of unknown value type {item}", at)
            for _ in range(n):
                self.value(item, depth + 1)
        else:
            raise _Bad(f"unknown value type {vtype}", self.r.pos - 4)


def scan_gguf(blob: Blob, ctx: ScanContext, where: Where) -> str:
    """Walk the header; report what contradicts the file or the format."""
    with blob.open() as stream:
        reader = Reader(stream, size=blob.size)
        try:
            _walk(reader, blob.size, ctx, where)
        except _Bad as bad:
            ctx.report(
                where, "gguf.header", bad.detail, Severity.SUSPICIOUS, _WHY, offset=bad.offset
            )
        except EndOfData:
            ctx.report(
                where,
                "gguf.truncated",
                "the file ends inside the GGUF header",
                Severity.SUSPICIOUS,
                _WHY,
                offset=reader.pos,
            )
    return "gguf"


def _walk(reader: Reader, size: int | None, ctx: ScanContext, where: Where) -> None:
    reader.skip(4)
    version = struct.unpack("<I", reader.read(4))[0]
    if version not in (1, 2, 3):
        raise _Bad(f"unknown GGUF version {version}", 4)
    walker = _Walker(reader, size if size is not None else 1 << 62, version)
    n_tensors = walker.count("tensor count", 8)
    n_kv = walker.count("key/value count", 12)
    alignment = 32
    for _ in range(n_kv):
        ctx.check_time()
        key_at = reader.pos
        key = walker.string("key", keep=_MAX_KEY)
        if key is None:
            raise _Bad("a key longer than 65535 bytes", key_at)
        vtype = struct.unpack("<I", reader.read(4))[0]
        if key.startswith("tokenizer.chat_template") and vtype == _STRING:
            at = reader.pos
            template = walker.string(key, keep=_MAX_TEMPLATE)
            if template is not None:
                check_chat_template(template, ctx, where, field=key, offset=at)
        elif key == "general.alignment" and vtype == 4:
            alignment = struct.unpack("<I", reader.read(4))[0]
        else:
            walker.value(vtype)
    _tensor_infos(walker, n_tensors, alignment, ctx)


def _tensor_infos(walker: _Walker, n_tensors: int, alignment: int, ctx: ScanContext) -> None:
    reader = walker.r
    if alignment == 0 or alignment & (alignment - 1):
        raise _Bad(f"general.alignment {alignment} is not a power of two", reader.pos)
    infos: list[tuple[str, int, int]] = []
    for _ in range(n_tensors):
        ctx.check_time()
        at = reader.pos
        name = walker.string("tensor name", keep=_MAX_KEY) or "<long name>"
        dims = struct.unpack("<I", reader.read(4))[0]
        if dims > _MAX_DIMS:
            raise _Bad(f"tensor {name!r} has {dims} dimensions (at most {_MAX_DIMS})", at)
        reader.skip(walker.len_bytes * dims)
        reader.skip(4)  # ggml type
        offset = int.from_bytes(reader.read(8), "little")
        infos.append((name, offset, at))
    data_start = -(-reader.pos // alignment) * alignment
    for name, offset, at in infos:
        if offset % alignment:
            raise _Bad(f"tensor {name!r} offset {offset} is not aligned to {alignment}", at)
        if data_start + offset > walker.size:
            raise _Bad(f"tensor {name!r} data at {offset} lies past the end of the file", at)
