"""A component's identity and the fields the registry keeps in no column.

:func:`identity` reads the registry name (``group/name``), the version (a stated
default when the document gives none), the publisher, the source and what only
the import's audit record keeps (licences, purl, description).
:func:`check_unkept` lists, in one warning per component, every field the
registry does not keep, so that nothing is dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from registry import limits
from registry.bom._fields import (
    _NAME_CHARS,
    _PUBLISHER_CHARS,
    _SOURCE_CHARS,
    _TEXT_CHARS,
    _UNSAFE,
    _VERSION_CHARS,
    DEFAULT_VERSION,
    PROP,
    Node,
    _list,
    _mapping,
    _optional_text,
    _text,
)
from registry.errors import InvalidBom, InvalidInput
from registry.hf import UNPINNED
from registry.service.refs import check_name
from registry.vocabulary import Kind

__all__ = ["Identity", "check_unkept", "hub_source", "identity", "unkept_listing"]

#: How much of a description the audit record keeps.
RECORD_CHARS = 4000
_HUB_URL = re.compile(
    r"^https?://(?:www\.)?(?:huggingface\.co|hf\.co)/(?P<datasets>datasets/)?"
    r"(?P<repo>[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?)(?:/tree/(?P<revision>[^/\s?#]+))?/?$"
)
_NOT_REPOS = frozenset(
    {"spaces", "docs", "blog", "api", "models", "papers", "collections", "organizations",
     "settings", "tasks", "learn", "pricing", "login", "join"}
)  # fmt: skip
_HF_PURL = re.compile(r"^pkg:huggingface/(?P<path>[^@?#]+)(?:@(?P<version>[^?#]+))?")
#: Component fields :func:`identity` and the reader keep (or record).
_KEPT = frozenset(
    {"type", "bom-ref", "name", "group", "version", "supplier", "publisher", "manufacturer",
     "authors", "description", "licenses", "purl", "hashes", "externalReferences",
     "modelCard", "pedigree", "components", "properties", "data", "$schema"}
)  # fmt: skip
#: mbom's own properties: read by the import, or recomputed by the receiving registry.
_OWN_PROPERTIES = frozenset(
    PROP + p for p in ("format", "finding", "status", "stored", "placeholder", "size")
)


@dataclass
class Identity:
    """A component's registry name, version, publisher, source and audit-only fields."""

    name: str
    version: str
    publisher: str | None
    source: str | None
    record: dict[str, Any] = field(default_factory=dict)


def identity(component: Mapping[str, Any], where: str, kind: Kind, warnings: list[str]) -> Identity:
    """Read the identity of ``component``; decisions worth knowing go to ``warnings``."""
    name = _text(component, "name", where, _NAME_CHARS)
    group = _optional_text(component, "group", where, _NAME_CHARS)
    if group and group.strip() and not name.startswith(group.strip() + "/"):
        name = f"{group.strip()}/{name}"
        if len(name) > _NAME_CHARS:
            raise InvalidBom(f"{where}.group/name", f"is longer than {_NAME_CHARS} characters")
    version = _optional_text(component, "version", where, _VERSION_CHARS)
    purl = _optional_text(component, "purl", where, _SOURCE_CHARS)
    hub_purl = _hub_purl(purl, kind)
    source = _source(component.get("externalReferences"), f"{where}.externalReferences")
    if source is None and hub_purl is not None:
        source = hub_purl[0]
    if version is None or not version.strip():
        version = _default_version(source, hub_purl)
        warnings.append(f"{where} ({kind} {name}) has no version: registered as {name}@{version}")
    name, version = _referable(name, version, where, warnings)
    record: dict[str, Any] = {}
    licences = _licences(component.get("licenses"), f"{where}.licenses")
    if licences:
        record["licenses"] = licences
    if purl is not None:
        record["purl"] = purl
    description = _optional_text(component, "description", where, _TEXT_CHARS)
    if description:
        record["description"] = description[:RECORD_CHARS]
    return Identity(
        name=name,
        version=version,
        publisher=_publisher(component, where),
        source=source,
        record=record,
    )


