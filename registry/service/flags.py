"""Flagging compromise, withdrawing flags, clearing inherited infections, and status."""

from __future__ import annotations

from sqlmodel import Session, col, select

from lineage import Status
from registry.errors import Conflict, InvalidInput, PolicyViolation
from registry.identity import Actor
from registry.schemas import (
    FlagPublic,
    InfectionSource,
    StatusChange,
    StatusReport,
)
from registry.service import audit, policy
from registry.service._tx import mutation
from registry.service.authorization import Operation, authorize, authorize_model
from registry.service.exposure import pulls_below
from registry.service.graph import ancestor_rows, descendant_rows, names_of
from registry.service.queries import affected_deployments, entries_for
from registry.service.refs import ref_of, resolve
from registry.service.replays import current_replays
from registry.service.scans import latest_scan_json
from registry.service.status import (
    Change,
    infect_from_closure,
    recompute,
    refresh_one,
    withdraw_source,
)
from registry.service.triggers import attach_trigger
from registry.tables import Artifact, Clearance, Flag, Infection
from registry.vocabulary import Finding, Kind


@mutation
def flag(
    session: Session, ref: str, *, actor: Actor, reason: str, trigger: bytes | None = None
) -> StatusChange:
    """Mark a model or dataset compromised; every descendant becomes infected.

    ``trigger`` is the backdoor trigger an advisory gives (``.npz`` of mask and
    pattern), stored with the model in the same transaction for ``mbom replay``.
    """
    authorize(actor, Operation.FLAG)
    _need_reason(reason, "flag")
    artifact = resolve(session, ref)
    if _active_flag(session, artifact) is not None:
        raise Conflict(
            f"{ref_of(artifact)} is flagged already", hint=f"see mbom status {ref_of(artifact)}"
        )
    if trigger is not None and artifact.kind != Kind.MODEL:
        raise InvalidInput(f"{ref_of(artifact)} is a dataset: a backdoor trigger goes with a model")
    changes = mark_compromised(session, artifact, actor=actor, reason=reason, vouched=True)
    if trigger is not None:
        attach_trigger(session, ref_of(artifact), actor=actor, data=trigger)
    audit.record(
        session,
        actor=actor,
        operation="flag",
        subject=ref_of(artifact),
        details={"kind": artifact.kind, "reason": reason, "changed": len(changes)},
    )
    return _change_report(session, artifact, changes)


def mark_compromised(
    session: Session, artifact: Artifact, *, actor: Actor, reason: str, vouched: bool
) -> list[Change]:
    """Record an active flag, block the model everywhere, and propagate (no role check).

    ``vouched`` says the registry stands behind the finding: an admin flagged it,
    or a scan the registry ran itself found it. Then artifacts registered earlier
    with the same files (the same digest, under another name) are flagged too:
    content known to be malicious is malicious under any name (see
    :mod:`registry.service.admission` for what registers later). A client's own
    report compromises only the model it came with, so that nobody can flag
    another team's model by registering a copy of it with a forged verdict.
    """
    session.add(
        Flag(
            artifact_id=artifact.id or 0,
            reason=reason,
            actor=actor.user,
            previous_finding=artifact.finding,
            vouched=vouched,
        )
    )
    artifact.finding = Finding.COMPROMISED
    if artifact.kind == Kind.MODEL:
        policy.block_everywhere(
            session, artifact=artifact, reason=f"flagged: {reason}", actor=actor
        )
    session.flush()
    if artifact.kind == Kind.MODEL:
        changes = infect_from_closure(session, artifact)
    else:
        changes = recompute(session, [artifact.id or 0])
    # The twins' own changes are not ``artifact``'s blast radius (no lineage path leads
    # there); each twin carries its own flag and audit event.
    if vouched:
        _flag_content_twins(session, artifact, actor=actor)
    return changes


