"""The vocabulary of a CycloneDX document as the import reads it: nodes, claims, typed fields.

Every accessor checks a field's type, form and size and raises an
:class:`~registry.errors.InvalidBom` naming the component and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lineage import Relation
from registry import limits
from registry.errors import InvalidBom
from registry.manifest import Manifest
from registry.vocabulary import Kind

KINDS = {"machine-learning-model": Kind.MODEL, "data": Kind.DATASET}
PROP = "mbom:"
#: The version of a component the document gives none (``version`` is optional in CycloneDX).
DEFAULT_VERSION = "unversioned"
# The longest value of each field the registry stores (the columns' lengths).
_NAME_CHARS, _VERSION_CHARS, _PUBLISHER_CHARS, _SOURCE_CHARS, _FORMAT_CHARS = (
    300,
    128,
    200,
    2000,
    64,
)
_REF_CHARS = 16 + _NAME_CHARS + _VERSION_CHARS  # "dataset:" + name + "@" + version
_PATH_CHARS = 4096
_TEXT_CHARS = 100_000  # a description, a licence text: kept (abridged) in the audit record
_SIZE = re.compile(r"[0-9]{1,19}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_UNSAFE = re.compile(r"[\s@\x00-\x1f\x7f]+")
_RELATIONS = frozenset(r.value for r in Relation)


@dataclass
class Node:
    """One model or dataset component as read from the document."""

    where: str
    kind: Kind
    name: str
    version: str
    digest: str | None
    manifest: Manifest | None
    publisher: str | None
    source: str | None
    format: str | None
    parents: list[tuple[str, str | None]] = field(default_factory=list)  # (key, relation)
    datasets: list[tuple[str, str]] = field(default_factory=list)  # (bom-ref, use)
    #: What the registry keeps only in the import's audit record (licences, purl, description).
    record: dict[str, Any] = field(default_factory=dict)
    #: The ``mbom:finding`` property an mbom export writes (``compromised`` when flagged).
    finding: str | None = None

    @property
    def key(self) -> str:
        """``kind:name@version``: the node's identity in the document."""
        return f"{self.kind}:{self.name}@{self.version}"

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


@dataclass
class Claim:
    """The document says the node ``key`` is compromised, for ``reason``."""

    key: str
    reason: str
    where: str


@dataclass
class Document:
    """What a CycloneDX document describes, as the import registers it."""

    nodes: dict[str, Node]
    aliases: dict[str, str]  # bom-ref (and key) -> node key
    claims: list[Claim] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    serial: str | None = None


def _kind(value: Any) -> Kind | None:
    return KINDS.get(value) if isinstance(value, str) else None


def _mapping(value: Any, where: str, *, required: bool = False) -> Mapping[str, Any]:
    """``value`` as an object; an absent optional object reads as empty."""
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidBom(where, f"is not an object (it is {_kind_of(value)})")
    return value


def _list(value: Any, where: str) -> list[Any]:
    """``value`` as a list within :data:`~registry.limits.MAX_BOM_LIST_ITEMS`; absent is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidBom(where, f"is not a list (it is {_kind_of(value)})")
    limits.check_count(len(value), limits.MAX_BOM_LIST_ITEMS, what=where)
    return value


def _kind_of(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "null")


def _text(mapping: Mapping[str, Any], key: str, where: str, max_chars: int) -> str:
    value = _optional_text(mapping, key, where, max_chars)
    if value is None or not value.strip():
        raise InvalidBom(f"{where}.{key}", "is missing", hint="every model and dataset needs one")
    return value


def _optional_text(mapping: Mapping[str, Any], key: str, where: str, max_chars: int) -> str | None:
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidBom(f"{where}.{key}", f"is not a string (it is {_kind_of(value)})")
    if len(value) > max_chars:
        raise InvalidBom(f"{where}.{key}", f"is longer than {max_chars} characters")
    return value


def _properties(component: Mapping[str, Any], where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for i, prop in enumerate(_list(component.get("properties"), f"{where}.properties")):
        at = f"{where}.properties[{i}]"
        if not isinstance(prop, Mapping) or not isinstance(prop.get("name"), str):
            raise InvalidBom(at, "has no name")
        value = prop.get("value", "")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidBom(f"{at}.value", f"is not a string (it is {_kind_of(value)})")
        found.setdefault(prop["name"], str(value))
    return found


def _property_text(props: Mapping[str, str], name: str, where: str, max_chars: int) -> str | None:
    value = props.get(name)
    if value is not None and len(value) > max_chars:
        raise InvalidBom(f"{where} property {name}", f"is longer than {max_chars} characters")
    return value


def _sha256(hashes: Any, where: str) -> str | None:
    for i, entry in enumerate(_list(hashes, where)):
        entry = _mapping(entry, f"{where}[{i}]", required=True)
        if entry.get("alg") == "SHA-256":
            content = entry.get("content")
            if not isinstance(content, str) or not _HEX64.fullmatch(content):
                raise InvalidBom(f"{where}[{i}].content", "is not a SHA-256 hex digest")
            return "sha256:" + content.lower()
    return None


def _relation_text(value: str | None, where: str) -> str | None:
    if value is not None and value not in _RELATIONS:
        raise InvalidBom(
            f"{where}:",
            f"unknown relation {limits.brief(value)}",
            hint=f"use one of {', '.join(sorted(_RELATIONS))}",
        )
    return value


def _use(value: str, where: str) -> str:
    _relation_text(value, where)
    return value
