"""Reading a CycloneDX ML-BOM into the models, datasets and links it describes.

No database here: :func:`read_document` turns the JSON into :class:`Node` values
(and the :class:`Claim`\\ s of compromise it makes) and checks every field it uses
for its type, form and size on the way, so a wrong one is an
:class:`~registry.errors.InvalidBom` naming the component and the field (never
an ``AttributeError`` deep inside the import), and no error message repeats more
than a few dozen characters of the document. The size and nesting limits apply
to the raw bytes before they are parsed (:func:`registry.limits.read_json_file`,
the API's body limits).

What a document says that the registry cannot keep is never dropped silently:
it is listed in :attr:`Document.warnings` (see :mod:`registry.bom._extras` for
the fields, :mod:`registry.bom._links` for ``dependencies`` and pedigree, and
:mod:`registry.bom._claims` for ``vulnerabilities``). The rules, in brief:

- identity: ``group`` and ``name`` make the registry name ``group/name`` (two
  groups' models with one name stay two models); a component without a
  ``version`` is registered under :data:`DEFAULT_VERSION` (``unversioned``), or
  ``unpinned`` when it names a Hugging Face repository (as ``mbom import-hf``
  names a base without a revision, so that importing the snapshot fills it); a
  name or version a reference cannot hold (spaces, ``@``) has those characters
  replaced by ``-``, with a warning;
- ``supplier.name`` is the publisher, else ``publisher``, else ``manufacturer.name``;
- the source is an ``hf://`` URL among ``externalReferences`` if there is one, else
  the first URL (a ``https://huggingface.co/…`` URL becomes ``hf://…``), else the
  repository a ``pkg:huggingface`` purl names;
- licences, a purl and a description are kept in the import's audit record
  (``bom.metadata``); the export writes licences and purls back from there;
- a modelCard's datasets (by ``ref``, or described inline) become dataset
  versions linked with their use (``mbom:dataset:<use>`` properties; ``trained_on``
  by default); an inline dataset is named under its model
  (``<model>/<dataset name>``) so that two models' "Training Data" stay apart;
- a pedigree ancestor not listed as a component is read as a component of its own
  (a placeholder unless its files are listed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lineage import Relation
from registry import limits
from registry.bom import _claims, _extras, _links
from registry.bom._fields import (
    _FORMAT_CHARS,
    _NAME_CHARS,
    _PATH_CHARS,
    _REF_CHARS,
    _SIZE,
    _SOURCE_CHARS,
    _UNSAFE,
    DEFAULT_VERSION,
    KINDS,
    PROP,
    Claim,
    Document,
    Node,
    _kind,
    _list,
    _mapping,
    _optional_text,
    _properties,
    _property_text,
    _relation_text,
    _sha256,
    _text,
    _use,
)
from registry.errors import InvalidBom, InvalidInput
from registry.manifest import Manifest, ManifestEntry
from registry.service.refs import check_name
from registry.vocabulary import Kind

__all__ = [
    "DEFAULT_VERSION",
    "KINDS",
    "PROP",
    "Claim",
    "Document",
    "Node",
    "read_document",
]


def read_document(document: Mapping[str, Any]) -> Document:
    """The document's model and dataset nodes, links, claims of compromise and warnings.

    Raises :class:`~registry.errors.InvalidInput` naming the field when the
    document is no CycloneDX BOM this registry can read.
    """
    if not isinstance(document, Mapping) or document.get("bomFormat") != "CycloneDX":
        raise InvalidInput("bomFormat is not 'CycloneDX'", hint="give a CycloneDX JSON document")
    spec = document.get("specVersion")
    if not isinstance(spec, str) or not spec.startswith("1."):
        raise InvalidInput("specVersion is missing or not 1.x", hint="export CycloneDX 1.5 to 1.7")
    serial = document.get("serialNumber")
    read = Document(nodes={}, aliases={}, serial=serial if isinstance(serial, str) else None)
    reader = _Reader(read)
    others: list[str] = []
    for where, component in _components(document):
        if reader.component(where, component) is None:
            others.append(_describe_other(where, component))
    if not read.nodes:
        raise InvalidInput("the document describes no model or dataset component")
    _links.add_pedigree_ancestors(read, reader.ancestors, reader.ancestor)
    _links.add_dependencies(read, document.get("dependencies"))
    _claims.read_vulnerabilities(read, document.get("vulnerabilities"))
    _claims.read_findings(read)
    if others:
        read.warnings.append(
            f"{len(others)} component(s) neither a model nor a dataset not kept "
            f"(the registry keeps ML lineage only): {_listing(others)}"
        )
    return read


def _listing(items: list[str], shown: int = 8) -> str:
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {more} more" if more > 0 else "")


def _describe_other(where: str, value: Any) -> str:
    kind = value.get("type") if isinstance(value, Mapping) else None
    name = value.get("name") if isinstance(value, Mapping) else None
    return f"{where} ({limits.brief(kind, 30)} {limits.brief(name, 60)})"


class _Reader:
    """Reads components into a :class:`Document`, keeping the pedigree ancestors to resolve."""

    def __init__(self, read: Document) -> None:
        self.read = read
        #: (child key, where, ancestor object, parent ref, relation) of every pedigree ancestor.
        self.ancestors: list[_links.Ancestor] = []

    def ancestor(self, where: str, value: Mapping[str, Any]) -> Node:
        """Read a pedigree ancestor as a component of its own (a model unless typed ``data``)."""
        node = self.component(where, value, default_kind=Kind.MODEL)
        assert node is not None  # a model by default
        return node

    def component(self, where: str, value: Any, *, default_kind: Kind | None = None) -> Node | None:
        """Read one component into the document; ``None`` when it is no model or dataset."""
        component = _mapping(value, where, required=True)
        kind = _kind(component.get("type")) or default_kind
        if kind is None:
            return None  # libraries, files, services: not lineage
        warnings = self.read.warnings
        props = _properties(component, where)
        identity = _extras.identity(component, where, kind, warnings)
        node = Node(
            where=where,
            kind=kind,
            name=identity.name,
            version=identity.version,
            digest=_sha256(component.get("hashes"), f"{where}.hashes"),
            manifest=_manifest(component.get("components"), where),
            publisher=identity.publisher,
            source=identity.source,
            format=_property_text(props, PROP + "format", where, _FORMAT_CHARS),
            record=identity.record,
            finding=props.get(PROP + "finding"),
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
        node.parents = self._pedigree(node, component, where)
        node.datasets = self._datasets(node, component, where)
        _extras.check_unkept(node, component, props, warnings)
        if node.key in self.read.nodes:
            raise InvalidBom(where, f"repeats {node.key}", hint="list each version once")
        self.read.nodes[node.key] = node
        self.read.aliases[node.key] = node.key
        bom_ref = _optional_text(component, "bom-ref", where, _REF_CHARS)
        if bom_ref is not None:
            self.read.aliases.setdefault(bom_ref, node.key)
        return node

    def _pedigree(
        self, node: Node, component: Mapping[str, Any], where: str
    ) -> list[tuple[str, str | None]]:
        pedigree = _mapping(component.get("pedigree"), f"{where}.pedigree")
        ancestors = _list(pedigree.get("ancestors"), f"{where}.pedigree.ancestors")
        parents: list[tuple[str, str | None]] = []
        for i, value in enumerate(ancestors):
            at = f"{where}.pedigree.ancestors[{i}]"
            ancestor = _mapping(value, at, required=True)
            props = _properties(ancestor, at)
            kind = _kind(ancestor.get("type")) or Kind.MODEL
            identity = _extras.identity(ancestor, at, kind, [])
            bom_ref = _optional_text(ancestor, "bom-ref", at, _REF_CHARS)
            default = bom_ref or f"{kind}:{identity.name}@{identity.version}"
            ref = _property_text(props, PROP + "ref", at, _REF_CHARS) or default
            relation = _relation_text(props.get(PROP + "relation"), at)
            parents.append((ref, relation))
            self.ancestors.append((node.key, at, ancestor, ref, relation))
        unkept = [k for k in ("descendants", "variants", "commits", "patches") if pedigree.get(k)]
        if unkept:
            self.read.warnings.append(
                f"{where}.pedigree: {', '.join(unkept)} not kept (the registry keeps ancestors)"
            )
        return parents

    def _datasets(
        self, node: Node, component: Mapping[str, Any], where: str
    ) -> list[tuple[str, str]]:
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
            if ref is None:
                ref = self._inline_dataset(node, entry, f"{at}[{i}]")
            found.append((ref, uses.get(ref, Relation.TRAINED_ON.value)))
        return found

    def _inline_dataset(self, model: Node, entry: Mapping[str, Any], where: str) -> str:
        """Register a dataset a modelCard describes in place, named under its model."""
        label = _text(entry, "name", where, _NAME_CHARS)
        name = f"{model.name}/{_UNSAFE.sub('-', label.strip())}"
        contents = _mapping(entry.get("contents"), f"{where}.contents")
        url = _optional_text(contents, "url", f"{where}.contents", _SOURCE_CHARS)
        dataset = Node(
            where=where,
            kind=Kind.DATASET,
            name=name[:_NAME_CHARS],
            version=DEFAULT_VERSION,
            digest=None,
            manifest=None,
            publisher=None,
            source=_extras.hub_source(url) or url,
            format=None,
        )
        try:
            check_name(dataset.name, dataset.version)
        except InvalidInput as exc:
            raise InvalidBom(f"{where}.name:", exc.message, hint=exc.hint) from exc
        self.read.warnings.append(
            f"{where}: the dataset {limits.brief(label, 60)} is described inline: registered "
            f"as dataset {dataset.ref} (a placeholder)"
            + _extras.unkept_listing(entry, {"type", "name", "contents", "bom-ref"})
        )
        if dataset.key not in self.read.nodes:
            self.read.nodes[dataset.key] = dataset
            self.read.aliases[dataset.key] = dataset.key
        return dataset.key


def _components(document: Mapping[str, Any]) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    metadata = _mapping(document.get("metadata"), "metadata")
    if metadata.get("component") is not None:
        found.append(("metadata.component", metadata["component"]))
    components = _list(document.get("components"), "components")
    limits.check_count(len(components), limits.MAX_BOM_COMPONENTS, what="components")
    found.extend((f"components[{i}]", c) for i, c in enumerate(components))
    return found


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
