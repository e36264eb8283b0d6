"""Containers: PyTorch zip and legacy files, NumPy, joblib, archives and compression."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scanning.report import Finding, ScanReport, Severity, Verdict
from scanning.static import ScanLimits, scan_bytes, scan_path

SYSTEM = f"{'nt' if os.name == 'nt' else 'posix'}.system"
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class SystemCall:
    """Pickles to ``os.system("echo pwned")``; only ever dumped, never loaded."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


EVIL = pickle.dumps(SystemCall(), protocol=2)  # the import is at offset 2


def only(report: ScanReport, kind: str) -> Finding:
    found = [f for f in report.findings if f.kind == kind]
    assert len(found) == 1, report.findings
    return found[0]


def make_zip(members: dict[str, bytes], *, method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def torch_like(pickle_bytes: bytes, *, member: str = "archive/data.pkl") -> dict[str, bytes]:
    return {
        member: pickle_bytes,
        "archive/byteorder": b"little",
        "archive/data/0": os.urandom(4096),
        "archive/version": b"3\n",
    }


# -- zip ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_torch_zip_with_malicious_data_pkl(tmp_path: Path, method: int) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(make_zip(torch_like(EVIL), method=method))
    report = scan_path(path)
    finding = only(report, "pickle.global")
    assert (finding.file, finding.member, finding.offset, finding.detail) == (
        "model.pt",
        "archive/data.pkl",
        2,
        SYSTEM,
    )
    assert report.files[0].format == "torch-zip"


def test_pickle_in_a_member_with_any_name() -> None:
    report = scan_bytes(
        make_zip(torch_like(b"\x80\x02N.", member="archive/data.pkl") | {"archive/data/7": EVIL}),
        name="m.pt",
    )
    assert only(report, "pickle.global").member == "archive/data/7"


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _central_entry(data: bytes) -> int:
    return data.index(b"PK\x01\x02")


def test_bad_crc_is_reported_and_the_member_still_scanned() -> None:
    data = make_zip({"archive/data.pkl": EVIL})
    data = _patch(data, 14, b"\0\0\0\0")  # local header CRC
    data = _patch(data, _central_entry(data) + 16, b"\0\0\0\0")  # directory CRC
    report = scan_bytes(data, name="model.pt")
    assert only(report, "zip.bad_crc").member == "archive/data.pkl"
    assert only(report, "pickle.global").detail == SYSTEM


def test_bad_crc_on_benign_member_is_suspicious() -> None:
    data = make_zip({"archive/data.pkl": pickle.dumps({"a": 1}, protocol=2)})
    data = _patch(data, _central_entry(data) + 16, b"\x01\x02\x03\x04")
    report = scan_bytes(data, name="model.pt")
    assert report.verdict is Verdict.SUSPICIOUS
    assert only(report, "zip.bad_crc").severity is Severity.SUSPICIOUS


def test_unusual_flag_bits_and_name_mismatch() -> None:
    data = make_zip({"archive/data.pkl": EVIL})
    data = _patch(data, _central_entry(data) + 8, b"\x10\x00")  # reserved flag bit 4
    data = _patch(data, 30, b"ARCHIVE")  # local header name differs
    report = scan_bytes(data, name="model.pt")
    assert only(report, "zip.flags").severity is Severity.INFO
    assert only(report, "zip.name_mismatch").offset == 0
    assert only(report, "pickle.global").member == "archive/data.pkl"


def test_encrypted_member_cannot_be_called_clean() -> None:
    data = make_zip({"archive/data.pkl": b"\x80\x02N."})
    data = _patch(data, _central_entry(data) + 8, b"\x01\x00")
    report = scan_bytes(data, name="model.pt")
    assert only(report, "zip.encrypted").severity is Severity.SUSPICIOUS
    assert report.verdict is Verdict.SUSPICIOUS


def test_unsupported_compression_method() -> None:
    data = make_zip({"archive/data.pkl": b"\x80\x02N."})
    data = _patch(data, _central_entry(data) + 10, b"\x63\x00")  # method 99 (AES)
    report = scan_bytes(data, name="model.pt")
    assert only(report, "zip.unsupported_compression").detail == "compression method 99"


def test_nested_zip_and_tar_in_zip() -> None:
    inner_zip = make_zip(torch_like(EVIL))
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w") as archive:
        info = tarfile.TarInfo("payload.pkl")
        info.size = len(EVIL)
        archive.addfile(info, io.BytesIO(EVIL))
    outer = make_zip(
        {"inner.zip": inner_zip, "bundle.tar": tar_buffer.getvalue()}, method=zipfile.ZIP_DEFLATED
    )
    report = scan_bytes(outer, name="outer.zip")
    members = sorted(f.member or "" for f in report.findings if f.kind == "pickle.global")
    assert members == ["bundle.tar!payload.pkl", "inner.zip!archive/data.pkl"]


def test_nesting_beyond_the_limit_is_an_error(tmp_path: Path) -> None:
    data = EVIL
    for level in range(4):
        data = make_zip({f"level{level}.bin": data})
    (tmp_path / "deep.zip").write_bytes(data)
    report = scan_path(tmp_path / "deep.zip", limits=ScanLimits(max_depth=2))
    assert only(report, "archive.depth").severity is Severity.ERROR
    assert report.verdict is Verdict.ERROR


def test_zip_slip_and_duplicate_names() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../evil.pkl", b"\x80\x02N.")
        archive.writestr("a.pkl", b"\x80\x02N.")
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("a.pkl", EVIL)
    report = scan_bytes(buffer.getvalue(), name="m.zip")
    assert "'../../evil.pkl' climbs out" in only(report, "zip.path_traversal").detail
    assert only(report, "zip.duplicate_name").detail == "member 'a.pkl' appears more than once"
    assert only(report, "pickle.global").member == "a.pkl"


def test_zip_appended_to_a_pickle_is_a_polyglot(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(pickle.dumps([1], protocol=2) + make_zip({"x/data.pkl": EVIL}))
    report = scan_path(path)
    assert only(report, "file.polyglot").severity is Severity.SUSPICIOUS
    assert only(report, "pickle.global").member == "x/data.pkl"


def test_zip_without_central_directory_cannot_be_called_clean() -> None:
    data = make_zip({"archive/data.pkl": EVIL})
    report = scan_bytes(data[: data.index(b"PK\x01\x02")], name="model.pt")
    assert only(report, "zip.invalid").severity is Severity.ERROR
    assert report.verdict is Verdict.ERROR


def test_too_many_members_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "m.zip").write_bytes(make_zip({f"f{i}": b"" for i in range(20)}))
    report = scan_path(tmp_path / "m.zip", limits=ScanLimits(max_members=10))
    assert only(report, "archive.limit").severity is Severity.ERROR


# -- legacy torch ---------------------------------------------------------------------


def test_legacy_torch_file_scans_every_pickle(tmp_path: Path) -> None:
    head = b"".join(
        pickle.dumps(x, protocol=2)
        for x in (TORCH_LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    keys = pickle.dumps(["0"], protocol=2)
    path = tmp_path / "model.pth"
    path.write_bytes(head + EVIL + keys + (16).to_bytes(8, "little") + os.urandom(64))
    report = scan_path(path)
    assert report.files[0].format == "torch-legacy"
    assert only(report, "pickle.global").offset == len(head) + 2
    assert {f.kind for f in report.findings} == {"pickle.global"}


def test_legacy_torch_payload_in_the_sys_info_pickle() -> None:
    data = (
        pickle.dumps(TORCH_LEGACY_MAGIC, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + EVIL
        + pickle.dumps({}, protocol=2)
        + pickle.dumps([], protocol=2)
    )
    assert scan_bytes(data, name="m.pt").verdict is Verdict.MALICIOUS


# -- NumPy -----------------------------------------------------------------------------


def test_npy_object_array_payload_is_analysed(tmp_path: Path) -> None:
    path = tmp_path / "arr.npy"
    np.save(path, np.array([SystemCall(), 1], dtype=object), allow_pickle=True)
    report = scan_path(path)
    finding = only(report, "pickle.global")
    assert finding.detail == SYSTEM
    assert finding.offset is not None
    assert finding.offset > 64
    assert report.files[0].format == "npy-object"


def test_npz_member_with_object_array(tmp_path: Path) -> None:
    path = tmp_path / "arrays.npz"
    np.savez(path, weights=np.zeros(3), evil=np.array([SystemCall()], dtype=object))
    assert only(scan_path(path), "pickle.global").member == "evil.npy"


def test_npy_with_broken_header() -> None:
    report = scan_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': __import", name="a.npy")
    assert only(report, "npy.header").severity is Severity.SUSPICIOUS


# -- joblib ------------------------------------------------------------------------------


def test_joblib_payload_after_inline_arrays(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "model.joblib"
    joblib.dump({"coef": np.arange(1000.0), "z": SystemCall()}, path)
    report = scan_path(path)
    assert report.files[0].format == "joblib"
    finding = only(report, "pickle.global")
    assert finding.offset is not None
    assert finding.offset > 8000


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_joblib_protocols_stay_in_step(tmp_path: Path, protocol: int) -> None:
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "model.joblib"
    joblib.dump({"a": np.arange(50.0), "b": np.ones(3, np.int8)}, path, protocol=protocol)
    assert scan_path(path).findings == ()
    joblib.dump({"a": np.arange(50.0), "z": SystemCall()}, path, protocol=protocol)
    assert only(scan_path(path), "pickle.global").detail == SYSTEM


def test_joblib_object_array_nested_pickle(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "model.joblib"
    joblib.dump([np.array([SystemCall()], dtype=object), np.ones(4)], path)
    assert only(scan_path(path), "pickle.global").detail == SYSTEM


@pytest.mark.parametrize(
    ("compress", "member"),
    [
        (("zlib", 3), "model.joblib#zlib"),
        (("gzip", 3), "model.joblib#gzip"),
        (("bz2", 3), "model.joblib#bz2"),
        (("xz", 3), "model.joblib#xz"),
        (("lzma", 3), "model.joblib#lzma"),
    ],
)
def test_compressed_joblib(tmp_path: Path, compress: tuple[str, int], member: str) -> None:
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "model.joblib"
    joblib.dump({"coef": np.arange(10.0), "z": SystemCall()}, path, compress=compress)
    assert only(scan_path(path), "pickle.global").member == member


def test_lz4_cannot_be_inspected() -> None:
    report = scan_bytes(b"\x04\x22\x4d\x18" + os.urandom(64), name="model.joblib")
    assert only(report, "compression.unsupported").severity is Severity.SUSPICIOUS


# -- compression and archives ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("compress", "name"),
    [
        (gzip.compress, "model.pkl.gz"),
        (bz2.compress, "model.pkl.bz2"),
        (lzma.compress, "model.pkl.xz"),
    ],
)
def test_compressed_wrappers(compress: object, name: str) -> None:
    assert callable(compress)
    report = scan_bytes(compress(EVIL), name=name)
    assert only(report, "pickle.global").member == "model.pkl"


def test_tar_gz_with_payload(tmp_path: Path) -> None:
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("checkpoint/data.pkl")
        info.size = len(EVIL)
        archive.addfile(info, io.BytesIO(EVIL))
    finding = only(scan_path(path), "pickle.global")
    assert finding.member == "model.tar!checkpoint/data.pkl"


def test_truncated_gzip_is_reported() -> None:
    data = gzip.compress(EVIL + pickle.dumps(list(range(2000)), protocol=2))[:-200]
    report = scan_bytes(data, name="m.pkl.gz")
    assert only(report, "compression.corrupt").severity is Severity.SUSPICIOUS
    assert only(report, "pickle.global").detail == SYSTEM


def test_decompression_budget_is_enforced(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(b"\0" * (8 << 20), protocol=4)))
    report = scan_path(path, limits=ScanLimits(max_decompressed_bytes=1 << 20))
    assert only(report, "scan.limit").severity is Severity.ERROR
    assert report.verdict is Verdict.ERROR


def test_7z_archive(tmp_path: Path) -> None:
    py7zr = pytest.importorskip("py7zr")
    path = tmp_path / "model.7z"
    with py7zr.SevenZipFile(path, "w") as archive:
        archive.writestr(EVIL, "weights/data.pkl")
    assert only(scan_path(path), "pickle.global").member == "weights/data.pkl"


def test_7z_without_py7zr_is_suspicious(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "py7zr", None)
    report = scan_bytes(b"7z\xbc\xaf\x27\x1c" + os.urandom(32), name="m.7z")
    assert only(report, "archive.uninspectable").severity is Severity.SUSPICIOUS


def test_gzip_zero_padding_and_concatenated_members() -> None:
    padded = gzip.compress(pickle.dumps([1], protocol=2)) + bytes(512)
    assert scan_bytes(padded, name="m.pkl.gz").findings == ()
    joined = gzip.compress(pickle.dumps([1], protocol=2)) + gzip.compress(EVIL)
    report = scan_bytes(joined, name="m.pkl.gz")
    assert only(report, "pickle.global").member == "m.pkl"
    assert only(report, "pickle.stacked").severity is Severity.INFO