def _flag_content_twins(session: Session, artifact: Artifact, *, actor: Actor) -> None:
    """Flag the registered artifacts holding exactly ``artifact``'s files (its digest)."""
    if not artifact.digest:
        return
    twins = session.exec(
        select(Artifact)
        .where(
            Artifact.digest == artifact.digest,
            Artifact.kind == artifact.kind,
            Artifact.id != artifact.id,
            col(Artifact.placeholder).is_(False),
        )
        .order_by(col(Artifact.id))
    ).all()
    for twin in twins:
        if twin.finding == Finding.COMPROMISED:  # flagged already (or just now, by a twin)
            continue
        why = f"its files are those of quarantined {ref_of(artifact)} ({artifact.digest})"
        quarantine_known(session, twin, actor=actor, why=why)


def quarantine_known(session: Session, artifact: Artifact, *, actor: Actor, why: str) -> None:
    """Flag ``artifact`` as known malicious content (``why`` names the original), audited."""
    reason = f"known malicious content: {why}"
    mark_compromised(session, artifact, actor=actor, reason=reason, vouched=False)
    audit.record(
        session,
        actor=actor,
        operation="flag.known_content",
        subject=ref_of(artifact),
        details={"reason": reason, "digest": artifact.digest},
    )


@mutation
def unflag(session: Session, ref: str, *, actor: Actor, reason: str) -> StatusChange:
    """Withdraw a flag (a false positive); descendants are recomputed."""
    authorize(actor, Operation.UNFLAG)
    _need_reason(reason, "unflag")
    artifact = resolve(session, ref)
    active = _active_flag(session, artifact)
    if active is None:
        raise InvalidInput(f"{ref_of(artifact)} is not flagged", hint="see mbom status")
    active.active = False
    active.resolved_by, active.resolution = actor.user, reason
    artifact.finding = active.previous_finding
    policy.lift_flag_blocks(session, artifact=artifact)
    # A later compromise of the same source is a new incident: old clearances do not carry over.
    for clearance in session.exec(
        select(Clearance).where(Clearance.source_id == artifact.id, Clearance.active)
    ):
        clearance.active = False
    session.flush()
    if artifact.kind == Kind.MODEL:
        changes = withdraw_source(session, artifact)
    else:
        changes = recompute(session, [artifact.id or 0])
    audit.record(
        session,
        actor=actor,
        operation="unflag",
        subject=ref_of(artifact),
        details={"reason": reason, "changed": len(changes)},
    )
    return _change_report(session, artifact, changes)


@mutation
def clear(session: Session, ref: str, *, actor: Actor, reason: str) -> StatusChange:
    """Record an approver's clearance of every infection currently reaching a model."""
    artifact = resolve(session, ref)
    authorize_model(session, actor, Operation.CLEAR, artifact=artifact)
    _need_reason(reason, "clear")
    if artifact.status not in (Status.INFECTED.value, Status.CLEARED.value):
        raise PolicyViolation(
            f"{ref_of(artifact)} is {artifact.status}; only an inherited infection can be cleared",
            hint="a compromised artifact is unflagged, not cleared",
        )
    sources = session.exec(
        select(Infection.source_id).where(Infection.artifact_id == artifact.id)
    ).all()
    cleared = set(
        session.exec(
            select(Clearance.source_id).where(
                Clearance.artifact_id == artifact.id, Clearance.active
            )
        )
    )
    for source in sorted(set(sources) - cleared):
        session.add(
            Clearance(
                artifact_id=artifact.id or 0, source_id=source, reason=reason, actor=actor.user
            )
        )
    session.flush()
    changes = refresh_one(session, artifact.id or 0)  # a clearance never reaches further
    names = names_of(session, sources)
    audit.record(
        session,
        actor=actor,
        operation="clear",
        subject=ref_of(artifact),
        details={"reason": reason, "sources": sorted(ref_of(names[s]) for s in sources)},
    )
    return _change_report(session, artifact, changes)


