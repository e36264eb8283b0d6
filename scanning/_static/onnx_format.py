"""ONNX models: external-data paths, read from the protobuf wire format.

A tensor stored outside the model names a file by a relative ``location``. One
that is absolute or climbs out of the model directory (``../../etc/passwd``)
makes the loader read, and the model leak, files it has no business with. The
protobuf is walked field by field; tensor payloads are skipped, never read.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import BinaryIO

from scanning._static.blobs import Blob
from scanning._static.context import LimitExceeded, ScanContext, Where
from scanning._static.detect import WireError, varint
from scanning.report import Severity

__all__ = ["scan_onnx"]

# Field numbers of the messages we descend into: field -> message kind.
_MODEL = {7: "graph", 20: "training", 25: "function"}
_TRAINING = {1: "graph", 2: "graph"}
_FUNCTION = {7: "node"}
_GRAPH = {1: "node", 5: "tensor", 15: "sparse"}
_NODE = {5: "attribute"}
_ATTRIBUTE = {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"}
_SPARSE = {1: "tensor", 2: "tensor"}
_SCHEMA = {
    "model": _MODEL,
    "training": _TRAINING,
    "function": _FUNCTION,
    "graph": _GRAPH,
    "node": _NODE,
    "attribute": _ATTRIBUTE,
    "sparse": _SPARSE,
}
_MAX_DEPTH = 64
_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]")


class _Walker:
    def __init__(self, stream: BinaryIO, ctx: ScanContext) -> None:
        self.stream = stream
        self.ctx = ctx
        self.locations: list[tuple[str, str, int]] = []

    def fields(self, start: int, end: int) -> list[tuple[int, int, int, int]]:
        """(field, wire type, value or payload offset, payload length) of one message."""
        out: list[tuple[int, int, int, int]] = []
        pos = start
        while pos < end:
            self.stream.seek(pos)
            buf = self.stream.read(min(20, end - pos))
            key, used = varint(buf, 0)
            field, wire = key >> 3, key & 7
            if wire == 0:
                value, used = varint(buf, used)
                out.append((field, 0, value, 0))
                pos += used
            elif wire == 2:
                length, used = varint(buf, used)
                if pos + used + length > end:
                    raise WireError(f"field {field} runs past the end of its message")
                out.append((field, 2, pos + used, length))
                pos += used + length
            elif wire in (1, 5):
                pos += used + (8 if wire == 1 else 4)
            else:
                raise WireError(f"unsupported wire type {wire}")
        if len(out) > 10_000_000:
            raise LimitExceeded("more than 10 million protobuf fields")
        return out

    def walk(self, kind: str, start: int, end: int, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise LimitExceeded(f"graphs nested more than {_MAX_DEPTH} deep")
        self.ctx.check_time()
        if kind == "tensor":
            self.tensor(start, end)
            return
        children = _SCHEMA[kind]
        for field, wire, offset, length in self.fields(start, end):
            child = children.get(field)
            if wire == 2 and child is not None:
                self.walk(child, offset, offset + length, depth + 1)

    def tensor(self, start: int, end: int) -> None:
        name = ""
        for field, wire, offset, length in self.fields(start, end):
            if wire != 2 or field not in (8, 13) or length > 1 << 20:
                continue
            if field == 8:
                self.stream.seek(offset)
                name = self.stream.read(length).decode("utf-8", "replace")
                continue
            key = value = ""
            for f2, w2, o2, l2 in self.fields(offset, offset + length):
                if w2 == 2 and f2 in (1, 2) and l2 <= 1 << 16:
                    self.stream.seek(o2)
                    text = self.stream.read(l2).decode("utf-8", "replace")
                    key, value = (text, value) if f2 == 1 else (key, text)
            if key == "location":
                self.locations.append((name, value, offset))


def scan_onnx(blob: Blob, ctx: ScanContext, where: Where, directory: Path | None) -> str:
    """Walk the model; report external-data locations outside the model directory."""
    stream = blob.seekable(ctx)
    stream.seek(0, 2)
    size = stream.tell()
    walker = _Walker(stream, ctx)
    try:
        walker.walk("model", 0, size, 0)
    except WireError as exc:
        ctx.report(
            where,
            "onnx.invalid",
            f"not a valid ONNX protobuf: {exc}",
            Severity.SUSPICIOUS,
            "the model cannot be checked and may not load as the scanner reads it",
        )
    for name, location, offset in walker.locations:
        _check_location(name, location, offset, ctx, where, directory)
    return "onnx"


def _check_location(
    name: str, location: str, offset: int, ctx: ScanContext, where: Where, directory: Path | None
) -> None:
    norm = posixpath.normpath(location.replace("\\", "/"))
    if location.startswith(("/", "\\")) or _WINDOWS_ABS.match(location):
        problem = "is an absolute path"
    elif norm == ".." or norm.startswith("../"):
        problem = "climbs out of the model directory"
    elif (
        directory is not None
        and (directory / norm).exists()
        and not ((directory / norm).resolve().is_relative_to(directory.resolve()))
    ):
        problem = "is a link that leads out of the model directory"
    else:
        if directory is not None and not (directory / norm).exists():
            ctx.report(
                where,
                "onnx.external_data_missing",
                f"tensor {name!r}: {location!r} does not exist",
                Severity.INFO,
                "the model will not load without this external data file",
                offset=offset,
            )
        return
    ctx.report(
        where,
        "onnx.external_data_path",
        f"tensor {name!r}: location {location!r} {problem}",
        Severity.SUSPICIOUS,
        "loading the model reads this file into a tensor: a way to read (and leak) "
        "files outside the model",
        offset=offset,
    )
