"""The append-only, keyed, hash-chained audit log.

Each event's hash is an HMAC-SHA256, under a key the database does not hold
(:mod:`registry.audit_key`), over the previous event's hash and a canonical
JSON encoding of the event's own fields. Editing, inserting or deleting an
event breaks the chain at that point, and someone who can write the database
but not read the key cannot recompute it. Truncating the newest events leaves
a shorter valid chain: a signed checkpoint (:mod:`registry.audit_checkpoint`)
kept elsewhere detects that. Writers are serialised by the unit of work, so
the chain never forks.

The last event of each transaction also seals digests of the state tables
(active flags, clearances and decisions) as that transaction left them, so
``mbom check`` can tell a table edited behind mbom's back.

Events written before mbom keyed its chain (``key_id`` NULL, plain SHA-256)
are a *legacy* segment: accepted only as the chain's first events, and only
once an admin has sealed them with :func:`anchor_chain`; after that, an
unkeyed event anywhere is tampering. An engine without a key file bound
(:func:`bind_key`) writes and verifies legacy events only, as before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy import event as orm_events
from sqlmodel import Session, col, select

from registry.audit_key import AuditKey, AuditKeyFile
from registry.errors import AuditKeyError, Conflict
from registry.identity import Actor
from registry.schemas import AuditEventPublic, AuditVerification
from registry.service import paging
from registry.service._bulk_insert import insert_rows
from registry.service._tx import mutation
from registry.service.audit_state import state_of
from registry.service.authorization import Operation, authorize
from registry.tables import AuditEvent, utcnow

GENESIS = "0" * 64
_KEY_OPTION = "mbom_audit_key_file"
_TAIL = "mbom_audit_tail"  # session.info: the transaction's newest event and its key
ANCHOR = "audit.anchor"


def bind_key(engine: Engine, key_file: AuditKeyFile) -> Engine:
    """Key every audit event written through ``engine`` with the key in ``key_file``."""
    engine.update_execution_options(**{_KEY_OPTION: key_file})
    return engine


def key_file_of(bind: Engine | Connection) -> AuditKeyFile | None:
    """The key file bound to an engine (or a connection of it), if any."""
    found = bind.get_execution_options().get(_KEY_OPTION)
    return found if isinstance(found, AuditKeyFile) else None


def _session_key_file(session: Session) -> AuditKeyFile | None:
    bind = session.get_bind()
    return key_file_of(bind) if isinstance(bind, Engine | Connection) else None


def record(
    session: Session,
    *,
    actor: Actor,
    operation: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction."""
    last = _head(session)
    key = _writing_key(session, last)
    return _append(
        session, last, key, actor=actor, operation=operation, subject=subject, details=details
    )


def _append(
    session: Session,
    last: AuditEvent | None,
    key: AuditKey | None,
    *,
    actor: Actor,
    operation: str,
    subject: str,
    details: Mapping[str, Any] | None,
) -> AuditEvent:
    clean_details = json.loads(json.dumps(dict(details or {}), default=str))
    event = AuditEvent(
        seq=last.seq + 1 if last else 1,
        at=utcnow(),
        actor=actor.user,
        operation=operation,
        subject=subject,
        details=clean_details,
        prev_hash=last.hash if last else GENESIS,
        hash="",
        key_id=key.key_id if key else None,
    )
    event.hash = seal(event, key)
    session.add(event)
    session.flush()
    if key is not None:
        session.info[_TAIL] = (event, key)
    return event


