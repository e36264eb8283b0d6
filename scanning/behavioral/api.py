"""Behavioral scans and trigger replays of model files, safely: the public entry points.

Both :func:`scan_model` and :func:`replay_trigger` first copy the model into a
private working directory, run the static scan (:func:`scanning.static.scan_path`)
on that copy, and only when it is clean and in a behaviorally scannable form
(:mod:`scanning.behavioral.loader`) load the very bytes that were scanned, in the
sandboxed worker (:mod:`scanning.behavioral.sandbox`). Anything that stops a
result — a static finding, an unsupported format, a timeout, a memory kill, a
crash — comes back as ``scan_error`` with the reason, never as clean.

>>> from scanning.behavioral.api import Limits
>>> Limits(timeout_s=60).memory_mb
4096

Importing this module is cheap (NumPy, no torch): torch is imported by the worker.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import struct
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scanning.behavioral.loader import NotScannable, model_format
from scanning.behavioral.profile import profile_from_npz, profile_hints_from_config
from scanning.behavioral.report import (
    BehavioralReport,
    BehaviorVerdict,
    RelativeStatistics,
    ReplayOutcome,
    ReplayReport,
    ScanProfile,
    TriggerPattern,
)
from scanning.behavioral.sandbox import (
    DEFAULT_LIMITS,
    Limits,
    Progress,
    SandboxFailure,
    replay_in_sandbox,
    scan_in_sandbox,
)
from scanning.report import ScanReport, Verdict
from scanning.static import scan_path

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_REPLAY_THRESHOLD",
    "Limits",
    "read_profile",
    "replay_trigger",
    "save_trigger",
    "scan_model",
]

#: Default share of triggered references that must collapse to one class to confirm.
DEFAULT_REPLAY_THRESHOLD = 0.5
_MODEL_DIR = "model"
_PNG_MIN_HEIGHT = 128


class _Refused(Exception):
    """The model may not be loaded (static findings, unsupported form, unreadable files)."""


def scan_model(
    path: Path,
    profile: ScanProfile,
    *,
    baseline: Sequence[RelativeStatistics] = (),
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> BehavioralReport:
    """Scan the model at ``path`` (file or directory) for backdoors, in the sandbox.

    ``baseline``: the detector statistics of clean relatives, for calibration.
    Returns the detectors' report, or ``verdict=scan_error`` with ``error`` saying
    why no verdict could be reached (the model was not loaded when the static scan
    was not clean or its form is not supported).
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mbom-behavioral-") as tmp:
        workdir = Path(tmp)
        try:
            model = _admit(Path(path), workdir)
            report = scan_in_sandbox(
                model,
                profile,
                workdir=workdir,
                baseline=baseline,
                limits=limits,
                progress=progress,
            )
        except (_Refused, SandboxFailure) as exc:
            return BehavioralReport(
                verdict=BehaviorVerdict.SCAN_ERROR,
                error=str(exc),
                elapsed_s=time.monotonic() - started,
            )
    if report.elapsed_s is None:
        report = dataclasses.replace(report, elapsed_s=time.monotonic() - started)
    return report


def replay_trigger(
    path: Path,
    profile: ScanProfile,
    trigger: TriggerPattern,
    *,
    threshold: float = DEFAULT_REPLAY_THRESHOLD,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
) -> ReplayReport:
    """Stamp ``trigger`` on ``profile``'s references and run them through the model at ``path``.

    ``confirmed`` on the result when the share sent to one class reaches
    ``threshold``. Same admission as :func:`scan_model`; failures come back as
    ``outcome=scan_error`` with ``error``.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the replay threshold must be in (0, 1], got {threshold}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mbom-replay-") as tmp:
        workdir = Path(tmp)
        try:
            model = _admit(Path(path), workdir)
            measure = replay_in_sandbox(
                model, profile, trigger, workdir=workdir, limits=limits, progress=progress
            )
        except (_Refused, SandboxFailure) as exc:
            return ReplayReport(
                outcome=ReplayOutcome.SCAN_ERROR,
                threshold=threshold,
                error=str(exc),
                elapsed_s=time.monotonic() - started,
            )
    return ReplayReport(
        outcome=ReplayOutcome.MEASURED,
        threshold=threshold,
        measure=measure,
        elapsed_s=time.monotonic() - started,
    )


def read_profile(
    reference: Path,
    *,
    model: Path | None = None,
    input_shape: Sequence[int] | None = None,
    value_range: Sequence[float] | None = None,
    num_classes: int | None = None,
) -> ScanProfile:
    """Read a reference ``.npz`` file into a validated :class:`ScanProfile`.

    Shape, range and classes come from the arguments, the ``.npz`` and, when
    ``model`` is given, its ``config.json`` (see
    :func:`scanning.behavioral.profile.profile_from_npz`). Raises ``ValueError``
    naming the problem, or ``OSError`` when the file cannot be read.
    """
    hints = profile_hints_from_config(Path(model)) if model is not None else None
    return profile_from_npz(
        Path(reference).read_bytes(),
        input_shape=input_shape,
        value_range=value_range,
        num_classes=num_classes,
        config=hints,
    )


def save_trigger(trigger: TriggerPattern, directory: Path) -> tuple[Path, Path]:
    """Write ``trigger.npz`` (mask, pattern, target class) and ``trigger.png`` into ``directory``.

    The PNG shows the mask, the pattern and the stamp (mask times pattern) side
    by side, scaled up so that an 8x8 trigger is visible. ``directory`` is
    created if needed. Returns ``(npz_path, png_path)``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    npz_path = directory / "trigger.npz"
    png_path = directory / "trigger.png"
    npz_path.write_bytes(trigger.to_npz())
    png_path.write_bytes(_png(_trigger_picture(trigger)))
    return npz_path, png_path


