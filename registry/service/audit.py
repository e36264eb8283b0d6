"""The append-only, hash-chained audit log.

Each event's hash is SHA-256 over the previous event's hash and a canonical
JSON encoding of the event's own fields, so editing, inserting or deleting any
event breaks the chain at that point. Writers are serialised by the unit of
work, so the chain never forks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from registry.identity import Actor
from registry.schemas import AuditEventPublic, AuditVerification
from registry.service._bulk_insert import insert_rows
from registry.tables import AuditEvent, utcnow

GENESIS = "0" * 64


def record(
    session: Session,
    *,
    actor: Actor,
    operation: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction."""
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    prev_hash = last.hash if last else GENESIS
    seq = last.seq + 1 if last else 1
    at = utcnow()
    clean_details = json.loads(json.dumps(dict(details or {}), default=str))
    event = AuditEvent(
        seq=seq,
        at=at,
        actor=actor.user,
        operation=operation,
        subject=subject,
        details=clean_details,
        prev_hash=prev_hash,
        hash=event_hash(prev_hash, seq, at, actor.user, operation, subject, clean_details),
    )
    session.add(event)
    session.flush()
    return event


def record_many(
    session: Session,
    *,
    actor: Actor,
    events: Iterable[tuple[str, str, Mapping[str, Any]]],
    batch: int = 5000,
) -> int:
    """Append ``(operation, subject, details)`` events in order, written in bulk; their count.

    The same chain :func:`record` writes event by event, without an ORM object
    and a flush per event (a large BOM import appends two events per component).
    """
    last = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    prev_hash, seq = (last.hash, last.seq) if last else (GENESIS, 0)
    rows: list[dict[str, Any]] = []
    written = 0
    for operation, subject, details in events:
        seq, at = seq + 1, utcnow()
        clean = json.loads(json.dumps(dict(details), default=str))
        digest = event_hash(prev_hash, seq, at, actor.user, operation, subject, clean)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "actor": actor.user,
                "operation": operation,
                "subject": subject,
                "details": clean,
                "prev_hash": prev_hash,
                "hash": digest,
            }
        )
        prev_hash = digest
        if len(rows) >= batch:
            written += _insert_events(session, rows)
            rows = []
    return written + _insert_events(session, rows)


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> int:
    insert_rows(session, AuditEvent, rows)
    return len(rows)


def event_hash(
    prev_hash: str, seq: int, at: datetime, actor: str, operation: str, subject: str, details: Any
) -> str:
    """The chained hash of one event."""
    body = json.dumps(
        [prev_hash, seq, _timestamp(at), actor, operation, subject, details],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _timestamp(at: datetime) -> str:
    # SQLite hands datetimes back naive; they were written in UTC.
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def list_events(
    session: Session, *, subject: str | None = None, limit: int = 1000
) -> list[AuditEventPublic]:
    """The newest ``limit`` events (optionally for one subject), oldest first."""
    query = select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(limit)
    if subject:
        query = query.where(AuditEvent.subject == subject)
    events = reversed(session.exec(query).all())
    return [AuditEventPublic.model_validate(event, from_attributes=True) for event in events]


def verify_chain(session: Session) -> AuditVerification:
    """Walk the whole chain; report the first edited, inserted or deleted event.

    Deleting the newest events leaves a shorter but valid chain: compare
    ``head`` with a value kept elsewhere to detect that.
    """
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))):
        count += 1
        problem = _check_event(event, prev_hash, expected_seq)
        if problem:
            return AuditVerification(
                ok=False, events=count, first_bad_seq=event.seq, problem=problem, head=prev_hash
            )
        prev_hash, expected_seq = event.hash, event.seq + 1
    return AuditVerification(ok=True, events=count, head=prev_hash)


def _check_event(event: AuditEvent, prev_hash: str, expected_seq: int) -> str | None:
    if event.seq != expected_seq:
        return f"events {expected_seq}..{event.seq - 1} are missing (deleted)"
    if event.prev_hash != prev_hash:
        return "does not follow the previous event (inserted, or the previous one was deleted)"
    actual = event_hash(
        event.prev_hash,
        event.seq,
        event.at,
        event.actor,
        event.operation,
        event.subject,
        event.details,
    )
    if actual != event.hash:
        return "its content does not match its hash (edited)"
    return None
