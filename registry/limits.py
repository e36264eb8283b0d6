"""Limits on what mbom parses, checked before the parsing work starts.

A parser fed a hostile or careless document must answer with a clear
:class:`~registry.errors.LimitExceeded` (an :class:`~registry.errors.InvalidInput`:
HTTP 400, CLI exit 2), never with a traceback, minutes of work or gigabytes of
memory. Each limit is far above what a real document needs; each is checked on
the raw bytes or the first parsed level, before the expensive step (``json.loads``,
YAML construction, loading arrays, one database row per component).

:func:`json_depth` measures the nesting of a JSON text without parsing it
(Python's decoder recurses once per level and dies with ``RecursionError`` deep
down); :func:`load_json` and :func:`read_json_file` apply the size and depth
limits, then parse.
"""

from __future__ import annotations

import json
import operator
import re
from itertools import accumulate, count
from pathlib import Path
from typing import Any

from registry.errors import InvalidInput, LimitExceeded

__all__ = [
    "MAX_BOM_BYTES",
    "MAX_BOM_COMPONENTS",
    "MAX_BOM_LIST_ITEMS",
    "MAX_BUNDLE_BYTES",
    "MAX_CARD_BYTES",
    "MAX_CARD_FRONT_MATTER_BYTES",
    "MAX_CARD_LIST_ITEMS",
    "MAX_CARD_NODES",
    "MAX_ECHO_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_REQUEST_BYTES",
    "brief",
    "check_count",
    "check_json_depth",
    "check_size",
    "clip",
    "json_depth",
    "load_json",
    "read_json_file",
]

#: Deepest nesting of arrays and objects in any JSON mbom reads (a CycloneDX BOM
#: mbom writes is 8 deep; Python's own decoder gives up near 1,000).
MAX_JSON_DEPTH = 64
#: Largest CycloneDX document ``bom import`` reads (a 100,000-model BOM with a file
#: per model is ~120 MB).
MAX_BOM_BYTES = 512 * 2**20
#: Most model and dataset components one BOM may describe.
MAX_BOM_COMPONENTS = 250_000
#: Most entries of one list inside a component (files, hashes, properties, ancestors).
MAX_BOM_LIST_ITEMS = 1_000_000
#: Largest OpenSSF model-signing bundle (a statement listing every file of a model).
MAX_BUNDLE_BYTES = 64 * 2**20
#: Largest JSON request body the API reads (a BOM import; a manifest of a million files).
MAX_REQUEST_BYTES = MAX_BOM_BYTES
#: Largest model card (``README.md``) read for lineage metadata.
MAX_CARD_BYTES = 16 * 2**20
#: Largest YAML front matter of a model card (the Hub's own cards stay under 100 KB).
MAX_CARD_FRONT_MATTER_BYTES = 2**20
#: Most YAML nodes (scalars, lists, mappings) in a model card's front matter.
MAX_CARD_NODES = 50_000
#: Most entries of ``base_model`` or ``datasets`` in a model card.
MAX_CARD_LIST_ITEMS = 1_000
#: Longest piece of user input an error message repeats.
MAX_ECHO_CHARS = 120

_MIB = 2**20
# Escaped backslashes, then escaped quotes: what is left of '"' delimits strings.
_ESCAPES = ((b"\\\\", b""), (b'\\"', b""))
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_STRING = re.compile(rb'"[^"]*+"')
_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def brief(value: object, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages.

    >>> brief("x" * 1000, 10)
    "'xxxxxxxx…"
    """
    if isinstance(value, list | dict | tuple) and len(value) > limit:
        return f"a {type(value).__name__} of {len(value)} items"
    return clip(repr(value), limit)


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, for error messages that quote a library's.

    >>> clip("abcdef", 4)
    'abc…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_size(size: int, limit: int, *, what: str) -> None:
    """Refuse ``what`` when its ``size`` in bytes is over ``limit``."""
    if size > limit:
        raise LimitExceeded(what, f"{_human(size)}, more than the {_human(limit)} allowed")


def check_count(items: int, limit: int, *, what: str) -> None:
    """Refuse ``what`` when it holds more than ``limit`` items."""
    if items > limit:
        raise LimitExceeded(what, f"{items:,} items, more than the {limit:,} allowed")


def json_depth(raw: bytes) -> int:
    """How deeply the arrays and objects of JSON text ``raw`` nest, without parsing it.

    Linear and allocation-light (a few passes of C string operations), so it
    can run before ``json.loads`` on anything. Brackets inside strings do not
    count. On text that is no JSON the answer is meaningless but finite.

    >>> json_depth(b'{"a": [1, {"b": "]]]"}]}')
    3
    """
    for escaped, gone in _ESCAPES:
        raw = raw.replace(escaped, gone)
    structure = _STRING.sub(b"", raw.translate(None, _NOT_STRUCTURE)).replace(b'"', b"")
    # Each opening bracket is 2 and each closing one 0, so the running sum minus
    # the position is the depth after that bracket.
    steps = structure.translate(_STEPS)
    return max(map(operator.sub, accumulate(steps), count(1)), default=0)


def check_json_depth(raw: bytes, limit: int = MAX_JSON_DEPTH, *, what: str) -> None:
    """Refuse JSON text nested deeper than ``limit``."""
    depth = json_depth(raw)
    if depth > limit:
        raise LimitExceeded(what, f"nested {depth:,} deep, more than the {limit} allowed")


def load_json(
    raw: bytes | str, *, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Parse JSON text after checking its size and nesting depth.

    Raises :class:`~registry.errors.LimitExceeded` for a document over a limit
    and :class:`~registry.errors.InvalidInput` for one that is no UTF-8 JSON.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    check_size(len(data), max_bytes, what=what)
    check_json_depth(data, max_depth, what=what)
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} is not UTF-8 text", hint="re-save it as UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{what} is not a JSON document: {brief(str(exc))}") from exc


def read_json_file(path: Path, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Read and parse a JSON file within the limits (its size is checked before reading).

    Raises :class:`~registry.errors.LimitExceeded` or
    :class:`~registry.errors.InvalidInput` naming the file.
    """
    try:
        check_size(path.stat().st_size, max_bytes, what=str(path))
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    return load_json(raw, what=str(path), max_bytes=max_bytes, max_depth=max_depth)


def _human(size: int) -> str:
    return f"{size / _MIB:.1f} MiB" if size >= _MIB else f"{size:,} bytes"
