"""Trigger replays as they count now: the newest result per model and trigger source.

Read by the status report (:mod:`registry.service.flags`), the descendants listing
(:mod:`registry.service.queries`) and the replay recording
(:mod:`registry.service.behavior`), so it sits below all three.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from registry.schemas import ReplayPublic
from registry.service.graph import labels_of
from registry.service.refs import ref_of
from registry.tables import ReplayResult

__all__ = ["current_replays", "replays_public"]


def current_replays(
    session: Session, *, source: int | None = None, artifact: int | None = None
) -> list[ReplayPublic]:
    """The trigger replays that count now (the newest per model and source)."""
    query = select(ReplayResult).where(col(ReplayResult.superseded).is_(False))
    if source is not None:
        query = query.where(ReplayResult.source_id == source)
    if artifact is not None:
        query = query.where(ReplayResult.artifact_id == artifact)
    return replays_public(session, session.exec(query).all())


def replays_public(session: Session, rows: Sequence[ReplayResult]) -> list[ReplayPublic]:
    """The public views of stored replay results (names read in one query)."""
    names = labels_of(session, {r.source_id for r in rows} | {r.artifact_id for r in rows})
    return [
        ReplayPublic(
            source=ref_of(names[row.source_id]),
            ref=ref_of(names[row.artifact_id]),
            role="baseline" if row.role == "baseline" else "descendant",
            outcome="scan_error" if row.outcome == "scan_error" else "measured",
            rate=row.rate,
            collapsed_class=row.collapsed_class,
            confirmed=row.confirmed,
            threshold=row.threshold,
            error=row.details.get("error"),
            measured_at=row.created_at,
        )
        for row in rows
    ]
