"""Hostile input: whatever the bytes, the scanner returns a report and never raises.

Internal failures would still be safe (an ``error`` finding, never "clean"), but
they are bugs: these properties also require that no ``scan.error`` appears.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanning.report import ScanReport, Verdict
from scanning.static import scan_bytes


class SystemCall:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


_PICKLES = [
    pickle.dumps({"w": [1.0, 2.0], "n": "x", "t": (1, None)}, protocol=p) for p in range(6)
] + [pickle.dumps(SystemCall(), protocol=p) for p in (0, 2, 4)]
_SAFETENSORS_HEADER = json.dumps(
    {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"k": "v"}}
).encode()
SEEDS = [
    *_PICKLES,
    _zip({"archive/data.pkl": _PICKLES[2], "archive/data/0": bytes(64)}),
    _zip({"archive/data.pkl": _PICKLES[7]}, zipfile.ZIP_STORED),
    len(_SAFETENSORS_HEADER).to_bytes(8, "little") + _SAFETENSORS_HEADER + bytes(8),
    b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    + b" " * 57
    + b"\n"
    + _PICKLES[7],
    b"GGUF"
    + struct.pack("<IQQ", 3, 0, 1)
    + struct.pack("<Q", 1)
    + b"k"
    + struct.pack("<I", 8)
    + struct.pack("<Q", 2)
    + b"hi",
    gzip.compress(_PICKLES[8]),
    json.dumps({"class_name": "Sequential", "config": {"layers": []}}).encode(),
]

_FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _check(report: ScanReport) -> None:
    assert isinstance(report.verdict, Verdict)
    assert len(report.files) == 1
    errors = [f for f in report.findings if f.kind == "scan.error"]
    assert not errors, errors
    report.to_json()


@_FUZZ
@given(st.binary(max_size=4096), st.sampled_from(["m.bin", "m.pkl", "m.safetensors", "m"]))
def test_random_bytes(data: bytes, name: str) -> None:
    _check(scan_bytes(data, name=name))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "set"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif action == "truncate":
            del data[at:]
        elif data:
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


@_FUZZ
@given(mutated(), st.sampled_from(["model.pt", "model.safetensors", "a.npy", "m.gguf", "x"]))
def test_mutated_real_files(data: bytes, name: str) -> None:
    _check(scan_bytes(data, name=name))


@_FUZZ
@given(st.dictionaries(st.text(max_size=12), st.binary(max_size=64), max_size=4))
def test_random_zip_members(members: dict[str, bytes]) -> None:
    _check(
        scan_bytes(_zip({f"m/{k}" if k else "m/x": v for k, v in members.items()}), name="m.zip")
    )


@_FUZZ
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_random_safetensors_headers(header: object) -> None:
    raw = json.dumps(header).encode()
    _check(scan_bytes(len(raw).to_bytes(8, "little") + raw + bytes(16), name="m.safetensors"))


@_FUZZ
@given(st.lists(st.sampled_from(list(range(256))), max_size=64))
def test_random_opcode_streams(ops: list[int]) -> None:
    _check(scan_bytes(b"\x80\x04" + bytes(ops), name="m.pkl"))
