"""CycloneDX ML-BOM import: register the models, datasets and pedigree of a document.

Components whose files are listed (nested ``file`` components with a SHA-256 and
an ``mbom:size``) are registered with their manifest; the others become
placeholders (``placeholder=True``, no manifest) that a later registration can
fill. Components already registered with the same digest are reused, so an
import is idempotent. Flags and statuses in the document are not imported: the
receiving registry's own findings decide (statuses are recomputed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlmodel import Session, select

from lineage import MODEL_RELATIONS, Relation
from registry.bom._bulk import import_new
from registry.bom.reader import Node as _Node
from registry.bom.reader import read_document as _read_document
from registry.errors import InvalidInput
from registry.identity import Actor, Role
from registry.service import audit, placeholders
from registry.service._tx import mutation
from registry.service.graph import add_edges
from registry.service.refs import ref_of
from registry.service.status import recompute
from registry.tables import Artifact, Edge


@mutation
def import_cyclonedx(session: Session, document: Mapping[str, Any], *, actor: Actor) -> list[str]:
    """Register what a CycloneDX ML-BOM describes; the refs newly registered or filled.

    Raises :class:`~registry.errors.InvalidInput` naming the field when the
    document is not a CycloneDX BOM this registry can read, and when a component
    is already registered with other content.
    """
    actor.require(Role.PUBLISHER, action="import bills of materials")
    nodes, aliases = _read_document(document)
    bulk = import_new(
        session, nodes, aliases, actor=actor, fields=_new_fields(actor), links_of=_wanted_links
    )
    if bulk is not None:  # nothing was registered yet: set-based, statuses all clean
        return bulk
    stored = {key: _store(session, node, actor=actor) for key, node in nodes.items()}
    changed = [key for key, (_, new) in stored.items() if new]
    for key, node in nodes.items():
        _link(session, stored[key][0], node, stored, aliases, actor=actor)
    recompute(session, [artifact.id or 0 for artifact, _ in stored.values()])
    return sorted(ref_of(stored[key][0]) for key in changed)


def _store(session: Session, node: _Node, *, actor: Actor) -> tuple[Artifact, bool]:
    existing = session.exec(
        select(Artifact).where(
            Artifact.kind == node.kind, Artifact.name == node.name, Artifact.version == node.version
        )
    ).first()
    if existing is not None:
        return existing, _reconcile(session, existing, node, actor=actor)
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
    artifact = _artifact(node, actor=actor)
    session.add(artifact)
    session.flush()
    _audit(session, artifact, node, actor=actor, operation="bom.import")
    return artifact, True


def _new_fields(actor: Actor) -> Callable[[_Node], dict[str, Any]]:
    """The columns :func:`_store` gives a node not yet registered (a placeholder or not)."""

    def fields(node: _Node) -> dict[str, Any]:
        if not _unknown_files(node):
            return _fields(node, actor=actor)
        return {
            "kind": node.kind,
            "name": node.name,
            "version": node.version,
            "source": node.source,
            "digest": node.digest,
            "publisher": node.publisher,
            "format": node.format,
            "placeholder": True,
            "created_by": actor.user,
        }

    return fields


def _unknown_files(node: _Node) -> bool:
    """Whether only a placeholder can be recorded (a dataset needs a digest, a model files)."""
    return node.digest is None if node.kind == "dataset" else node.manifest is None


def _artifact(node: _Node, *, actor: Actor) -> Artifact:
    return Artifact(**_fields(node, actor=actor))


def _fields(node: _Node, *, actor: Actor) -> dict[str, Any]:
    manifest = node.manifest
    return {
        "kind": node.kind,
        "name": node.name,
        "version": node.version,
        "publisher": node.publisher,
        "source": node.source,
        "format": node.format,
        "digest": node.digest,
        "manifest": [[e.path, e.size, e.sha256] for e in manifest.entries] if manifest else None,
        "total_size": manifest.total_size if manifest else None,
        "created_by": actor.user,
    }


def _reconcile(session: Session, existing: Artifact, node: _Node, *, actor: Actor) -> bool:
    """Reuse a registered artifact; fill it when it is a placeholder and we know more."""
    if existing.placeholder and not _unknown_files(node):
        try:
            placeholders.fill(session, existing, _artifact(node, actor=actor), actor=actor)
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
    child: Artifact,
    node: _Node,
    stored: Mapping[str, tuple[Artifact, bool]],
    aliases: Mapping[str, str],
    *,
    actor: Actor,
) -> None:
    wanted = _wanted_links(node, stored, aliases)
    known = set(session.exec(select(Edge.parent_id).where(Edge.child_id == child.id)))
    new = [(parent, rel) for parent, rel in wanted if parent.id not in known]
    if not new:
        return
    add_edges(session, child, new)
    audit.record(
        session,
        actor=actor,
        operation="lineage.add",
        subject=ref_of(child),
        details={"parents": [[ref_of(p), r.value] for p, r in new], "via": "bom.import"},
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
