"""CycloneDX ML-BOM import: register the models, datasets, lineage and compromise of a document.

Components whose files are listed (nested ``file`` components with a SHA-256 and
an ``mbom:size``) are registered with their manifest; the others become
placeholders (``placeholder=True``, no manifest) that a later registration can
fill. Components already registered with the same digest are reused, so an
import is idempotent. Lineage comes from ``pedigree``, the modelCard's datasets
and ``dependencies`` (see :mod:`registry.bom.reader` and :mod:`registry.bom._links`).

Compromise the document reports (``vulnerabilities``, ``mbom:finding``) is
flagged here, with the document as the reason, after the registration rules
ran, and propagates to every descendant (see :mod:`registry.bom._claims` and
:mod:`registry.service.imported_flags`); clearances and statuses are not
imported: the receiving registry recomputes statuses, and only its approvers
clear. Whatever the registry cannot keep is listed in the result's warnings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from sqlmodel import Session, select

from lineage import MODEL_RELATIONS, Relation
from registry.bom._bulk import import_new
from registry.bom.reader import Document as _Document
from registry.bom.reader import Node as _Node
from registry.bom.reader import read_document as _read_document
from registry.errors import InvalidInput
from registry.identity import Actor
from registry.schemas import BomImport
from registry.service import admission, audit, placeholders, policy
from registry.service._tx import mutation
from registry.service.authorization import Operation, authorize, authorize_model
from registry.service.graph import add_edges
from registry.service.imported_flags import flag_imported
from registry.service.refs import ref_of
from registry.service.status import recompute
from registry.tables import Artifact, Edge
from registry.vocabulary import Kind

#: (artifact, registered or filled by this import, created by this import)
_Stored = tuple[Artifact, bool, bool]


@mutation
def import_cyclonedx(
    session: Session, document: Mapping[str, Any], *, actor: Actor, team: str | None = None
) -> list[str]:
    """Register what a CycloneDX ML-BOM describes; the refs newly registered or filled.

    See :func:`import_cyclonedx_report`, which also says what was flagged and
    what the registry could not keep.
    """
    return import_cyclonedx_report(session, document, actor=actor, team=team).registered


@mutation
def import_cyclonedx_report(
    session: Session, document: Mapping[str, Any], *, actor: Actor, team: str | None = None
) -> BomImport:
    """Register what a CycloneDX ML-BOM describes; what was registered, flagged and not kept.

    The import acts for ``team`` (by default the importer's own team, if its token
    has one): the models it registers with files are registered for that team and
    meet the registration policy as ``register_model`` does (tainted, blocked or
    unapproved parents refuse the whole import); new pedigree edges into a model
    registered before need the right to change that model's lineage and meet its
    team's policy as ``add_parents`` does (see :mod:`registry.service.authorization`).
    Then each component the document reports compromised is flagged (see the module).

    Raises :class:`~registry.errors.InvalidInput` naming the field when the
    document is not a CycloneDX BOM this registry can read, and when a component
    is already registered with other content.
    """
    team = team if team is not None else actor.team
    authorize(actor, Operation.IMPORT_BOM, team=team)
    policy.require_team(session, team)
    read = _read_document(document)
    nodes, aliases = read.nodes, read.aliases
    if not read.claims and _plain(session, nodes, team=team):
        bulk = import_new(
            session,
            nodes,
            aliases,
            actor=actor,
            fields=_new_fields(actor, team=team),
            links_of=_wanted_links,
        )
        if bulk is not None:  # nothing was registered yet: set-based, statuses all clean
            _record_metadata(session, nodes.values(), actor=actor)
            return BomImport(registered=bulk, warnings=read.warnings)
    stored = {key: _store(session, node, actor=actor, team=team) for key, node in nodes.items()}
    admission.quarantine_known_content(
        session, [artifact for artifact, new, _ in stored.values() if new], actor=actor
    )
    changed = [key for key, (_, new, _) in stored.items() if new]
    pairs = {key: (artifact, new) for key, (artifact, new, _) in stored.items()}
    for key, node in nodes.items():
        _link(session, pairs[key], node, pairs, aliases, actor=actor)
    recompute(session, [artifact.id or 0 for artifact, _, _ in stored.values()])
    for key in changed:  # after recompute: a parent's status now includes this document's edges
        _check_registration(session, stored[key][0], actor=actor, team=team)
    _record_metadata(session, [nodes[key] for key in changed], actor=actor)
    flagged, warnings = _flag_claims(session, read, stored, actor=actor)
    return BomImport(
        registered=sorted(ref_of(stored[key][0]) for key in changed),
        flagged=flagged,
        warnings=[*read.warnings, *warnings],
    )


def _record_metadata(session: Session, nodes: Any, *, actor: Actor) -> None:
    """Keep what no column holds (licences, purl, description) in a ``bom.metadata`` event."""
    for node in nodes:
        if node.record:
            audit.record(
                session,
                actor=actor,
                operation="bom.metadata",
                subject=node.ref,
                details={"kind": node.kind, "component": node.where, **node.record},
            )


def _flag_claims(
    session: Session, read: _Document, stored: Mapping[str, _Stored], *, actor: Actor
) -> tuple[list[str], list[str]]:
    """Flag each component the document reports compromised; (flagged refs, warnings)."""
    reasons: dict[str, list[str]] = defaultdict(list)
    where: dict[str, list[str]] = defaultdict(list)
    for claim in read.claims:
        if claim.reason not in reasons[claim.key]:
            reasons[claim.key].append(claim.reason)
        where[claim.key].append(claim.where)
    flagged, warnings = [], []
    for key in read.nodes:  # document order
        if key not in reasons:
            continue
        artifact, _, created = stored[key]
        done, warning = flag_imported(
            session,
            artifact,
            actor=actor,
            reason="; ".join(reasons[key])[:4000],
            created=created,
            via=f"bom.import {', '.join(where[key])}",
        )
        if done:
            flagged.append(ref_of(artifact))
        if warning:
            warnings.append(warning)
    return sorted(flagged), warnings


def _plain(session: Session, nodes: Mapping[str, _Node], *, team: str | None) -> bool:
    """Whether no rule can act on this document's new versions, so the bulk path may run.

    The set-based import skips the per-component checks, so it is taken only when
    none of them could refuse or flag anything: no team decision or approval duty
    names these versions, and no file or digest in it is known to be malicious.
    Otherwise the per-component path applies each rule as ``register_model`` does.
    """
    names = {node.name for node in nodes.values()}
    if policy.may_govern_new_versions(session, team=team, names=names):
        return False
    digests = {node.digest for node in nodes.values() if node.digest}
    files = {e.sha256 for node in nodes.values() if node.manifest for e in node.manifest.entries}
    return not admission.knows_malicious(session, digests=digests, file_digests=files)


def _store(session: Session, node: _Node, *, actor: Actor, team: str | None) -> _Stored:
    existing = session.exec(
        select(Artifact).where(
            Artifact.kind == node.kind, Artifact.name == node.name, Artifact.version == node.version
        )
    ).first()
    if existing is not None:
        return existing, _reconcile(session, existing, node, actor=actor, team=team), False
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
        return artifact, True, True
    artifact = _artifact(node, actor=actor, team=team)
    session.add(artifact)
    session.flush()
    _audit(session, artifact, node, actor=actor, operation="bom.import")
    return artifact, True, True


def _unknown_files(node: _Node) -> bool:
    """Whether only a placeholder can be recorded (a dataset needs a digest, a model files)."""
    return node.digest is None if node.kind == Kind.DATASET else node.manifest is None


def _new_fields(actor: Actor, *, team: str | None) -> Callable[[_Node], dict[str, Any]]:
    """The columns :func:`_store` gives a node not yet registered (a placeholder or not)."""

    def fields(node: _Node) -> dict[str, Any]:
        if not _unknown_files(node):
            return _fields(node, actor=actor, team=team)
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


def _artifact(node: _Node, *, actor: Actor, team: str | None) -> Artifact:
    return Artifact(**_fields(node, actor=actor, team=team))


def _fields(node: _Node, *, actor: Actor, team: str | None) -> dict[str, Any]:
    """A node's columns; a model with files is registered for the importing team."""
    manifest = node.manifest
    return {
        "team": team if node.kind == Kind.MODEL else None,
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
    if artifact.kind != Kind.MODEL or artifact.placeholder:
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
            hint="list every dataset a modelCard names as a component",
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