def record_many(
    session: Session,
    *,
    actor: Actor,
    events: Iterable[tuple[str, str, Mapping[str, Any]]],
    batch: int = 5000,
) -> int:
    """Append ``(operation, subject, details)`` events in order, written in bulk; their count.

    The same keyed chain :func:`record` writes event by event, without an ORM
    object and a flush per event (a large BOM import appends two per component).
    The newest event goes through :func:`_append`, so the commit seals the state
    tables into it as it does for any transaction.
    """
    pending = list(events)
    if not pending:
        return 0
    last = _head(session)
    key = _writing_key(session, last)
    prev_hash, seq = (last.hash, last.seq) if last else (GENESIS, 0)
    rows: list[dict[str, Any]] = []
    for operation, subject, details in pending[:-1]:
        seq += 1
        row: dict[str, Any] = {
            "seq": seq,
            "at": utcnow(),
            "actor": actor.user,
            "operation": operation,
            "subject": subject,
            "details": json.loads(json.dumps(dict(details), default=str)),
            "prev_hash": prev_hash,
            "key_id": key.key_id if key else None,
            "state": None,
        }
        row["hash"] = prev_hash = _seal_row(key, row)
        rows.append(row)
        if len(rows) >= batch:
            insert_rows(session, AuditEvent, rows)
            rows = []
    insert_rows(session, AuditEvent, rows)
    head = _head(session) if len(pending) > 1 else last  # the newest row just written
    operation, subject, details = pending[-1]
    _append(session, head, key, actor=actor, operation=operation, subject=subject, details=details)
    return len(pending)


def _head(session: Session) -> AuditEvent | None:
    return session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()


def _writing_key(session: Session, last: AuditEvent | None) -> AuditKey | None:
    """The key to write the next event with, refusing anything that would fork the chain."""
    key_file = _session_key_file(session)
    if key_file is None:
        if last is not None and last.key_id is not None:
            raise AuditKeyError(
                f"the audit log is keyed (key id {last.key_id}) but no audit key is configured",
                hint="set MBOM_AUDIT_KEY_FILE to the registry's audit key",
            )
        return None
    if last is not None and last.key_id is None:
        raise AuditKeyError(
            f"the audit log holds {last.seq} events chained before mbom keyed it",
            hint="an admin checks them with `mbom audit verify` and seals them once "
            "with `mbom audit anchor`",
        )
    key = key_file.load_or_create() if last is None else _load_existing(key_file, last.key_id)
    return key


def _load_existing(key_file: AuditKeyFile, key_id: str | None) -> AuditKey:
    key = key_file.load()
    if key is None:
        raise AuditKeyError(
            f"the audit key {key_file.path} does not exist, but the audit log is keyed "
            f"(key id {key_id})",
            hint="restore the key file, or point MBOM_AUDIT_KEY_FILE at it; "
            "a new key would not verify the existing chain",
        )
    if key.key_id != key_id:
        raise AuditKeyError(
            f"the audit log is keyed with key id {key_id}, but {key.path} holds key id "
            f"{key.key_id}",
            hint="every process writing this registry needs the same key: "
            "point MBOM_AUDIT_KEY_FILE at the registry's audit key",
        )
    return key


def seal(event: AuditEvent, key: AuditKey | None) -> str:
    """The chained hash of one event: HMAC under ``key``, or legacy SHA-256 without one."""
    return _seal_row(
        key,
        {
            "prev_hash": event.prev_hash,
            "seq": event.seq,
            "at": event.at,
            "actor": event.actor,
            "operation": event.operation,
            "subject": event.subject,
            "details": event.details,
            "key_id": event.key_id,
            "state": event.state,
        },
    )


def _seal_row(key: AuditKey | None, row: Mapping[str, Any]) -> str:
    fields: list[Any] = [
        row["prev_hash"],
        row["seq"],
        _timestamp(row["at"]),
        row["actor"],
        row["operation"],
        row["subject"],
        row["details"],
    ]
    if key is None:
        return hashlib.sha256(_canonical(fields)).hexdigest()
    return key.mac(_canonical([*fields, row["key_id"], row["state"]]))


def event_hash(
    prev_hash: str, seq: int, at: datetime, actor: str, operation: str, subject: str, details: Any
) -> str:
    """The legacy (unkeyed) chained hash of one event."""
    fields = [prev_hash, seq, _timestamp(at), actor, operation, subject, details]
    return hashlib.sha256(_canonical(fields)).hexdigest()