def status_report(session: Session, ref: str) -> StatusReport:
    """Own finding, effective status, and every compromised ancestor with its path."""
    artifact = resolve(session, ref)
    flags = session.exec(
        select(Flag).where(Flag.artifact_id == artifact.id).order_by(col(Flag.id))
    ).all()
    pulled_by, pulls = pulls_below(session, artifact, limit=STATUS_PULLS)
    return StatusReport(
        ref=ref_of(artifact),
        kind=artifact.kind,
        finding=artifact.finding,
        status=artifact.status,
        flags=[_flag_public(artifact, f) for f in flags],
        scan=latest_scan_json(session, artifact, "static"),
        behavioral_scan=latest_scan_json(session, artifact, "behavioral"),
        sources=infection_sources(session, artifact),
        stored=artifact.stored,
        pulls=pulls,
        pulled_by=pulled_by,
    )


def infection_sources(session: Session, artifact: Artifact) -> list[InfectionSource]:
    """The compromised sources reaching an artifact, nearest first, with paths."""
    reaches = session.exec(select(Infection).where(Infection.artifact_id == artifact.id)).all()
    if not reaches:
        return []
    ancestors = list(ancestor_rows(session, artifact.id or 0))
    rows = session.exec(
        select(Infection).where(
            col(Infection.source_id).in_([r.source_id for r in reaches]),
            col(Infection.artifact_id).in_(ancestors),
        )
    ).all()
    via = {(r.artifact_id, r.source_id): r.via_id for r in [*rows, *reaches]}
    cleared = set(
        session.exec(
            select(Clearance.source_id).where(
                Clearance.artifact_id == artifact.id, Clearance.active
            )
        )
    )
    known = names_of(session, ancestors)
    replays = {r.source: r for r in current_replays(session, artifact=artifact.id)}
    found = []
    for reach in sorted(reaches, key=lambda r: (r.depth, r.source_id)):
        path = [artifact.id or 0]
        while path[-1] != reach.source_id:
            path.append(via[(path[-1], reach.source_id)])
        source = known[reach.source_id]
        found.append(
            InfectionSource(
                source=ref_of(source),
                source_kind=source.kind,
                depth=reach.depth,
                path=[ref_of(known[n]) if n in known else ref_of(artifact) for n in reversed(path)],
                reasons=_active_reasons(session, reach.source_id),
                cleared=reach.source_id in cleared,
                replay=replays.get(ref_of(source)),
            )
        )
    return found


#: How many changed descendants a flag, unflag or clearance lists (nearest first);
#: ``changed_total`` counts them all. Listing 20k entries with paths costs seconds.
REPORT_LIMIT = 1000
#: The newest pulls a status report lists (``pulls`` counts them all).
STATUS_PULLS = 20


def _change_report(session: Session, artifact: Artifact, changes: list[Change]) -> StatusChange:
    session.refresh(artifact)
    moved = [c for c in changes if c.artifact_id != artifact.id]
    if any(c.depth is None for c in moved):
        depths = descendant_rows(session, artifact.id or 0)
        moved = [Change(c.artifact_id, c.before, c.after, depths[c.artifact_id][0]) for c in moved]
    moved.sort(key=lambda c: (c.depth or 0, c.artifact_id))
    return StatusChange(
        ref=ref_of(artifact),
        status=artifact.status,
        changed=entries_for(session, artifact, [c.artifact_id for c in moved[:REPORT_LIMIT]]),
        changed_total=len(moved),
        deployments=affected_deployments(session, artifact),
    )


def _active_flag(session: Session, artifact: Artifact) -> Flag | None:
    return session.exec(select(Flag).where(Flag.artifact_id == artifact.id, Flag.active)).first()


def _active_reasons(session: Session, artifact_id: int) -> list[str]:
    return list(
        session.exec(select(Flag.reason).where(Flag.artifact_id == artifact_id, Flag.active))
    )


def _flag_public(artifact: Artifact, row: Flag) -> FlagPublic:
    return FlagPublic(
        id=row.id or 0,
        ref=ref_of(artifact),
        reason=row.reason,
        actor=row.actor,
        active=row.active,
        created_at=row.created_at,
        resolved_by=row.resolved_by,
        resolution=row.resolution,
    )


def _need_reason(reason: str, verb: str) -> None:
    if not reason.strip():
        raise InvalidInput(f"{verb} needs a --reason", hint="say why, for the audit log")
