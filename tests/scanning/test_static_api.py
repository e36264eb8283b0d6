"""The public API of the static scanner: names, limits, paths, failures."""

from __future__ import annotations

import doctest
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import scanning.static
from scanning._static import dispatch, policy
from scanning.report import ScanReport, Severity, Verdict
from scanning.static import ScanLimits, scan_bytes, scan_path


class SystemCall:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_public_names_are_pinned() -> None:
    assert sorted(scanning.static.__all__) == ["ScanLimits", "scan_bytes", "scan_path"]
    assert all(hasattr(scanning.static, name) for name in scanning.static.__all__)


@pytest.mark.parametrize("module", [scanning.static, policy, dispatch])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


def test_importing_the_scanner_stays_light() -> None:
    code = (
        "import sys, scanning.static; "
        "heavy = {'torch', 'numpy', 'safetensors', 'h5py', 'py7zr', 'onnx', 'registry'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_limits_are_frozen_and_validated() -> None:
    limits = ScanLimits()
    with pytest.raises(AttributeError):
        limits.max_depth = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="max_members must be at least 1"):
        ScanLimits(max_members=0)
    with pytest.raises(ValueError, match="time_budget must be positive"):
        ScanLimits(time_budget=0)
    with pytest.raises(ValueError, match="max_depth must be at least 0"):
        ScanLimits(max_depth=-1)


def test_missing_path_names_what_was_wrong(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to scan at .*nope"):
        scan_path(tmp_path / "nope")


def test_directory_paths_are_relative_to_the_root(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "evil.bin").write_bytes(pickle.dumps(SystemCall(), protocol=2))
    (tmp_path / "config.json").write_text("{}")
    report = scan_path(tmp_path)
    assert [f.path for f in report.files] == ["config.json", "sub/deeper/evil.bin"]
    assert {f.file for f in report.findings} == {"sub/deeper/evil.bin"}
    assert report.verdict is Verdict.MALICIOUS


def test_symlinked_file_is_scanned_through(tmp_path: Path) -> None:
    (tmp_path / "real.pkl").write_bytes(pickle.dumps(SystemCall(), protocol=2))
    (tmp_path / "link.pkl").symlink_to(tmp_path / "real.pkl")
    assert {f.file for f in scan_path(tmp_path).findings} == {"link.pkl", "real.pkl"}


def test_special_files_are_never_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    report = scan_path(tmp_path)
    assert report.files[0].scanned is False
    assert "not a regular file" in (report.files[0].error or "")
    assert report.verdict is Verdict.ERROR


def test_internal_error_is_never_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    from scanning._static import safetensors_format

    def broken(*_: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(safetensors_format, "scan_safetensors", broken)
    report = scan_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}", name="x.safetensors")
    finding = next(f for f in report.findings if f.kind == "scan.error")
    assert (finding.severity, finding.detail) == (Severity.ERROR, "RuntimeError: boom")
    assert report.verdict is Verdict.ERROR


def test_time_budget_stops_the_file(tmp_path: Path) -> None:
    (tmp_path / "slow.pkl").write_bytes(b"\x80\x02" + b"N0" * 200_000 + b"N.")
    report = scan_path(tmp_path / "slow.pkl", limits=ScanLimits(time_budget=1e-9))
    assert report.files[0].scanned is False
    assert report.verdict is Verdict.ERROR


def test_findings_are_capped_but_malicious_ones_kept(tmp_path: Path) -> None:
    unknown = b"".join(f"cpkg{i}\nName\n0".encode() for i in range(50))
    (tmp_path / "m.pkl").write_bytes(b"\x80\x02" + unknown + b"cos\nsystem\n.")
    report = scan_path(tmp_path / "m.pkl", limits=ScanLimits(max_findings_per_file=10))
    kinds = [f.kind for f in report.findings]
    assert kinds.count("pickle.unknown_global") == 10
    assert "pickle.global" in kinds
    assert kinds[-1] == "scan.findings_capped"
    assert report.verdict is Verdict.MALICIOUS


def test_report_json_round_trip() -> None:
    report = scan_bytes(pickle.dumps(SystemCall(), protocol=4), name="m.pkl")
    data = report.to_json()
    assert data["verdict"] == "malicious"
    assert ScanReport.from_json(data) == report


def test_large_files_are_not_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GiB of zeros that are never read
    report = scan_path(big)
    assert report.verdict is Verdict.CLEAN
    assert report.files[0].size == 3 << 30
