"""Format detection from the first bytes of a blob: magic numbers and structure.

Kept free of heavy imports: the format modules are imported only when a blob of
their kind shows up, so ``import scanning.static`` stays cheap.
"""

from __future__ import annotations

__all__ = [
    "GGUF_MAGIC",
    "HDF5_MAGIC",
    "NPY_MAGIC",
    "WireError",
    "looks_like_onnx",
    "looks_like_safetensors",
    "varint",
]

NPY_MAGIC = b"\x93NUMPY"
GGUF_MAGIC = b"GGUF"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

MODEL_WIRE = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


class WireError(Exception):
    """Bytes that are not valid protobuf wire format."""


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a protobuf varint at ``pos``: (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("bad varint")
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7


def looks_like_safetensors(head: bytes, size: int | None) -> bool:
    """An 8-byte length that fits the file, followed by a JSON object."""
    if len(head) < 10:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and n >= 2 and (size is None or 8 + n <= size)


def looks_like_onnx(head: bytes, size: int | None) -> bool:
    """A ModelProto: known top-level fields with the right wire types, and a graph."""
    if head[:1] != b"\x08":
        return False
    pos = 0
    try:
        while pos < len(head):
            key, pos = varint(head, pos)
            field, wire = key >> 3, key & 7
            if MODEL_WIRE.get(field) != wire:
                return False
            if wire == 0:
                _, pos = varint(head, pos)
                continue
            length, pos = varint(head, pos)
            if field == 7:
                return size is None or pos + length <= size
            pos += length
    except WireError:
        return False
    return False
