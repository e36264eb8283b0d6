"""Scan profiles: read, validate and write the reference ``.npz`` of a behavioral scan.

A scan profile (:class:`~scanning.behavioral.report.ScanProfile`) is what the
detectors need to know about a model's inputs: their shape, their value range,
the number of classes, and a few dozen clean reference inputs with labels. The
references arrive as an ``.npz`` with arrays ``x`` (``(N, *input_shape)``) and
``y`` (``(N,)`` labels), read here with ``allow_pickle=False`` only.

Shape, range and class count come from up to three places, merged by
:func:`profile_from_npz`: the caller's arguments, optional arrays ``input_shape``,
``value_range`` and ``num_classes`` inside the ``.npz`` itself (what
:func:`profile_to_npz` writes, so a saved profile is self-describing), and the
model's ``config.json`` (:func:`profile_hints_from_config`). Two places that
disagree are an error, never a silent choice.

Dtypes: ``x`` may be any floating type; float16 widens losslessly and float64 is
narrowed to float32, the precision every model here runs in. ``y`` may be any
integer type whose values fit int64. Integer images (``uint8`` 0..255) and float
labels are refused: converting them would hide a mistake rather than fix it.

Importing this module is cheap: NumPy and the standard library only.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanning.behavioral.report import ScanProfile

__all__ = [
    "MAX_REFERENCE_ARRAYS",
    "MAX_REFERENCE_BYTES",
    "MIN_REFERENCES",
    "ProfileHints",
    "profile_from_npz",
    "profile_hints_from_config",
    "profile_to_npz",
    "reference_digest",
]

#: Fewer clean references than this make the detectors' statistics noise.
MIN_REFERENCES = 20
#: The most a reference ``.npz`` may expand to once decompressed (a zip bomb guard).
MAX_REFERENCE_BYTES = 256 * 2**20
#: Most arrays a reference ``.npz`` may hold (``x``, ``y`` and the metadata arrays).
MAX_REFERENCE_ARRAYS = 16
_CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ProfileHints:
    """What one source says about a model's inputs; ``None`` where it says nothing.

    ``source`` names the place (``"arguments"``, ``"REF.npz"``, ``"config.json"``)
    for error messages.
    """

    source: str
    input_shape: tuple[int, ...] | None = None
    value_range: tuple[float, float] | None = None
    num_classes: int | None = None


def profile_from_npz(
    data: bytes,
    *,
    input_shape: Sequence[int] | None = None,
    value_range: Sequence[float] | None = None,
    num_classes: int | None = None,
    config: ProfileHints | None = None,
) -> ScanProfile:
    """Read and validate a reference ``.npz`` (bytes) into a :class:`ScanProfile`.

    The keyword arguments, the ``.npz``'s own metadata arrays and ``config``
    (see :func:`profile_hints_from_config`) are merged; when none gives the
    input shape it is taken from ``x``. Raises ``ValueError`` naming what is
    wrong: missing or pickled arrays, wrong dtypes, NaN or infinite values,
    values outside the range, labels outside ``[0, num_classes)``, fewer than
    :data:`MIN_REFERENCES` references, or a shape that does not match.
    """
    arrays = _read_arrays(data)
    given = ProfileHints(
        "arguments",
        _shape(input_shape, "arguments") if input_shape is not None else None,
        _range(value_range, "arguments") if value_range is not None else None,
        num_classes,
    )
    sources = [given, _hints_from_arrays(arrays), *([config] if config is not None else [])]
    x = _float_inputs(arrays["x"])
    y = _int_labels(arrays["y"])
    shape = _agree(sources, "input_shape") or tuple(int(d) for d in x.shape[1:])
    bounds = _required(_agree(sources, "value_range"), "value_range", "[0.0, 1.0]")
    classes = _required(_agree(sources, "num_classes"), "num_classes", "10")
    _check_references(x, y, shape=shape, bounds=bounds, classes=classes)
    return ScanProfile(input_shape=shape, value_range=bounds, num_classes=classes, x=x, y=y)


def profile_to_npz(profile: ScanProfile) -> bytes:
    """The profile as self-describing ``.npz`` bytes: ``x``, ``y`` and its metadata.

    :func:`profile_from_npz` reads it back to an equal profile.
    """
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        x=profile.x,
        y=profile.y,
        input_shape=np.asarray(profile.input_shape, dtype=np.int64),
        value_range=np.asarray(profile.value_range, dtype=np.float64),
        num_classes=np.int64(profile.num_classes),
    )
    return buffer.getvalue()


def reference_digest(data: bytes) -> str:
    """The ``sha256:<hex>`` digest of reference ``.npz`` bytes, as the registry stores it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def profile_hints_from_config(path: Path) -> ProfileHints | None:
    """What a model's ``config.json`` says about its inputs, or None when it has none.

    ``path`` is a model directory or a file inside one; the config is the
    ``config.json`` in that directory. Raises ``ValueError`` when the config
    exists but is not a JSON object or its fields are malformed.
    """
    folder = path if path.is_dir() else path.parent
    config_path = folder / _CONFIG_FILE
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config_path} is not readable JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} must hold a JSON object")
    return _hints_from_config(config, str(config_path))