def _default_version(source: str | None, hub_purl: tuple[str, str | None] | None) -> str:
    if hub_purl is not None and hub_purl[1]:
        return hub_purl[1]
    if source is not None and source.startswith("hf://"):
        return UNPINNED
    return DEFAULT_VERSION


def _referable(name: str, version: str, where: str, warnings: list[str]) -> tuple[str, str]:
    """``name`` and ``version`` as a reference can hold them (spaces and ``@`` become ``-``)."""
    try:
        check_name(name, version)
        return name, version
    except InvalidInput as exc:
        fixed_name = _UNSAFE.sub("-", name.strip()).lstrip(":") or "-"
        fixed_version = _UNSAFE.sub("-", version.strip()).replace("/", "-") or DEFAULT_VERSION
        try:
            check_name(fixed_name, fixed_version)
        except InvalidInput:
            raise InvalidBom(f"{where}.name/version:", exc.message, hint=exc.hint) from exc
    warnings.append(
        f"{where}: {limits.brief(name + '@' + version, 80)} cannot be a reference: "
        f"registered as {fixed_name}@{fixed_version}"
    )
    return fixed_name, fixed_version


def _publisher(component: Mapping[str, Any], where: str) -> str | None:
    """``supplier.name``, else ``publisher``, else ``manufacturer.name``."""
    for value in _publishers(component, where).values():
        if value:
            return value
    return None


def _publishers(component: Mapping[str, Any], where: str) -> dict[str, str | None]:
    supplier = _mapping(component.get("supplier"), f"{where}.supplier")
    manufacturer = _mapping(component.get("manufacturer"), f"{where}.manufacturer")
    return {
        "supplier": _optional_text(supplier, "name", f"{where}.supplier", _PUBLISHER_CHARS),
        "publisher": _optional_text(component, "publisher", where, _PUBLISHER_CHARS),
        "manufacturer": _optional_text(
            manufacturer, "name", f"{where}.manufacturer", _PUBLISHER_CHARS
        ),
    }


def hub_source(url: str | None) -> str | None:
    """The ``hf://`` source a ``https://huggingface.co/…`` repository URL names, else ``None``."""
    if url is None:
        return None
    if url.startswith("hf://"):
        return url
    match = _HUB_URL.match(url)
    if match is None or match["repo"].split("/")[0] in _NOT_REPOS:
        return None
    prefix = "hf://datasets/" if match["datasets"] else "hf://"
    revision = f"@{match['revision']}" if match["revision"] else ""
    return f"{prefix}{match['repo']}{revision}"


def _hub_purl(purl: str | None, kind: Kind) -> tuple[str, str | None] | None:
    """The ``hf://`` source and revision a ``pkg:huggingface`` purl names."""
    if purl is None:
        return None
    match = _HF_PURL.match(purl)
    if match is None:
        return None
    path = unquote(match["path"]).strip("/")
    revision = unquote(match["version"]) if match["version"] else None
    if revision is not None and not re.fullmatch(r"[^\s@/]+", revision):
        revision = None
    prefix = "hf://datasets/" if kind == Kind.DATASET else "hf://"
    return f"{prefix}{path}" + (f"@{revision}" if revision else ""), revision


def _urls(references: Any, where: str) -> list[tuple[str, str]]:
    """Every (type, url) of an ``externalReferences`` list."""
    found = []
    for i, value in enumerate(_list(references, where)):
        reference = _mapping(value, f"{where}[{i}]", required=True)
        url = _optional_text(reference, "url", f"{where}[{i}]", _SOURCE_CHARS)
        if url is not None:
            kind = reference.get("type")
            found.append((kind if isinstance(kind, str) else "other", url))
    return found


def _source(references: Any, where: str) -> str | None:
    """An ``hf://`` URL, else a Hub URL (as ``hf://``), else the first URL."""
    urls = [url for _, url in _urls(references, where)]
    for url in urls:
        if url.startswith("hf://"):
            return url
    for url in urls:
        hub = hub_source(url)
        if hub is not None:
            return hub
    return urls[0] if urls else None