def _canonical(fields: list[Any]) -> bytes:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def _timestamp(at: datetime) -> str:
    # SQLite hands datetimes back naive; they were written in UTC.
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@orm_events.listens_for(Session, "before_commit")
def _seal_state(session: Session) -> None:
    """Seal the state tables' digests into the transaction's newest keyed event.

    Done at commit, not at :func:`record`, so that a change made after the
    operation's last event is still covered. That event is the chain's head,
    so re-sealing it changes no other event's link.
    """
    tail = session.info.pop(_TAIL, None)
    if tail is None:
        return
    last, key = tail
    session.flush()
    last.state = state_of(session)
    last.hash = seal(last, key)
    session.flush()


@orm_events.listens_for(Session, "after_soft_rollback")
def _forget_tail(session: Session, _previous: Any) -> None:
    session.info.pop(_TAIL, None)


def count_events(session: Session, *, subject: str | None = None) -> int:
    """How many events :func:`list_events` pages through."""
    return paging.count(session, _events_query(subject))


def _events_query(subject: str | None) -> Any:
    query = select(AuditEvent).order_by(col(AuditEvent.seq).desc())
    return query.where(AuditEvent.subject == subject) if subject else query


def list_events(
    session: Session, *, subject: str | None = None, limit: int = 1000, offset: int = 0
) -> list[AuditEventPublic]:
    """The newest ``limit`` events (optionally for one subject), oldest first."""
    query = _events_query(subject).offset(offset).limit(limit)
    events = reversed(session.exec(query).all())
    return [AuditEventPublic.model_validate(event, from_attributes=True) for event in events]


@dataclass
class _Walk:
    """What a walk along the chain has seen so far."""

    key_file: AuditKeyFile | None
    key: AuditKey | None
    prev_hash: str = GENESIS
    expected_seq: int = 1
    keyed: int = 0
    legacy: int = 0

    def step(self, event: AuditEvent) -> str | None:
        """Check one event against the previous; the problem, or None."""
        if event.seq != self.expected_seq:
            return f"events {self.expected_seq}..{event.seq - 1} are missing (deleted)"
        if event.prev_hash != self.prev_hash:
            return "does not follow the previous event (inserted, or the previous one was deleted)"
        problem = self._check_keyed(event) if event.key_id else self._check_legacy(event)
        self.prev_hash, self.expected_seq = event.hash, event.seq + 1
        return problem

    def _check_legacy(self, event: AuditEvent) -> str | None:
        if self.keyed:
            return (
                "it is unkeyed but follows keyed events: it was rewritten or added "
                "without the audit key"
            )
        self.legacy += 1
        if seal(event, None) != event.hash:
            return "its content does not match its hash (edited)"
        return None

    def _check_keyed(self, event: AuditEvent) -> str | None:
        self.keyed += 1
        if self.key is None:
            where = (
                f"the audit key file {self.key_file.path} does not exist"
                if self.key_file
                else "no audit key is configured"
            )
            return f"it is keyed (key id {event.key_id}) but {where}: set MBOM_AUDIT_KEY_FILE"
        if event.key_id != self.key.key_id:
            return (
                f"it is keyed with key id {event.key_id}, but {self.key.path} holds key id "
                f"{self.key.key_id}: point MBOM_AUDIT_KEY_FILE at the registry's key"
            )
        if not hmac.compare_digest(seal(event, self.key), event.hash):
            return "its content does not match its hash (edited)"
        if self.keyed == 1 and self.legacy and not _anchors(event, self.legacy, event.prev_hash):
            return (
                f"it follows {self.legacy} unkeyed events without sealing them "
                "(`mbom audit anchor`)"
            )
        return None


def _anchors(event: AuditEvent, legacy: int, head: str) -> bool:
    return event.operation == ANCHOR and event.details == {
        "legacy_events": legacy,
        "legacy_head": head,
    }


