"""Reading a CycloneDX ML-BOM into the models, datasets and links it describes.

No database here: :func:`read_document` turns the JSON into :class:`Node` values
and checks every field it uses for its type, form and size on the way, so a
wrong one is an :class:`~registry.errors.InvalidBom` naming the component and
the field (never an ``AttributeError`` deep inside the import), and no error
message repeats more than a few dozen characters of the document. The size
and nesting limits apply to the raw bytes before they are parsed
(:func:`registry.limits.read_json_file`, the API's body limits).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lineage import Relation
from registry import limits
from registry.errors import InvalidBom, InvalidInput
from registry.manifest import Manifest, ManifestEntry
from registry.service.refs import check_name
from registry.vocabulary import Kind

__all__ = ["KINDS", "PROP", "Node", "read_document"]

KINDS = {"machine-learning-model": Kind.MODEL, "data": Kind.DATASET}
PROP = "mbom:"
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
_SIZE = re.compile(r"[0-9]{1,19}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
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

    @property
    def key(self) -> str:
        """``kind:name@version``: the node's identity in the document."""
        return f"{self.kind}:{self.name}@{self.version}"


def read_document(document: Mapping[str, Any]) -> tuple[dict[str, Node], dict[str, str]]:
    """The document's model and dataset nodes by key, and every bom-ref's node key.

    Raises :class:`~registry.errors.InvalidInput` naming the field when the
    document is no CycloneDX BOM this registry can read.
    """
    if not isinstance(document, Mapping) or document.get("bomFormat") != "CycloneDX":
        raise InvalidInput("bomFormat is not 'CycloneDX'", hint="give a CycloneDX JSON document")
    spec = document.get("specVersion")
    if not isinstance(spec, str) or not spec.startswith("1."):
        raise InvalidInput("specVersion is missing or not 1.x", hint="export CycloneDX 1.5 or 1.6")
    nodes: dict[str, Node] = {}
    aliases: dict[str, str] = {}  # bom-ref -> node key
    for where, component in _components(document):
        node = _read_component(where, component)
        if node is None:
            continue
        if node.key in nodes:
            raise InvalidBom(where, f"repeats {node.key}", hint="list each version once")
        nodes[node.key] = node
        aliases[node.key] = node.key
        bom_ref = _optional_text(component, "bom-ref", where, _REF_CHARS)
        if bom_ref is not None:
            aliases[bom_ref] = node.key
    if not nodes:
        raise InvalidInput("the document describes no model or dataset component")
    return nodes, aliases


def _components(document: Mapping[str, Any]) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    metadata = _mapping(document.get("metadata"), "metadata")
    if metadata.get("component") is not None:
        found.append(("metadata.component", metadata["component"]))
    components = _list(document.get("components"), "components")
    limits.check_count(len(components), limits.MAX_BOM_COMPONENTS, what="components")
    found.extend((f"components[{i}]", c) for i, c in enumerate(components))
    return found


def _read_component(where: str, value: Any) -> Node | None:
    component = _mapping(value, where, required=True)
    kind = _kind(component.get("type"))
    if kind is None:
        return None  # libraries, files, services: not lineage
    name = _text(component, "name", where, _NAME_CHARS)
    version = _text(component, "version", where, _VERSION_CHARS)
    try:
        check_name(name, version)
    except InvalidInput as exc:
        raise InvalidBom(f"{where}.name/version:", exc.message, hint=exc.hint) from exc
    props = _properties(component, where)
    supplier = _mapping(component.get("supplier"), f"{where}.supplier")
    node = Node(
        where=where,
        kind=kind,
        name=name,
        version=version,
        digest=_sha256(component.get("hashes"), f"{where}.hashes"),
        manifest=_manifest(component.get("components"), where),
        publisher=_optional_text(supplier, "name", f"{where}.supplier", _PUBLISHER_CHARS),
        source=_source(component.get("externalReferences"), f"{where}.externalReferences"),
        format=_property_text(props, PROP + "format", where, _FORMAT_CHARS),
    )
    if node.manifest is not None:
        if node.digest is not None and node.digest != node.manifest.digest:
            raise InvalidBom(
                f"{where}.hashes:",
                f"the SHA-256 {node.digest} is not the digest of its files "
                f"({node.manifest.digest})",
                hint="the file list or the component hash was altered",
            )
        node.digest = node.manifest.digest
    node.parents = _pedigree(component, where)
    node.datasets = _datasets(component, where)
    return node


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


def _manifest(files: Any, where: str) -> Manifest | None:
    entries = []
    for i, value in enumerate(_list(files, f"{where}.components")):
        at = f"{where}.components[{i}]"
        file = _mapping(value, at, required=True)
        if file.get("type") != "file":
            continue
        digest = _sha256(file.get("hashes"), f"{at}.hashes")
        size = _properties(file, at).get(PROP + "size")
        if digest is None or size is None or not _SIZE.fullmatch(size) or int(size) >= 2**63:
            return None  # a file we cannot pin down: the component stays a placeholder
        path = _text(file, "name", at, _PATH_CHARS)
        try:
            entries.append(ManifestEntry(path, int(size), digest[len("sha256:") :]))
        except InvalidInput as exc:
            raise InvalidBom(f"{at}.name", exc.message) from exc
    try:
        return Manifest(tuple(sorted(entries, key=lambda e: e.path))) if entries else None
    except InvalidInput as exc:
        raise InvalidBom(f"{where}.components:", exc.message, hint=exc.hint) from exc


def _source(references: Any, where: str) -> str | None:
    for i, value in enumerate(_list(references, where)):
        reference = _mapping(value, f"{where}[{i}]", required=True)
        url = _optional_text(reference, "url", f"{where}[{i}]", _SOURCE_CHARS)
        if url is not None:
            return url
    return None


def _pedigree(component: Mapping[str, Any], where: str) -> list[tuple[str, str | None]]:
    pedigree = _mapping(component.get("pedigree"), f"{where}.pedigree")
    ancestors = _list(pedigree.get("ancestors"), f"{where}.pedigree.ancestors")
    parents: list[tuple[str, str | None]] = []
    for i, value in enumerate(ancestors):
        at = f"{where}.pedigree.ancestors[{i}]"
        ancestor = _mapping(value, at, required=True)
        props = _properties(ancestor, at)
        kind = _kind(ancestor.get("type")) or Kind.MODEL
        name = _text(ancestor, "name", at, _NAME_CHARS)
        default = f"{kind}:{name}@{_text(ancestor, 'version', at, _VERSION_CHARS)}"
        ref = _property_text(props, PROP + "ref", at, _REF_CHARS) or default
        parents.append((ref, _relation_text(props.get(PROP + "relation"), at)))
    return parents


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


def _datasets(component: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    card = _mapping(component.get("modelCard"), f"{where}.modelCard")
    uses = {
        ref: _use(name.removeprefix(PROP + "dataset:"), f"{where}.modelCard")
        for name, ref in _properties(card, f"{where}.modelCard").items()
        if name.startswith(PROP + "dataset:")
    }
    parameters = _mapping(card.get("modelParameters"), f"{where}.modelCard.modelParameters")
    at = f"{where}.modelCard.modelParameters.datasets"
    found = []
    for i, value in enumerate(_list(parameters.get("datasets"), at)):
        entry = _mapping(value, f"{at}[{i}]", required=True)
        ref = _optional_text(entry, "ref", f"{at}[{i}]", _REF_CHARS)
        if ref is not None:  # an inline dataset (no ref) is not lineage
            found.append((ref, uses.get(ref, Relation.TRAINED_ON.value)))
    return found
