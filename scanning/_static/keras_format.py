"""Keras model configs (``.keras`` archives, ``.h5`` files, bare JSON) and JSON files.

Keras rebuilds a model from its JSON config: a ``Lambda`` layer carries
marshalled Python bytecode that runs when the model is built, and a ``module``
reference outside Keras is imported by name. Both are found anywhere in the
(arbitrarily nested) config. HDF5 files are not parsed with a native library:
the config is a JSON string attribute, found by scanning the bytes.
"""

from __future__ import annotations

import json
import re
from typing import BinaryIO

from scanning._static.blobs import Blob, read_bounded
from scanning._static.context import ScanContext, Where
from scanning._static.policy import ImportVerdict, classify_import
from scanning._static.templates import check_chat_template
from scanning.report import Severity

__all__ = ["analyse_keras_config", "scan_hdf5", "scan_json"]

_KERAS_MODULES = ("keras", "tf_keras", "tensorflow.keras", "keras_hub", "keras_nlp", "keras_cv")
_MAX_NODES = 5_000_000
_WHY_LAMBDA = (
    "a Lambda layer holds Python bytecode (marshal) that runs when the model is "
    "rebuilt: arbitrary code execution on load unless safe_mode blocks it"
)


def _is_keras_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in _KERAS_MODULES)


def _path_str(path: tuple[str, ...]) -> str:
    return "/".join(path) or "<root>"


def analyse_keras_config(
    config: object, ctx: ScanContext, where: Where, *, offset: int | None = None
) -> None:
    """Walk a Keras config and report Lambda layers and non-Keras module references."""
    stack: list[tuple[object, tuple[str, ...]]] = [(config, ())]
    nodes = 0
    while stack:
        node, path = stack.pop()
        nodes += 1
        if nodes > _MAX_NODES:
            ctx.report(
                where,
                "keras.limit",
                f"config has over {_MAX_NODES} nodes",
                Severity.ERROR,
                "the rest of the config was not inspected",
                offset=offset,
            )
            return
        if isinstance(node, dict):
            _check_object(node, path, ctx, where, offset)
            for key, value in node.items():
                stack.append((value, (*path, str(key))))
        elif isinstance(node, list):
            stack.extend((item, (*path, str(i))) for i, item in enumerate(node))


def _check_object(
    node: dict[str, object],
    path: tuple[str, ...],
    ctx: ScanContext,
    where: Where,
    offset: int | None,
) -> None:
    class_name = node.get("class_name")
    inner = node.get("config")
    layer = inner.get("name") if isinstance(inner, dict) else None
    label = f"{_path_str(path)}" + (f" (layer {layer!r})" if isinstance(layer, str) else "")
    if isinstance(class_name, str) and re.search(r"(^|[.>])(Lambda|__lambda__)$", class_name):
        ctx.report(
            where,
            "keras.lambda",
            f"{class_name} at {label}",
            Severity.MALICIOUS,
            _WHY_LAMBDA,
            offset=offset,
        )
    elif node.get("function_type") == "lambda":
        ctx.report(
            where,
            "keras.lambda",
            f"lambda function at {label}",
            Severity.MALICIOUS,
            _WHY_LAMBDA,
            offset=offset,
        )
    module = node.get("module")
    if isinstance(module, str) and not _is_keras_module(module):
        _check_module(module, node, label, ctx, where, offset)
    registered = node.get("registered_name")
    if (
        isinstance(registered, str)
        and ">" in registered
        and not (isinstance(module, str) and _is_keras_module(module))
        and not registered.startswith(("keras", "Keras"))
    ):
        ctx.report(
            where,
            "keras.custom_object",
            f"{registered} at {label}",
            Severity.SUSPICIOUS,
            "a custom registered object needs code from outside Keras to load",
            offset=offset,
        )