def _licences(value: Any, where: str) -> list[str]:
    """Each licence's SPDX id, name or expression, in document order."""
    found = []
    for i, entry in enumerate(_list(value, where)):
        at = f"{where}[{i}]"
        choice = _mapping(entry, at, required=True)
        expression = _optional_text(choice, "expression", at, 1000)
        if expression:
            found.append(expression)
            continue
        licence = _mapping(choice.get("license"), f"{at}.license")
        text = _optional_text(licence, "id", f"{at}.license", 200) or _optional_text(
            licence, "name", f"{at}.license", 200
        )
        if text:
            found.append(text)
    return found


def check_unkept(
    node: Node, component: Mapping[str, Any], props: Mapping[str, str], warnings: list[str]
) -> None:
    """Warn once about every field of ``component`` the registry does not keep."""
    where = node.where
    unkept = [key for key in component if key not in _KEPT]
    for role, value in _publishers(component, where).items():
        if value and value != node.publisher:
            unkept.append(f"{role} {limits.brief(value, 60)}")
    authors = _list(component.get("authors"), f"{where}.authors")
    names = {a.get("name") for a in authors if isinstance(a, Mapping)} - {node.publisher}
    if names:
        unkept.append("authors")
    algs = sorted(
        {str(h.get("alg")) for h in _list(component.get("hashes"), f"{where}.hashes")
         if isinstance(h, Mapping) and h.get("alg") != "SHA-256"}
    )  # fmt: skip
    if algs:
        unkept.append(f"hashes ({', '.join(algs)})")
    for kind, url in _urls(component.get("externalReferences"), f"{where}.externalReferences"):
        if url != node.source and hub_source(url) != node.source:
            unkept.append(f"externalReferences ({kind} {limits.brief(url, 80)})")
    unkept += _unkept_card(node, component)
    foreign = [p for p in props if p not in _OWN_PROPERTIES]
    if foreign:
        unkept.append(f"properties ({', '.join(limits.brief(p, 40) for p in foreign[:6])})")
    if node.finding == "suspicious":
        unkept.append("mbom:finding suspicious (this registry's own scans decide)")
    if node.kind == Kind.DATASET:
        unkept += _unkept_data(node, component)
    parts = []
    if unkept:
        parts.append(f"not kept (the registry has no field for it): {', '.join(unkept)}")
    if "description" in node.record:
        parts.append("description kept in the audit record only (bom.metadata)")
    if parts:
        warnings.append(f"{where} ({node.kind} {node.ref}): " + "; ".join(parts))


def _unkept_card(node: Node, component: Mapping[str, Any]) -> list[str]:
    card = _mapping(component.get("modelCard"), f"{node.where}.modelCard")
    own = ("bom-ref", "modelParameters", "properties")
    unkept = [f"modelCard.{k}" for k in card if k not in own]
    parameters = _mapping(card.get("modelParameters"), f"{node.where}.modelCard.modelParameters")
    for key, value in parameters.items():
        if key == "datasets" or (key == "modelArchitecture" and value == node.format):
            continue
        unkept.append(f"modelCard.modelParameters.{key}")
    props = card.get("properties")
    names = [
        str(p.get("name"))
        for p in (props if isinstance(props, list) else [])
        if isinstance(p, Mapping) and not str(p.get("name")).startswith(PROP + "dataset:")
    ]
    if names:
        unkept.append(f"modelCard.properties ({', '.join(limits.brief(n, 40) for n in names[:6])})")
    return unkept


def _unkept_data(node: Node, component: Mapping[str, Any]) -> list[str]:
    """A dataset's ``data`` entries beyond a bare type and name (what an mbom export writes)."""
    unkept = []
    for i, entry in enumerate(_list(component.get("data"), f"{node.where}.data")):
        extra = (
            sorted(set(entry) - {"type", "name", "bom-ref"}) if isinstance(entry, Mapping) else []
        )
        if extra:
            unkept.append(f"data[{i}] ({', '.join(extra)})")
    return unkept


def unkept_listing(entry: Mapping[str, Any], kept: set[str]) -> str:
    """``; not kept: a, b`` for the keys of ``entry`` outside ``kept`` ('' when none)."""
    unkept = sorted(k for k in entry if k not in kept)
    return f"; not kept: {', '.join(unkept)}" if unkept else ""
