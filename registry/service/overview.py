"""Read-only answers the web console needs and no other verb gives: the active flags with
how far each reaches, a version's file manifest, its own deployments and the decisions
naming it.

Nothing here writes or decides: every rule stays with the verb that enforces it.
"""

from __future__ import annotations

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from registry.schemas import (
    DecisionPublic,
    DeploymentPublic,
    PublicModel,
    StoredFilePublic,
    UtcDateTime,
)
from registry.service.policy import decision_public
from registry.service.queries import deployment_public
from registry.service.refs import ref_of, resolve
from registry.tables import Artifact, Decision, DeployedPath, Deployment, Flag, LineageClosure
from registry.vocabulary import Kind


class ActiveFlag(PublicModel):
    """A compromise finding in force, and how far it reaches now."""

    ref: str
    kind: Kind
    reason: str
    actor: str
    created_at: UtcDateTime
    #: Registered versions descending from the flagged one.
    versions: int
    #: Active deployments of the flagged version and of its descendants.
    deployments: int


def active_flags(session: Session, *, limit: int = 200) -> list[ActiveFlag]:
    """The active flags, newest first, each with the descendants and deployments it reaches."""
    rows = session.exec(
        select(Flag, Artifact)
        .join(Artifact, col(Artifact.id) == col(Flag.artifact_id))
        .where(col(Flag.active).is_(True))
        .order_by(col(Flag.created_at).desc(), col(Flag.id).desc())
        .limit(limit)
    ).all()
    return [
        ActiveFlag(
            ref=ref_of(artifact),
            kind=artifact.kind,
            reason=flag.reason,
            actor=flag.actor,
            created_at=flag.created_at,
            versions=_count_descendants(session, artifact.id or 0),
            deployments=_count_deployments(session, artifact.id or 0),
        )
        for flag, artifact in rows
    ]


def _count_descendants(session: Session, artifact_id: int) -> int:
    return int(
        session.exec(
            select(func.count()).where(
                LineageClosure.ancestor_id == artifact_id, col(LineageClosure.depth) >= 1
            )
        ).one()
    )


def _count_deployments(session: Session, artifact_id: int) -> int:
    return int(
        session.exec(select(func.count()).where(DeployedPath.ancestor_id == artifact_id)).one()
    )


def version_files(session: Session, ref: str) -> list[StoredFilePublic]:
    """The file manifest a version was registered with: path, size and SHA-256 per file."""
    artifact = resolve(session, ref)
    return [
        StoredFilePublic(path=str(path), size=int(size), sha256=str(sha256))
        for path, size, sha256 in artifact.manifest or []
    ]


def deployments_of(session: Session, ref: str) -> list[DeploymentPublic]:
    """The active deployments of exactly this version (not of its descendants)."""
    artifact = resolve(session, ref)
    rows = session.exec(
        select(Deployment)
        .where(Deployment.artifact_id == artifact.id, col(Deployment.active).is_(True))
        .order_by(col(Deployment.team), col(Deployment.environment))
    ).all()
    return [deployment_public(row, artifact, path=[ref_of(artifact)]) for row in rows]


def decisions_on(session: Session, ref: str) -> list[DecisionPublic]:
    """The active team decisions naming this version or every version of its name."""
    artifact = resolve(session, ref)
    rows = session.exec(
        select(Decision)
        .where(
            col(Decision.active).is_(True),
            Decision.name == artifact.name,
            or_(col(Decision.version) == artifact.version, col(Decision.version).is_(None)),
        )
        .order_by(col(Decision.id))
    ).all()
    return [decision_public(row) for row in rows]


__all__ = [
    "ActiveFlag",
    "active_flags",
    "decisions_on",
    "deployments_of",
    "version_files",
]
