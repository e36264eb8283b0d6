"""Digests of the state tables the audit log vouches for.

The last audit event of each transaction seals these digests (see
:mod:`registry.service.audit`); ``mbom check`` recomputes them from the
tables and names each table that changed without an audited operation —
a flag deactivated, a clearance added or a decision deleted by hand. It also
checks each artifact's stored digest against its stored manifest and against
the digest its registration event recorded, so a swapped manifest is found.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from registry.errors import InvalidInput
from registry.manifest import Manifest, ManifestEntry
from registry.tables import Artifact, AuditEvent, Clearance, Decision, Flag


def _active_flags(session: Session) -> Sequence[tuple[Any, ...]]:
    query = select(col(Flag.id), col(Flag.artifact_id), col(Flag.reason), col(Flag.vouched)).where(
        col(Flag.active)
    )
    return [tuple(row) for row in session.exec(query)]


def _active_clearances(session: Session) -> Sequence[tuple[Any, ...]]:
    query = select(col(Clearance.id), col(Clearance.artifact_id), col(Clearance.source_id)).where(
        col(Clearance.active)
    )
    return [tuple(row) for row in session.exec(query)]


def _active_decisions(session: Session) -> Sequence[tuple[Any, ...]]:
    decisions = session.exec(select(Decision).where(col(Decision.active)))
    return [(d.id, d.team, d.name, d.version, d.verdict) for d in decisions]


#: What each digest covers: the active rows of a table that decides a status or a policy.
TABLES: dict[str, Callable[[Session], Sequence[tuple[Any, ...]]]] = {
    "flags": _active_flags,
    "clearances": _active_clearances,
    "decisions": _active_decisions,
}


def state_of(session: Session) -> dict[str, Any]:
    """``{table: [active rows, sha256 of them]}`` for each table in :data:`TABLES`."""
    return {name: _digest(rows(session)) for name, rows in TABLES.items()}


def _digest(rows: Sequence[tuple[Any, ...]]) -> list[Any]:
    ordered = sorted(rows, key=lambda row: json.dumps(row, default=str))
    encoded = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, default=str)
    return [len(ordered), hashlib.sha256(encoded.encode()).hexdigest()]


def state_differences(session: Session, recorded: dict[str, Any], seq: int) -> list[str]:
    """Where the tables now differ from the state the audit log recorded at event ``seq``."""
    problems = []
    for name, now in state_of(session).items():
        then = recorded.get(name)
        if then != now:
            count = then[0] if isinstance(then, list) and then else "?"
            problems.append(
                f"active {name}: {now[0]} now, {count} as the audit log recorded at event "
                f"{seq}, and their digests differ: the {name} table was changed outside mbom"
            )
    return problems


#: The operations whose details record an artifact's content digest.
DIGEST_OPERATIONS = ("register", "placeholder.create", "placeholder.fill")


def recorded_state(session: Session) -> tuple[int, dict[str, Any]] | None:
    """The newest state the audit log sealed, with its event's number (None: none sealed)."""
    row = session.exec(
        select(AuditEvent.seq, AuditEvent.state)
        .where(col(AuditEvent.state).is_not(None))
        .order_by(col(AuditEvent.seq).desc())
        .limit(1)
    ).first()
    if row is None or not isinstance(row[1], dict):
        return None
    return row[0], row[1]


def recorded_digests(session: Session) -> dict[str, tuple[int, str | None]]:
    """``name@version -> (event number, digest)`` from the newest event that recorded it."""
    found: dict[str, tuple[int, str | None]] = {}
    rows = session.exec(
        select(AuditEvent.seq, AuditEvent.subject, AuditEvent.details)
        .where(col(AuditEvent.operation).in_(DIGEST_OPERATIONS))
        .order_by(col(AuditEvent.seq))
    )
    for seq, subject, details in rows:
        if isinstance(details, dict) and "digest" in details:
            digest = details["digest"]
            found[subject] = (seq, digest if isinstance(digest, str) else None)
    return found


def audit_differences(session: Session) -> list[str]:
    """Where the state tables and the stored digests disagree with the audit log."""
    problems: list[str] = []
    if session.exec(select(AuditEvent.id).limit(1)).first() is None:
        held = session.exec(select(func.count()).select_from(Artifact)).one()
        if held:
            return [
                f"the audit log is empty but the registry holds {held} artifacts: "
                "its events were deleted"
            ]
    sealed = recorded_state(session)
    if sealed is not None:
        seq, state = sealed
        problems += state_differences(session, state, seq)
    recorded = recorded_digests(session)
    artifacts = session.exec(select(Artifact.name, Artifact.version, Artifact.digest))
    for name, version, digest in artifacts:
        ref = f"{name}@{version}"
        if ref in recorded and recorded[ref][1] != digest:
            seq, logged = recorded[ref]
            problems.append(
                f"{ref}: stored digest {digest} != {logged} recorded by audit event {seq}: "
                "the artifact was changed outside mbom"
            )
    return problems


def manifest_differences(session: Session) -> list[str]:
    """Artifacts whose stored digest is not the digest of their stored manifest."""
    problems: list[str] = []
    rows = session.exec(
        select(Artifact.name, Artifact.version, Artifact.digest, Artifact.manifest).where(
            col(Artifact.manifest).is_not(None)
        )
    )
    for name, version, digest, entries in rows:
        if not entries:
            continue
        try:
            actual = Manifest(tuple(ManifestEntry(*entry) for entry in entries)).digest
        except (InvalidInput, TypeError) as exc:
            problems.append(f"{name}@{version}: the stored manifest is malformed: {exc}")
            continue
        if actual != digest:
            problems.append(
                f"{name}@{version}: stored digest {digest} != {actual} computed from its stored "
                "manifest: the manifest or the digest was changed outside mbom"
            )
    return problems