def _hints_from_config(config: Mapping[str, Any], source: str) -> ProfileHints:
    shape, bounds, classes = (config.get(k) for k in ("input_shape", "value_range", "num_classes"))
    if classes is not None and (not isinstance(classes, int) or isinstance(classes, bool)):
        raise ValueError(f"{source}: num_classes must be an integer, got {classes!r}")
    return ProfileHints(
        source,
        None if shape is None else _shape(shape, source),
        None if bounds is None else _range(bounds, source),
        classes,
    )


def _read_arrays(data: bytes) -> dict[str, NDArray[Any]]:
    """Every array of the ``.npz``, refusing pickles and archives that expand too far.

    The archive's member count and each member's ``.npy`` header (dtype and
    shape) are checked before any array is loaded: NumPy allocates the size a
    header declares before it reads a byte of data.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_members(archive)
    except zipfile.BadZipFile as exc:
        raise ValueError("the reference file is not an .npz (a zip of .npy arrays)") from exc
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: np.asarray(npz[name]) for name in npz.files}
    except ValueError as exc:  # numpy's refusal to unpickle an object array
        raise ValueError(
            f"the reference .npz holds an array that is not plain numbers: {exc}"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"the reference .npz is unreadable: {exc}") from exc
    missing = sorted({"x", "y"} - set(arrays))
    if missing:
        raise ValueError(
            f"the reference .npz lacks array(s) {missing}: it needs x (inputs) and y (labels)"
        )
    return arrays


def _check_members(archive: zipfile.ZipFile) -> None:
    members = archive.infolist()
    if len(members) > MAX_REFERENCE_ARRAYS:
        raise ValueError(
            f"the reference .npz holds {len(members)} members, more than the "
            f"{MAX_REFERENCE_ARRAYS} allowed: it needs x, y and at most three metadata arrays"
        )
    expanded = sum(info.file_size for info in members)
    if expanded > MAX_REFERENCE_BYTES:
        raise ValueError(
            f"the reference .npz expands to {expanded} bytes, more than the "
            f"{MAX_REFERENCE_BYTES} allowed: a few hundred references are enough"
        )
    for info in members:
        declared = _declared_bytes(archive, info)
        if declared > MAX_REFERENCE_BYTES:
            raise ValueError(
                f"array {info.filename[:40]!r} of the reference .npz declares {declared} bytes, "
                f"more than the {MAX_REFERENCE_BYTES} allowed"
            )


def _declared_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The size the ``.npy`` header of one member declares (refusing non-arrays)."""
    name = info.filename[:40]
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f".npy format version {version} is not supported")
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        problem = str(exc)[:120]
        raise ValueError(
            f"member {name!r} of the reference .npz is not a .npy array: {problem}"
        ) from exc
    if dtype.hasobject:
        raise ValueError(f"the reference .npz holds an array that is not plain numbers: {name!r}")
    return math.prod(int(d) for d in shape) * dtype.itemsize


def _hints_from_arrays(arrays: Mapping[str, NDArray[Any]]) -> ProfileHints:
    shape, bounds, classes = (arrays.get(k) for k in ("input_shape", "value_range", "num_classes"))
    source = "the reference .npz"
    if classes is not None and (classes.shape != () or classes.dtype.kind not in "iu"):
        got = f"an array of shape {classes.shape} and dtype {classes.dtype}"
        raise ValueError(f"{source}: num_classes must be one integer, got {got}")
    return ProfileHints(
        source,
        None if shape is None else _shape(shape.tolist(), source),
        None if bounds is None else _range(bounds.tolist(), source),
        None if classes is None else int(classes),
    )


def _shape(value: Any, source: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value)
    ):
        raise ValueError(f"{source}: input_shape must be positive integers, got {value!r}")
    return tuple(value)


def _range(value: Any, source: str) -> tuple[float, float]:
    numbers = isinstance(value, list | tuple) and len(value) == 2
    if not numbers or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"{source}: value_range must be [low, high], got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"{source}: value_range must be finite with low < high, got {value!r}")
    return low, high


def _agree(sources: Sequence[ProfileHints], field: str) -> Any:
    """The value the sources give for ``field``, refusing two different answers."""
    found = [(s.source, getattr(s, field)) for s in sources if getattr(s, field) is not None]
    for source, value in found[1:]:
        first_source, first = found[0]
        if value != first:
            raise ValueError(
                f"{field} is {_show(first)} in {first_source} but {_show(value)} in {source}: "
                "make them agree"
            )
    return found[0][1] if found else None


def _show(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def _required(value: Any, field: str, example: str) -> Any:
    if value is None:
        raise ValueError(
            f"the scan profile needs {field}: store it in the reference .npz as an array "
            f"named {field}, or in the model's config.json (e.g. {field}: {example})"
        )
    return value


def _float_inputs(x: NDArray[Any]) -> NDArray[np.float32]:
    if x.dtype.kind != "f":
        raise ValueError(
            f"reference inputs x must be float32, got {x.dtype}: scale them to the model's "
            "value range as floats (e.g. uint8 pixels / 255)"
        )
    converted = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(converted)):
        raise ValueError("reference inputs x contain NaN or infinite values")
    return converted


def _int_labels(y: NDArray[Any]) -> NDArray[np.int64]:
    if y.dtype.kind not in "iu":
        raise ValueError(f"reference labels y must be int64 class indices, got {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"reference labels y must be one-dimensional, got shape {y.shape}")
    if y.dtype == np.uint64 and y.size and int(y.max()) > np.iinfo(np.int64).max:
        raise ValueError("reference labels y hold values too large for int64")
    return np.ascontiguousarray(y, dtype=np.int64)


def _check_references(
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    *,
    shape: tuple[int, ...],
    bounds: tuple[float, float],
    classes: int,
) -> None:
    if x.shape[1:] != shape:
        raise ValueError(
            f"reference inputs x have shape {list(x.shape)}, expected [N, *{list(shape)}]"
        )
    if len(x) != len(y):
        raise ValueError(f"x holds {len(x)} inputs but y holds {len(y)} labels: give one per input")
    if len(x) < MIN_REFERENCES:
        raise ValueError(
            f"only {len(x)} reference inputs: give at least {MIN_REFERENCES} clean, labelled ones"
        )
    if classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {classes}")
    low, high = bounds
    if float(x.min()) < low or float(x.max()) > high:
        raise ValueError(
            f"reference inputs x range over [{float(x.min()):g}, {float(x.max()):g}], "
            f"outside the value range [{low:g}, {high:g}]"
        )
    if int(y.min()) < 0 or int(y.max()) >= classes:
        raise ValueError(
            f"reference labels y range over [{int(y.min())}, {int(y.max())}], "
            f"outside [0, {classes}) for {classes} classes"
        )
    if len(np.unique(y)) < 2:
        raise ValueError("reference labels y are all one class: give references of several classes")
