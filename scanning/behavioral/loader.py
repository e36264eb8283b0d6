"""Load a model for a behavioral scan: ``torch.export`` archives and safetensors weights.

Two forms are behaviorally scannable, and nothing else is ever loaded:

- a ``torch.export`` archive (``.pt2``, :func:`torch.export.save`) whose one input
  has a dynamic batch dimension, loaded with :func:`torch.export.load` and run as
  its ``.module()``;
- safetensors weights (``*.safetensors``) beside a ``config.json`` that names an
  architecture of :mod:`scanning.architectures`, rebuilt with
  :func:`~scanning.architectures.build_model` and filled with a strict
  ``load_state_dict``.

:func:`model_format` tells which (cheaply, without torch); :func:`load_model`
loads. Loading is only ever done inside the sandbox worker
(:mod:`scanning.behavioral.worker`), on a copy of files the static scan passed as
clean (:mod:`scanning.behavioral.api` enforces that): never call it directly on
untrusted files. torch is imported by the functions that need it.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "SUPPORTED_FORMATS",
    "LoadedModel",
    "ModelFormat",
    "ModelLoadError",
    "NotScannable",
    "load_model",
    "model_format",
]

CONFIG_FILE = "config.json"
SUPPORTED_FORMATS = (
    "a torch.export archive (.pt2) whose input has a dynamic batch dimension, "
    "or safetensors weights (*.safetensors) with a config.json naming an architecture "
    "mbom knows ({architectures})"
)


class NotScannable(ValueError):
    """The model is not in a form a behavioral scan can load."""


class ModelLoadError(ValueError):
    """The model has a scannable form but could not be loaded (broken, mismatched)."""


class ModelFormat(StrEnum):
    """How a behaviorally scannable model is stored."""

    EXPORT = "torch.export"
    SAFETENSORS = "safetensors"


@dataclass(frozen=True)
class ModelFiles:
    """Where a scannable model's files are: the archive, or the weights and their config."""

    format: ModelFormat
    files: tuple[Path, ...]
    config: Path | None = None


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for the detectors, and how it was stored."""

    module: nn.Module
    format: ModelFormat


def model_format(path: Path) -> ModelFormat:
    """The form of the model at ``path`` (file or directory), without loading it.

    Raises :class:`NotScannable` naming what is supported when it is neither form.
    """
    return _locate(Path(path)).format


def load_model(path: Path, *, input_shape: tuple[int, ...], min_batch: int = 1) -> LoadedModel:
    """Load the model at ``path`` for a scan whose inputs have shape ``input_shape``.

    Only call this in the sandbox worker, on files the static scan passed.
    ``min_batch``: an exported program must accept batches at least this large.
    Raises :class:`NotScannable` for an unsupported form or a ``.pt2`` without a
    dynamic batch dimension, :class:`ModelLoadError` for broken or mismatched files.
    """
    located = _locate(Path(path))
    if located.format is ModelFormat.EXPORT:
        module = _load_export(located.files[0], input_shape=input_shape, min_batch=min_batch)
    else:
        assert located.config is not None
        module = _load_safetensors(located.files, located.config, input_shape=input_shape)
    return LoadedModel(module=module, format=located.format)


def _unsupported(path: Path, why: str) -> NotScannable:
    from scanning.architectures import ARCHITECTURES

    supported = SUPPORTED_FORMATS.format(architectures=", ".join(sorted(ARCHITECTURES)))
    return NotScannable(f"{path} is not behaviorally scannable: {why}; supported: {supported}")


def _locate(path: Path) -> ModelFiles:
    if path.is_file():
        if _is_export_archive(path):
            return ModelFiles(ModelFormat.EXPORT, (path,))
        if path.suffix == ".safetensors":
            return _with_config(path.parent, (path,), path)
        raise _unsupported(path, "the file is neither a .pt2 archive nor safetensors weights")
    if not path.is_dir():
        raise _unsupported(path, "no such file or directory")
    archives = sorted(p for p in path.iterdir() if p.is_file() and _is_export_archive(p))
    weights = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".safetensors")
    if archives and weights:
        raise _unsupported(path, "the directory holds both a .pt2 archive and safetensors weights")
    if len(archives) > 1:
        raise _unsupported(path, f"the directory holds {len(archives)} .pt2 archives, not one")
    if archives:
        return ModelFiles(ModelFormat.EXPORT, (archives[0],))
    if weights:
        return _with_config(path, tuple(weights), path)
    raise _unsupported(path, "the directory holds no .pt2 archive and no .safetensors weights")


def _with_config(folder: Path, weights: tuple[Path, ...], shown: Path) -> ModelFiles:
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise _unsupported(
            shown, f"safetensors weights need a {CONFIG_FILE} naming the architecture"
        )
    return ModelFiles(ModelFormat.SAFETENSORS, weights, config)


def _is_export_archive(path: Path) -> bool:
    """A ``.pt2`` zip laid out by :func:`torch.export.save` (it has an ``archive_format``)."""
    if path.suffix != ".pt2" or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("archive_format") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _load_export(path: Path, *, input_shape: tuple[int, ...], min_batch: int) -> nn.Module:
    import torch

    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch raises many types for a broken archive
        raise ModelLoadError(
            f"{path} could not be loaded as a torch.export archive: {exc}"
        ) from exc
    _check_batch_input(program, path, input_shape=input_shape, min_batch=min_batch)
    module: nn.Module = program.module()
    return module


def _check_batch_input(
    program: torch.export.ExportedProgram,
    path: Path,
    *,
    input_shape: tuple[int, ...],
    min_batch: int,
) -> None:
    """Refuse a program that does not take one ``(batch, *input_shape)`` tensor, batch dynamic."""
    import torch

    names = program.graph_signature.user_inputs
    if len(names) != 1:
        raise NotScannable(
            f"{path} takes {len(names)} inputs: a behavioral scan needs a classifier "
            "taking one batch tensor"
        )
    shape = _placeholder_shape(program, str(names[0]))
    if shape is None:
        raise NotScannable(f"{path}: its input is not a tensor of known shape")
    batch, *rest = shape
    if tuple(int(d) if isinstance(d, int) else -1 for d in rest) != input_shape:
        raise ModelLoadError(
            f"{path} takes inputs of shape {[str(d) for d in shape]}, but the scan profile's "
            f"input shape is {list(input_shape)}"
        )
    if not isinstance(batch, torch.SymInt):
        raise NotScannable(
            f"{path} was exported with a fixed batch size of {batch}: re-export it with a "
            "dynamic batch dimension, torch.export.export(model, (x,), "
            "dynamic_shapes=({0: torch.export.Dim('batch')},))"
        )
    bounds = program.range_constraints.get(batch.node.expr)
    if bounds is not None and bool(bounds.upper < min_batch):
        raise NotScannable(
            f"{path} accepts batches of at most {bounds.upper} inputs, the scan needs "
            f"{min_batch}: re-export it without a small max= on the batch Dim"
        )


def _placeholder_shape(program: torch.export.ExportedProgram, name: str) -> list[Any] | None:
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == name:
            value = node.meta.get("val")
            shape = getattr(value, "shape", None)
            return None if shape is None else list(shape)
    return None


def _load_safetensors(
    weights: tuple[Path, ...], config_path: Path, *, input_shape: tuple[int, ...]
) -> nn.Module:
    from scanning.architectures import build_model

    config = _read_config(config_path)
    try:
        model = build_model(config)
    except ValueError as exc:
        raise _unsupported(config_path.parent, str(exc)) from exc
    declared = tuple(config.get("input_shape", input_shape))
    if declared != input_shape:
        raise ModelLoadError(
            f"{config_path} says the input shape is {list(declared)}, but the scan profile's "
            f"is {list(input_shape)}"
        )
    state = _read_state(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"the weights do not fit the {config['architecture']} described in {config_path}: {exc}"
        ) from exc
    return model.eval()


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return config


def _read_state(weights: tuple[Path, ...]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for path in weights:
        try:
            part = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"{path} is not a readable safetensors file: {exc}") from exc
        repeated = sorted(set(part) & set(state))
        if repeated:
            raise ModelLoadError(f"{path} repeats tensors of another weights file: {repeated[:5]}")
        state.update(part)
    return state