def _check_module(
    module: str,
    node: dict[str, object],
    label: str,
    ctx: ScanContext,
    where: Where,
    offset: int | None,
) -> None:
    class_name = node.get("class_name")
    name = node.get("config") if class_name == "function" else class_name
    judgement = classify_import(module, name if isinstance(name, str) else "<unknown>")
    if judgement.verdict is ImportVerdict.MALICIOUS:
        ctx.report(
            where,
            "keras.module",
            f"{judgement.name} at {label}",
            Severity.MALICIOUS,
            f"Keras imports {module!r} to rebuild this object; {judgement.name} {judgement.why}",
            offset=offset,
        )
    else:
        ctx.report(
            where,
            "keras.module",
            f"{module}.{name} at {label}",
            Severity.SUSPICIOUS,
            f"Keras imports module {module!r} (outside Keras) by name to rebuild this "
            "object: its code runs on load",
            offset=offset,
        )


def _looks_like_keras(config: object) -> bool:
    return isinstance(config, dict) and (
        "class_name" in config or "module" in config or "model_config" in config
    )


def scan_json(blob: Blob, ctx: ScanContext, where: Where) -> str | None:
    """A JSON file: Keras configs and chat templates are checked; None if not JSON."""
    raw = read_bounded(blob, ctx, "JSON file")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if _looks_like_keras(data):
        analyse_keras_config(data, ctx, where)
        return "keras-config"
    if isinstance(data, dict):
        template = data.get("chat_template")
        templates = template if isinstance(template, list) else [template]
        for item in templates:
            text = item.get("template") if isinstance(item, dict) else item
            if isinstance(text, str):
                check_chat_template(text, ctx, where, field="chat_template")
    return "json"


# -- HDF5 ----------------------------------------------------------------------------

_CANDIDATE = re.compile(rb'\{\s*"(?:class_name|module|config|registered_name|\\u00)')
_LAMBDA_BYTES = re.compile(rb'"class_name"\s*:\s*"(?:[\w.]*\.)?Lambda"|__lambda__')
_WINDOW = 4 << 20
_OVERLAP = 4096
_MAX_JSON = 64 << 20


def scan_hdf5(blob: Blob, ctx: ScanContext, where: Where) -> str:
    """Find Keras configs stored as JSON attributes in an HDF5 file, by their bytes."""
    stream = blob.seekable(ctx)
    parsed_until, pos = 0, 0
    lambda_hits: list[int] = []
    while True:
        ctx.check_time()
        stream.seek(pos)
        window = stream.read(_WINDOW)
        if not window:
            break
        lambda_hits.extend(pos + m.start() for m in _LAMBDA_BYTES.finditer(window))
        for match in _CANDIDATE.finditer(window):
            start = pos + match.start()
            if start >= parsed_until:
                parsed_until = max(parsed_until, _try_config(stream, start, ctx, where))
        if len(window) < _WINDOW:
            break
        pos += _WINDOW - _OVERLAP
    if lambda_hits and not any(f.kind == "keras.lambda" for f in ctx.findings):
        ctx.report(
            where,
            "keras.lambda",
            "a Lambda layer reference in an unparsed config",
            Severity.MALICIOUS,
            _WHY_LAMBDA,
            offset=lambda_hits[0],
        )
    return "hdf5"


def _try_config(stream: BinaryIO, start: int, ctx: ScanContext, where: Where) -> int:
    """Parse a JSON object at ``start``; analyse it if it is a Keras config."""
    size = 64 << 10
    while True:
        stream.seek(start)
        data = stream.read(size)
        # An HDF5 string attribute ends with NUL padding or the heap's next object.
        text = data.split(b"\x00", 1)[0].decode("utf-8", "replace")
        try:
            config, length = json.JSONDecoder().raw_decode(text)
            break
        except json.JSONDecodeError as exc:
            cut_short = len(data) == size and exc.pos >= len(text) - 16
            if not cut_short or size >= _MAX_JSON:
                return start
            size *= 8
        except (ValueError, RecursionError):
            return start
    if _looks_like_keras(config):
        analyse_keras_config(config, ctx, where, offset=start)
    return start + len(text[:length].encode("utf-8"))