def _admit(path: Path, workdir: Path) -> Path:
    """Copy the model into ``workdir``, scan the copy statically; the copy to load."""
    if not path.exists():
        raise _Refused(f"{path} does not exist")
    copy = _copy_model(path, workdir / _MODEL_DIR)
    report = scan_path(copy)
    if report.verdict is not Verdict.CLEAN:
        raise _Refused(_static_refusal(path, report))
    try:
        model_format(copy)
    except NotScannable as exc:
        raise _Refused(str(exc).replace(str(copy), str(path))) from exc
    return copy


def _static_refusal(path: Path, report: ScanReport) -> str:
    worst = sorted(report.findings, key=lambda f: -f.severity.rank)[:1]
    what = f": {worst[0].kind} {worst[0].detail} in {worst[0].file}" if worst else ""
    unscanned = [f"{f.path} ({f.error})" for f in report.files if not f.scanned][:1]
    if not what and unscanned:
        what = f": could not scan {unscanned[0]}"
    return (
        f"not loaded: the static scan of {path} is {report.verdict.value}{what} "
        "(run mbom scan without --reference for every finding)"
    )


def _copy_model(path: Path, destination: Path) -> Path:
    """Copy regular files only (following links), so that what is scanned is what is loaded."""
    if path.is_dir():
        for folder, _dirs, names in os.walk(path):
            for name in names:
                source = Path(folder) / name
                _copy_file(source, destination / source.relative_to(path))
        return destination
    _copy_file(path, destination / path.name)
    sibling_config = path.parent / "config.json"
    if path.suffix == ".safetensors" and sibling_config.is_file():
        _copy_file(sibling_config, destination / "config.json")
    return destination / path.name


def _copy_file(source: Path, target: Path) -> None:
    try:
        mode = source.stat().st_mode
    except OSError as exc:
        raise _Refused(f"cannot read {source}: {exc}") from exc
    if not stat.S_ISREG(mode):
        raise _Refused(f"{source} is not a regular file (a device, pipe or socket): not loaded")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(source, target)
    except OSError as exc:
        raise _Refused(f"cannot copy {source} for scanning: {exc}") from exc


def _trigger_picture(trigger: TriggerPattern) -> NDArray[np.uint8]:
    """Mask | pattern | stamp as one ``(H, W, 3)`` uint8 image, upscaled, grey separators."""
    pattern = np.asarray(trigger.pattern, dtype=np.float32)
    mask = np.broadcast_to(np.asarray(trigger.mask, dtype=np.float32), pattern.shape)
    low, high = float(pattern.min()), float(pattern.max())
    span = high - low if high > low else 1.0
    panels = [mask, (pattern - low) / span, (mask * pattern - low) / span]
    images = [_as_rgb(panel) for panel in panels]
    height = images[0].shape[0]
    scale = max(1, -(-_PNG_MIN_HEIGHT // height))
    gap = np.full((height, 1, 3), 0.5, dtype=np.float32)
    picture = np.concatenate([images[0], gap, images[1], gap, images[2]], axis=1)
    picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    return np.asarray(np.clip(picture, 0.0, 1.0) * 255 + 0.5, dtype=np.uint8)


def _as_rgb(panel: NDArray[np.float32]) -> NDArray[np.float32]:
    """``(C, H, W)`` or ``(H, W)`` to ``(H, W, 3)``: RGB for 3 channels, grey otherwise."""
    if panel.ndim == 2:
        panel = panel[np.newaxis]
    while panel.ndim > 3:  # extra leading axes: show the first entry
        panel = panel[0]
    if panel.shape[0] == 3:
        return np.moveaxis(panel, 0, -1)
    grey = panel.mean(axis=0)
    return np.repeat(grey[..., np.newaxis], 3, axis=-1)


def _png(image: NDArray[np.uint8]) -> bytes:
    """An 8-bit RGB PNG of ``image`` ``(H, W, 3)``, written with zlib (no imaging library)."""
    height, width, _ = image.shape
    rows = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )
