"""The static serialization scan: look inside model files without loading them.

Every file is classified by its content (magic bytes and structure, never the
extension alone) and parsed, never loaded: pickles are simulated opcode by
opcode (stacked, truncated and framed ones too) and their imports judged against
an allowlist of what real checkpoints need; PyTorch zip and legacy checkpoints,
NumPy ``.npy``/``.npz``, joblib, Keras ``.keras``/``.h5`` configs, ONNX
external-data paths, safetensors and GGUF headers are checked; archives and
compressed wrappers (zip, tar, 7z, gzip, bz2, xz) are opened within limits.

>>> report = scan_bytes(b"cos\\nsystem\\n(S'echo pwned'\\ntR.", name="model.bin")
>>> report.verdict.value, report.findings[0].detail
('malicious', 'os.system')

Importing this module is cheap: the standard library only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from scanning._static.blobs import Blob, BytesBlob, FileBlob
from scanning._static.context import ScanContext, TimeExceeded, Where
from scanning._static.dispatch import scan_part
from scanning._static.limits import ScanLimits
from scanning.report import FileResult, Finding, ScanReport, Severity

__all__ = ["ScanLimits", "scan_bytes", "scan_path"]


def scan_path(path: Path, *, limits: ScanLimits | None = None) -> ScanReport:
    """Scan a file, or every file under a directory, without loading anything.

    File paths in the report are relative to ``path`` (for a single file: its
    name), with ``/`` separators. Symbolic links to regular files are scanned
    through; devices, pipes and sockets are reported, never opened. Raises
    ``FileNotFoundError`` when ``path`` does not exist.
    """
    limits = limits or ScanLimits()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"nothing to scan at {path}: no such file or directory")
    if path.is_dir():
        reports = [
            _scan_file(file, file.relative_to(path).as_posix(), limits)
            for file in _files_under(path)
        ]
        return ScanReport.merge(reports)
    return _scan_file(path, path.name, limits)


def scan_bytes(data: bytes, *, name: str) -> ScanReport:
    """Scan bytes held in memory as if they were a file called ``name``.

    Meant for tests and fuzzing; always returns a report, never raises.
    """
    return _scan_blob(BytesBlob(data), name, ScanLimits(), directory=None)


def _files_under(root: Path) -> list[Path]:
    files: list[Path] = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        files.extend(Path(folder) / name for name in sorted(names))
    return files


def _scan_file(path: Path, display: str, limits: ScanLimits) -> ScanReport:
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            return _unscanned(
                display, "special", 0, "not a regular file (device, pipe or socket): not opened"
            )
        blob = FileBlob(path)
    except OSError as exc:
        return _unscanned(display, "unreadable", 0, f"cannot read the file: {exc}")
    return _scan_blob(blob, display, limits, directory=path.parent)


def _unscanned(display: str, fmt: str, size: int, error: str) -> ScanReport:
    return ScanReport((), (FileResult(display, fmt, size, scanned=False, error=error),))


def _scan_blob(
    blob: Blob, display: str, limits: ScanLimits, *, directory: Path | None
) -> ScanReport:
    ctx = ScanContext(display, limits, directory=directory)
    size = blob.size or 0
    error: str | None = None
    fmt = "unknown"
    try:
        with ctx.cleanup:
            fmt = scan_part(blob, ctx, Where(hint=display))
    except TimeExceeded as exc:
        error = f"stopped: {exc.what}"
        ctx.report(
            Where(),
            "scan.limit",
            exc.what,
            Severity.ERROR,
            "the time budget ran out: the rest of the file was not scanned",
        )
    except Exception as exc:  # an unreadable file is never clean
        error = f"{type(exc).__name__}: {exc}"
    findings = list(ctx.findings)
    if ctx.dropped:
        findings.append(
            Finding(
                display,
                "scan.findings_capped",
                f"{ctx.dropped} more findings not listed",
                Severity.INFO,
                f"only {limits.max_findings_per_file} findings kept per file",
            )
        )
    result = FileResult(display, fmt, size, scanned=error is None, error=error)
    return ScanReport(tuple(findings), (result,))
