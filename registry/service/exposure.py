"""Who holds a copy: the pulls of a version and of every version derived from it.

Deployments say where a model runs; pulls say who downloaded it from the
registry, which is the exposure a security team needs the day an advisory
lands, even where nothing was registered or deployed from the copy yet.
"""

from __future__ import annotations

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from registry.schemas import PullPublic
from registry.service.refs import ref_of, resolve
from registry.tables import Artifact, LineageClosure, Pull


def _below(root: Artifact) -> object:
    """Pulls of ``root`` or of any of its descendants (a WHERE condition)."""
    descendants = select(LineageClosure.descendant_id).where(LineageClosure.ancestor_id == root.id)
    return or_(col(Pull.artifact_id) == root.id, col(Pull.artifact_id).in_(descendants))


def pulls_below(
    session: Session, root: Artifact, *, limit: int | None = None
) -> tuple[list[PullPublic], int]:
    """The newest ``limit`` pulls of ``root`` and its descendants, and how many there are."""
    condition = _below(root)
    query = (
        select(Pull, Artifact)
        .join(Artifact, col(Artifact.id) == Pull.artifact_id)
        .where(condition)  # type: ignore[arg-type]
        .order_by(col(Pull.created_at).desc(), col(Pull.id).desc())
    )
    if limit is not None:
        query = query.limit(limit)
    rows = session.exec(query).all()
    total = session.exec(select(func.count()).select_from(Pull).where(condition)).one()  # type: ignore[arg-type]
    return [pull_public(pull, artifact) for pull, artifact in rows], int(total)


def pulls_of(session: Session, ref: str) -> list[PullPublic]:
    """Who pulled ``ref`` or any version derived from it, newest first."""
    found, _total = pulls_below(session, resolve(session, ref))
    return found


def pull_public(pull: Pull, artifact: Artifact) -> PullPublic:
    """The public view of a pull."""
    return PullPublic(
        id=pull.id or 0,
        ref=ref_of(artifact),
        user=pull.user,
        team=pull.team,
        digest=pull.digest,
        status=artifact.status,
        override=pull.override,
        created_at=pull.created_at,
    )
