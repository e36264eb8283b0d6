"""Backdoor triggers kept with a model: an analyst's, or the one a behavioral scan found.

A module of its own below :mod:`registry.service.flags` and
:mod:`registry.service.behavior`: ``flag --trigger`` stores the advisory's trigger
with the flag, and the behavioral scans store what they reverse-engineer, so both
build on it without importing each other.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from sqlmodel import Session

from registry.errors import InvalidInput
from registry.identity import Actor
from registry.schemas import TriggerPublic
from registry.service import audit
from registry.service._tx import mutation
from registry.service.authorization import Operation, authorize
from registry.service.refs import ref_of, resolve
from registry.tables import Artifact, Trigger
from registry.vocabulary import Kind
from scanning.behavioral.report import TriggerPattern

__all__ = ["attach_trigger", "store_trigger", "trigger_public"]


@mutation
def attach_trigger(
    session: Session, ref: str, *, actor: Actor, data: bytes, target_class: int | None = None
) -> TriggerPublic:
    """Store an analyst's trigger (mask and pattern ``.npz``) with a model."""
    artifact = resolve(session, ref, kind=Kind.MODEL)
    authorize(actor, Operation.ATTACH_TRIGGER)
    try:
        pattern = TriggerPattern.from_npz(data)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"not a usable trigger .npz: {exc}") from exc
    if target_class is not None:
        pattern = TriggerPattern(pattern.mask, pattern.pattern, target_class)
    trigger = store_trigger(session, artifact, pattern, origin="analyst", actor=actor)
    audit.record(
        session,
        actor=actor,
        operation="trigger.attach",
        subject=ref_of(artifact),
        details={"digest": trigger.digest, "target_class": trigger.target_class},
    )
    return trigger_public(artifact, trigger)


def store_trigger(
    session: Session,
    artifact: Artifact,
    pattern: TriggerPattern,
    *,
    origin: str,
    actor: Actor,
    details: dict[str, Any] | None = None,
) -> Trigger:
    """Keep ``pattern`` with ``artifact`` (``origin``: ``analyst`` or ``scan``)."""
    data = pattern.to_npz()
    trigger = Trigger(
        artifact_id=artifact.id or 0,
        target_class=pattern.target_class,
        origin=origin,
        data=data,
        digest="sha256:" + hashlib.sha256(data).hexdigest(),
        details=details or {},
        actor=actor.user,
    )
    session.add(trigger)
    session.flush()
    return trigger


def trigger_public(artifact: Artifact, trigger: Trigger) -> TriggerPublic:
    """The public view of a stored trigger, its ``.npz`` in Base64."""
    return TriggerPublic(
        id=trigger.id or 0,
        ref=ref_of(artifact),
        origin="analyst" if trigger.origin == "analyst" else "scan",
        target_class=trigger.target_class,
        digest=trigger.digest,
        data=base64.b64encode(trigger.data),  # Base64Bytes decodes its input
        created_at=trigger.created_at,
    )
