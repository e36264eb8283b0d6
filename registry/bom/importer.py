"""CycloneDX ML-BOM import: register the models, datasets and pedigree of a document.

Components whose files are listed (nested ``file`` components with a SHA-256 and
an ``mbom:size``) are registered with their manifest; the others become
placeholders (``placeholder=True``, no manifest) that a later registration can
fill. Components already registered with the same digest are reused, so an
import is idempotent. Flags and statuses in the document are not imported: the
receiving registry's own findings decide (statuses are recomputed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from lineage import MODEL_RELATIONS, Relation
from registry.errors import InvalidInput
from registry.identity import Actor
from registry.manifest import Manifest, ManifestEntry
from registry.service import admission, audit, placeholders, policy
from registry.service._tx import mutation
from registry.service.authorization import Operation, authorize, authorize_model
from registry.service.graph import add_edges
from registry.service.refs import check_name, ref_of
from registry.service.status import recompute
from registry.tables import Artifact, Edge

_KINDS = {"machine-learning-model": "model", "data": "dataset"}
PROP = "mbom:"


@dataclass
class _Node:
    """One model or dataset component as read from the document."""

    where: str
    kind: str
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
        return f"{self.kind}:{self.name}@{self.version}"


@mutation
def import_cyclonedx(
    session: Session, document: Mapping[str, Any], *, actor: Actor, team: str | None = None
) -> list[str]:
    """Register what a CycloneDX ML-BOM describes; the refs newly registered or filled.

    The import acts for ``team`` (by default the importer's own team, if its token
    has one): the models it registers with files are registered for that team and
    meet the registration policy as ``register_model`` does (tainted, blocked or
    unapproved parents refuse the whole import); new pedigree edges into a model
    registered before need the right to change that model's lineage and meet its
    team's policy as ``add_parents`` does (see :mod:`registry.service.authorization`).

    Raises :class:`~registry.errors.InvalidInput` naming the field when the
    document is not a CycloneDX BOM this registry can read, and when a component
    is already registered with other content.
    """
    team = team if team is not None else actor.team
    authorize(actor, Operation.IMPORT_BOM, team=team)
    policy.require_team(session, team)
    nodes, aliases = _read_document(document)
    stored = {key: _store(session, node, actor=actor, team=team) for key, node in nodes.items()}
    admission.quarantine_known_content(
        session, [artifact for artifact, new in stored.values() if new], actor=actor
    )
    changed = [key for key, (_, new) in stored.items() if new]
    for key, node in nodes.items():
        _link(session, stored[key], node, stored, aliases, actor=actor)
    recompute(session, [artifact.id or 0 for artifact, _ in stored.values()])
    for key in changed:  # after recompute: a parent's status now includes this document's edges
        _check_registration(session, stored[key][0], actor=actor, team=team)
    return sorted(ref_of(stored[key][0]) for key in changed)


def _read_document(document: Mapping[str, Any]) -> tuple[dict[str, _Node], dict[str, str]]:
    if not isinstance(document, Mapping) or document.get("bomFormat") != "CycloneDX":
        raise InvalidInput("bomFormat is not 'CycloneDX'", hint="give a CycloneDX JSON document")
    if not str(document.get("specVersion", "")).startswith("1."):
        raise InvalidInput("specVersion is missing or not 1.x", hint="export CycloneDX 1.5 or 1.6")
    found: list[tuple[str, Mapping[str, Any]]] = []
    metadata = document.get("metadata") or {}
    if isinstance(metadata, Mapping) and metadata.get("component") is not None:
        found.append(("metadata.component", metadata["component"]))
    components = document.get("components") or []
    if not isinstance(components, list):
        raise InvalidInput("components is not a list")
    found.extend((f"components[{i}]", c) for i, c in enumerate(components))
    nodes: dict[str, _Node] = {}
    aliases: dict[str, str] = {}  # bom-ref -> node key
    for where, component in found:
        node = _read_component(where, component)
        if node is None:
            continue
        if node.key in nodes:
            raise InvalidInput(f"{where} repeats {node.key}", hint="list each version once")
        nodes[node.key] = node
        aliases[node.key] = node.key
        if isinstance(component.get("bom-ref"), str):
            aliases[component["bom-ref"]] = node.key
    if not nodes:
        raise InvalidInput("the document describes no model or dataset component")
    return nodes, aliases


def _read_component(where: str, component: Any) -> _Node | None:
    if not isinstance(component, Mapping):
        raise InvalidInput(f"{where} is not an object")
    kind = _KINDS.get(str(component.get("type")))
    if kind is None:
        return None  # libraries, files, services: not lineage
    name, version = _text(component, "name", where), _text(component, "version", where)
    try:
        check_name(name, version)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}.name/version: {exc.message}", hint=exc.hint) from exc
    props = _properties(component, where)
    publisher = (component.get("supplier") or {}).get("name")
    node = _Node(
        where=where,
        kind=kind,
        name=name,
        version=version,
        digest=_sha256(component.get("hashes"), f"{where}.hashes"),
        manifest=_manifest(component.get("components"), where),
        publisher=publisher if isinstance(publisher, str) else None,
        source=_source(component),
        format=props.get(PROP + "format"),
    )
    if node.manifest is not None:
        if node.digest is not None and node.digest != node.manifest.digest:
            raise InvalidInput(
                f"{where}.hashes: the SHA-256 {node.digest} is not the digest of its files "
                f"({node.manifest.digest})",
                hint="the file list or the component hash was altered",
            )
        node.digest = node.manifest.digest
    node.parents = _pedigree(component, where)
    node.datasets = _datasets(component, where)
    return node


def _text(component: Mapping[str, Any], key: str, where: str) -> str:
    value = component.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}.{key} is missing", hint="every model and dataset needs one")
    return value


def _properties(component: Mapping[str, Any], where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for i, prop in enumerate(component.get("properties") or []):
        if not isinstance(prop, Mapping) or not isinstance(prop.get("name"), str):
            raise InvalidInput(f"{where}.properties[{i}] has no name")
        found.setdefault(prop["name"], str(prop.get("value", "")))
    return found


def _sha256(hashes: Any, where: str) -> str | None:
    for i, entry in enumerate(hashes or []):
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"{where}[{i}] is not an object")
        if entry.get("alg") == "SHA-256":
            content = str(entry.get("content", "")).lower()
            if len(content) != 64 or any(c not in "0123456789abcdef" for c in content):
                raise InvalidInput(f"{where}[{i}].content is not a SHA-256 hex digest")
            return "sha256:" + content
    return None


def _manifest(files: Any, where: str) -> Manifest | None:
    entries = []
    for i, file in enumerate(files or []):
        if not isinstance(file, Mapping) or file.get("type") != "file":
            continue
        at = f"{where}.components[{i}]"
        digest = _sha256(file.get("hashes"), f"{at}.hashes")
        size = _properties(file, at).get(PROP + "size")
        if digest is None or size is None or not size.isdigit():
            return None  # a file we cannot pin down: the component stays a placeholder
        entries.append(ManifestEntry(_text(file, "name", at), int(size), digest[len("sha256:") :]))
    return Manifest(tuple(sorted(entries, key=lambda e: e.path))) if entries else None


def _source(component: Mapping[str, Any]) -> str | None:
    for ref in component.get("externalReferences") or []:
        if isinstance(ref, Mapping) and isinstance(ref.get("url"), str):
            return str(ref["url"])
    return None


def _pedigree(component: Mapping[str, Any], where: str) -> list[tuple[str, str | None]]:
    ancestors = (component.get("pedigree") or {}).get("ancestors") or []
    parents: list[tuple[str, str | None]] = []
    for i, ancestor in enumerate(ancestors):
        at = f"{where}.pedigree.ancestors[{i}]"
        if not isinstance(ancestor, Mapping):
            raise InvalidInput(f"{at} is not an object")
        props = _properties(ancestor, at)
        kind = _KINDS.get(str(ancestor.get("type")), "model")
        default = f"{kind}:{_text(ancestor, 'name', at)}@{_text(ancestor, 'version', at)}"
        parents.append((props.get(PROP + "ref", default), props.get(PROP + "relation")))
    return parents


def _datasets(component: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    card = component.get("modelCard") or {}
    uses = {v: k.removeprefix(PROP + "dataset:") for k, v in _uses(card, where)}
    refs = ((card.get("modelParameters") or {}).get("datasets")) or []
    found = []
    for i, entry in enumerate(refs):
        if isinstance(entry, Mapping) and isinstance(entry.get("ref"), str):
            found.append((entry["ref"], uses.get(entry["ref"], Relation.TRAINED_ON.value)))
        elif not isinstance(entry, Mapping):
            raise InvalidInput(f"{where}.modelCard.modelParameters.datasets[{i}] is not an object")
    return found


def _uses(card: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    props = _properties(card, f"{where}.modelCard") if isinstance(card, Mapping) else {}
    return [(k, v) for k, v in props.items() if k.startswith(PROP + "dataset:")]


def _store(
    session: Session, node: _Node, *, actor: Actor, team: str | None
) -> tuple[Artifact, bool]:
    existing = session.exec(
        select(Artifact).where(
            Artifact.kind == node.kind, Artifact.name == node.name, Artifact.version == node.version
        )
    ).first()
    if existing is not None:
        return existing, _reconcile(session, existing, node, actor=actor, team=team)
    if _unknown_files(node):
        artifact = placeholders.create(
            session,
            actor=actor,
            kind=node.kind,
            name=node.name,
            version=node.version,
            via=f"bom.import {node.where}",
            source=node.source,
            digest=node.digest,
            publisher=node.publisher,
            format=node.format,
        )
        return artifact, True
    artifact = _artifact(node, actor=actor, team=team)
    session.add(artifact)
    session.flush()
    _audit(session, artifact, node, actor=actor, operation="bom.import")
    return artifact, True


def _unknown_files(node: _Node) -> bool:
    """Whether only a placeholder can be recorded (a dataset needs a digest, a model files)."""
    return node.digest is None if node.kind == "dataset" else node.manifest is None


def _artifact(node: _Node, *, actor: Actor, team: str | None) -> Artifact:
    manifest = node.manifest
    return Artifact(
        team=team if node.kind == "model" else None,
        kind=node.kind,
        name=node.name,
        version=node.version,
        publisher=node.publisher,
        source=node.source,
        format=node.format,
        digest=node.digest,
        manifest=[[e.path, e.size, e.sha256] for e in manifest.entries] if manifest else None,
        total_size=manifest.total_size if manifest else None,
        created_by=actor.user,
    )


def _reconcile(
    session: Session, existing: Artifact, node: _Node, *, actor: Actor, team: str | None
) -> bool:
    """Reuse a registered artifact; fill it when it is a placeholder and we know more."""
    if existing.placeholder and not _unknown_files(node):
        try:
            filled = _artifact(node, actor=actor, team=team)
            placeholders.fill(session, existing, filled, actor=actor)
        except InvalidInput as exc:
            raise InvalidInput(f"{node.where}: {exc.message}", hint=exc.hint) from exc
        return True
    if node.digest is not None and existing.digest not in (None, node.digest):
        raise InvalidInput(
            f"{node.where}: {ref_of(existing)} is registered with digest {existing.digest}, "
            f"the document says {node.digest}",
            hint="versions are immutable; import it under another version",
        )
    return False


def _link(
    session: Session,
    child_stored: tuple[Artifact, bool],
    node: _Node,
    stored: Mapping[str, tuple[Artifact, bool]],
    aliases: Mapping[str, str],
    *,
    actor: Actor,
) -> None:
    child, registered_here = child_stored
    wanted = _wanted_links(node, stored, aliases)
    known = set(session.exec(select(Edge.parent_id).where(Edge.child_id == child.id)))
    new = [(parent, rel) for parent, rel in wanted if parent.id not in known]
    if not new:
        return
    if not registered_here:  # new edges into a model registered before: add_parents' rules
        authorize_model(session, actor, Operation.CHANGE_LINEAGE, artifact=child)
        policy.refuse_lineage(session, child=child, parents=new)
    add_edges(session, child, new)
    audit.record(
        session,
        actor=actor,
        operation="lineage.add",
        subject=ref_of(child),
        details={"parents": [[ref_of(p), r.value] for p, r in new], "via": "bom.import"},
    )


def _check_registration(
    session: Session, artifact: Artifact, *, actor: Actor, team: str | None
) -> None:
    """A model registered with files here meets the registration policy over all its parents."""
    if artifact.kind != "model" or artifact.placeholder:
        return
    policy.enforce(
        session,
        actor=actor,
        violations=policy.registration_violations(
            session, team=team, parents=policy.links_of(session, artifact)
        ),
        override=None,
        team=team,
        subject=ref_of(artifact),
    )


def _wanted_links(
    node: _Node, stored: Mapping[str, tuple[Artifact, bool]], aliases: Mapping[str, str]
) -> list[tuple[Artifact, Relation]]:
    models = [(key, rel) for key, rel in node.parents if not key.startswith("dataset:")]
    default = Relation.MERGE if len(models) > 1 else Relation.FINETUNE
    links: list[tuple[Artifact, Relation]] = []
    for key, rel in node.parents:
        if key.startswith("dataset:"):
            links.append((_target(key, node, stored, aliases), _relation(rel, node, dataset=True)))
        else:
            relation = _relation(rel, node, dataset=False) if rel else default
            links.append((_target(key, node, stored, aliases), relation))
    seen = {artifact.id for artifact, _ in links}
    for ref, use in node.datasets:
        target = _target(ref, node, stored, aliases)
        if target.id not in seen:
            seen.add(target.id)
            links.append((target, _relation(use, node, dataset=True)))
    return links


def _target(
    ref: str, node: _Node, stored: Mapping[str, tuple[Artifact, bool]], aliases: Mapping[str, str]
) -> Artifact:
    key = aliases.get(ref)
    if key is None or key not in stored:
        raise InvalidInput(
            f"{node.where} refers to {ref}, which the document does not describe",
            hint="list every ancestor and dataset as a component",
        )
    return stored[key][0]


def _relation(value: str | None, node: _Node, *, dataset: bool) -> Relation:
    try:
        relation = Relation(value or (Relation.TRAINED_ON if dataset else Relation.FINETUNE))
    except ValueError as exc:
        raise InvalidInput(
            f"{node.where}: unknown relation {value!r}",
            hint=f"use one of {', '.join(r.value for r in Relation)}",
        ) from exc
    if dataset != relation.is_dataset_use or (not dataset and relation not in MODEL_RELATIONS):
        raise InvalidInput(f"{node.where}: {relation} does not fit that edge")
    return relation


def _audit(
    session: Session, artifact: Artifact, node: _Node, *, actor: Actor, operation: str
) -> None:
    audit.record(
        session,
        actor=actor,
        operation=operation,
        subject=ref_of(artifact),
        details={
            "kind": artifact.kind,
            "digest": artifact.digest,
            "placeholder": artifact.placeholder,
            "component": node.where,
        },
    )
