"""Registering a Hugging Face snapshot with the lineage its model card declares."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from lineage import Relation
from registry.hf import HubRef, ImportPlan
from registry.identity import Actor
from registry.manifest import Manifest
from registry.schemas import HfImportResult, HfLink, ScanProvenance
from registry.service import audit, placeholders
from registry.service._tx import mutation
from registry.service.artifacts import register_model
from registry.service.authorization import Operation, authorize
from registry.service.refs import ref_of
from registry.tables import Artifact
from registry.vocabulary import Kind
from scanning.behavioral.report import BehavioralReport, ScanProfile
from scanning.report import ScanReport

__all__ = ["import_hf"]


@mutation
def import_hf(
    session: Session,
    plan: ImportPlan,
    *,
    actor: Actor,
    manifest: Manifest,
    scan: ScanReport | None = None,
    team: str | None = None,
    publisher: str | None = None,
    allow_duplicate_content: bool = False,
    override: str | None = None,
    profile: ScanProfile | None = None,
    behavioral: BehavioralReport | None = None,
    provenance: ScanProvenance = ScanProvenance.CLIENT,
    stored: bool = False,
) -> HfImportResult:
    """Register the snapshot ``plan`` describes, with its bases and datasets, in one transaction.

    Each base model and dataset the card names is linked to a registered
    version of that name (the newest whose source is that Hub repository, else
    the newest; :attr:`HfLink.note` says which when there are several), or to a
    placeholder created here (``name@unpinned``, source ``hf://…``). The model
    then registers as ``register_model`` does — admission scan, policy,
    duplicate checks — and fills a placeholder that stood for it (see
    :mod:`registry.service.placeholders`).
    """
    authorize(actor, Operation.IMPORT_HF, team=team)
    filled = placeholders.claim(
        session, kind=Kind.MODEL, name=plan.repo_id, version=plan.version, source=plan.source
    )
    filled_ref = ref_of(filled) if filled is not None else None
    via = f"hf.import {plan.ref}"
    relation = plan.relation  # None exactly when there are no bases (ImportPlan checks)
    links = (
        []
        if relation is None
        else [_link(session, base, relation, actor=actor, via=via) for base in plan.bases]
    )
    links += [
        _link(session, dataset, Relation.TRAINED_ON, actor=actor, via=via)
        for dataset in plan.datasets
    ]
    model = register_model(
        session,
        actor=actor,
        name=plan.repo_id,
        version=plan.version,
        manifest=manifest,
        parents=[link.ref for link in links if link.kind == Kind.MODEL],
        relation=plan.relation,
        datasets=[(link.ref, Relation.TRAINED_ON) for link in links if link.kind == Kind.DATASET],
        publisher=publisher,
        source=plan.source,
        format=plan.format,
        team=team,
        allow_duplicate_content=allow_duplicate_content,
        override=override,
        scan=scan,
        profile=profile,
        behavioral=behavioral,
        provenance=provenance,
        stored=stored,
    )
    _audit(session, plan, model.ref, links, filled_ref, actor=actor)
    return HfImportResult(
        model=model,
        revision=plan.revision,
        commit=plan.commit,
        relation=plan.relation,
        relation_basis=plan.relation_basis,
        links=links,
        filled_placeholder=filled_ref,
        license=plan.license,
        pipeline_tag=plan.pipeline_tag,
        warnings=list(plan.warnings),
    )


def registered_bases(session: Session, plan: ImportPlan) -> list[str]:
    """The registered model versions the card's bases stand for (read only; none created).

    What an import of ``plan`` will link as parents, where they exist already: the
    admission scan of a stored snapshot inherits a behavioral profile through them.
    """
    found = []
    for hub in plan.bases:
        versions = _registered(session, hub)
        if versions and hub.kind == Kind.MODEL:
            found.append(ref_of(_choose(hub, versions)[0]))
    return found


def _registered(session: Session, hub: HubRef) -> list[Artifact]:
    """The registered versions of a card's reference (of its revision, when it names one)."""
    versions = session.exec(
        select(Artifact)
        .where(Artifact.kind == hub.kind, Artifact.name == hub.repo_id)
        .order_by(col(Artifact.id))
    ).all()
    return [a for a in versions if hub.revision is None or a.version == hub.revision]


def _link(session: Session, hub: HubRef, relation: Relation, *, actor: Actor, via: str) -> HfLink:
    """The registered artifact a card's reference stands for, created as a placeholder if new."""
    versions = _registered(session, hub)
    if not versions:
        created = placeholders.create(
            session,
            actor=actor,
            kind=hub.kind,
            name=hub.repo_id,
            version=hub.version,
            via=via,
            source=hub.source,
        )
        return HfLink(
            repo_id=hub.repo_id, kind=hub.kind, ref=ref_of(created), relation=relation, created=True
        )
    chosen, note = _choose(hub, versions)
    return HfLink(
        repo_id=hub.repo_id, kind=hub.kind, ref=ref_of(chosen), relation=relation, note=note
    )


def _choose(hub: HubRef, versions: Sequence[Artifact]) -> tuple[Artifact, str | None]:
    """The version a card means: from that Hub repository if any, filled first, then newest."""
    from_hub = [a for a in versions if hub.same_repo(HubRef.from_source(a.source))]
    pool = from_hub or list(versions)
    chosen = max(pool, key=lambda artifact: (not artifact.placeholder, artifact.id or 0))
    if len(versions) == 1:
        return chosen, None
    why = f"the newest whose source is {hub.source}" if from_hub else "the newest"
    count = len(versions)
    return (
        chosen,
        f"{count} versions of {hub.repo_id} are registered: linked {ref_of(chosen)} ({why})",
    )


def _audit(
    session: Session,
    plan: ImportPlan,
    subject: str,
    links: Sequence[HfLink],
    filled: str | None,
    *,
    actor: Actor,
) -> None:
    audit.record(
        session,
        actor=actor,
        operation="hf.import",
        subject=subject,
        details={
            "revision": plan.revision,
            "commit": plan.commit,
            "relation": plan.relation.value if plan.relation else None,
            "relation_basis": plan.relation_basis,
            "links": [[link.ref, link.relation, link.created] for link in links],
            "filled_placeholder": filled,
            "license": plan.license,
            "pipeline_tag": plan.pipeline_tag,
        },
    )