def verify_chain(
    session: Session, *, checkpoint_seq: int | None = None, checkpoint_head: str | None = None
) -> AuditVerification:
    """Walk the whole chain; report the first edited, inserted or deleted event.

    With a checkpoint (a sequence number and the hash it had, from
    ``mbom audit checkpoint``), also check that the chain still holds that
    event with that hash: deleting the newest events, or rewriting the chain
    up to there even with the key, is found.
    """
    key_file = _session_key_file(session)
    walk = _Walk(key_file, key_file.load() if key_file else None)
    hashes: dict[int, str] = {}
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))):
        problem = walk.step(event)
        if problem:
            return _result(walk, ok=False, first_bad_seq=event.seq, problem=problem)
        if event.seq == checkpoint_seq:
            hashes[event.seq] = event.hash
    if key_file is not None and walk.legacy and not walk.keyed:
        return _result(walk, ok=False, first_bad_seq=1, problem=_unsealed(walk.legacy))
    if checkpoint_seq is not None:
        problem = _checkpoint_problem(walk, checkpoint_seq, checkpoint_head, hashes)
        if problem:
            return _result(walk, ok=False, first_bad_seq=checkpoint_seq, problem=problem)
    return _result(walk, ok=True, checkpoint_seq=checkpoint_seq)


def _unsealed(count: int) -> str:
    return (
        f"none of the {count} events is keyed: they were chained before mbom keyed its audit "
        "log, or rehashed without the key; if this registry predates audit keys and its history "
        "is trusted, an admin seals it once with `mbom audit anchor`"
    )


def _checkpoint_problem(
    walk: _Walk, seq: int, head: str | None, hashes: dict[int, str]
) -> str | None:
    last = walk.expected_seq - 1
    if seq > last:
        return (
            f"the chain ends at event {last}, but the checkpoint saw event {seq}: "
            f"the newest {seq - last} events were deleted"
        )
    if hashes.get(seq) != head:
        return (
            f"event {seq} is not the one the checkpoint saw (hash {hashes.get(seq)} != {head}): "
            "the chain was rewritten up to there"
        )
    return None


def _result(walk: _Walk, **fields: Any) -> AuditVerification:
    return AuditVerification(
        events=walk.keyed + walk.legacy,
        head=walk.prev_hash,
        last_seq=walk.expected_seq - 1,
        key_id=walk.key.key_id if walk.key else None,
        keyed_events=walk.keyed,
        legacy_events=walk.legacy,
        **fields,
    )


@mutation
def anchor_chain(session: Session, *, actor: Actor) -> AuditVerification:
    """Seal a legacy (unkeyed) chain under the audit key, once (admins).

    The legacy events are checked first; the new keyed ``audit.anchor`` event
    names how many there are and their head, so they cannot be rewritten later.
    """
    authorize(actor, Operation.ANCHOR_AUDIT)
    key_file = _session_key_file(session)
    last = _head(session)
    if key_file is None:
        raise AuditKeyError("no audit key is configured", hint="set MBOM_AUDIT_KEY_FILE")
    if last is None or last.key_id is not None:
        raise Conflict(
            "the audit log has no unkeyed events to anchor",
            hint="`mbom audit verify` checks it",
        )
    if key_file.load() is not None:
        # The key exists, so this registry has written keyed events before: an unkeyed
        # chain now is one rewritten without the key, and sealing it would launder it.
        raise Conflict(
            f"the audit key {key_file.path} exists already, so this registry's log was keyed "
            "and an unkeyed chain in it now was rewritten",
            hint="restore the database from a backup; only a registry that never had an "
            "audit key is anchored",
        )
    legacy = _Walk(None, None)
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))):
        problem = legacy.step(event)
        if problem:
            raise Conflict(
                f"the unkeyed audit log is broken at event {event.seq}: {problem}",
                hint="a broken history cannot be sealed; restore the database from a backup",
            )
    key = key_file.load_or_create()
    details = {"legacy_events": last.seq, "legacy_head": last.hash}
    _append(session, last, key, actor=actor, operation=ANCHOR, subject="audit", details=details)
    return verify_chain(session)
