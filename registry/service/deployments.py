"""Deploying and undeploying model versions."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from registry.errors import AlreadyExists, InvalidInput, NotFound
from registry.identity import Actor
from registry.schemas import DeploymentPublic
from registry.service import audit, deployed_paths, paging, policy
from registry.service._tx import mutation
from registry.service.authorization import Operation, authorize
from registry.service.queries import deployment_public
from registry.service.refs import ref_of, resolve
from registry.tables import Artifact, Deployment
from registry.vocabulary import Kind


@mutation
def deploy(
    session: Session,
    ref: str,
    *,
    actor: Actor,
    environment: str,
    team: str,
    override: str | None = None,
) -> DeploymentPublic:
    """Record a deployment; refused for tainted or blocked models unless overridden."""
    authorize(actor, Operation.DEPLOY, team=team)
    _check_environment(environment)
    policy.require_team(session, team)
    artifact = resolve(session, ref, kind=Kind.MODEL)
    if _active(session, artifact, environment, team) is not None:
        raise AlreadyExists("deployment of", f"{ref_of(artifact)} in {environment} for {team}")
    policy.enforce(
        session,
        actor=actor,
        team=team,
        subject=ref_of(artifact),
        override=override,
        violations=policy.deployment_violations(session, team=team, artifact=artifact),
    )
    deployment = Deployment(
        artifact_id=artifact.id or 0, environment=environment, team=team, created_by=actor.user
    )
    session.add(deployment)
    session.flush()
    deployed_paths.add(session, deployment)
    audit.record(
        session,
        actor=actor,
        operation="deploy",
        subject=ref_of(artifact),
        details={"environment": environment, "team": team},
    )
    return deployment_public(deployment, artifact)


@mutation
def undeploy(
    session: Session, ref: str, *, actor: Actor, environment: str, team: str
) -> DeploymentPublic:
    """End a deployment."""
    authorize(actor, Operation.UNDEPLOY, team=team)
    artifact = resolve(session, ref, kind=Kind.MODEL)
    deployment = _active(session, artifact, environment, team)
    if deployment is None:
        raise NotFound(
            "deployment of",
            f"{ref_of(artifact)} in {environment} for {team}",
            hint="list them with mbom deployments",
        )
    deployment.active = False
    session.flush()
    deployed_paths.remove(session, deployment)
    audit.record(
        session,
        actor=actor,
        operation="undeploy",
        subject=ref_of(artifact),
        details={"environment": environment, "team": team},
    )
    return deployment_public(deployment, artifact)


def count_deployments(
    session: Session, *, team: str | None = None, environment: str | None = None
) -> int:
    """How many deployments :func:`list_deployments` pages through."""
    return paging.count(session, _deployments_query(team, environment))


def _deployments_query(team: str | None, environment: str | None) -> Any:
    query = (
        select(Deployment, Artifact)
        .join(Artifact, col(Artifact.id) == col(Deployment.artifact_id))
        .where(Deployment.active)
        .order_by(
            col(Deployment.team),
            col(Deployment.environment),
            col(Artifact.name),
            col(Deployment.id),
        )
    )
    if team:
        query = query.where(Deployment.team == team)
    if environment:
        query = query.where(Deployment.environment == environment)
    return query


def list_deployments(
    session: Session,
    *,
    team: str | None = None,
    environment: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[DeploymentPublic]:
    """Active deployments, optionally of one team or environment."""
    query = _deployments_query(team, environment).offset(offset).limit(limit)
    return [deployment_public(d, a) for d, a in session.exec(query)]


def _active(session: Session, artifact: Artifact, environment: str, team: str) -> Deployment | None:
    return session.exec(
        select(Deployment).where(
            Deployment.artifact_id == artifact.id,
            Deployment.environment == environment,
            Deployment.team == team,
            Deployment.active,
        )
    ).first()


def _check_environment(environment: str) -> None:
    if not environment.strip() or any(ch.isspace() for ch in environment):
        raise InvalidInput(f"{environment!r} is not an environment name", hint="e.g. prod, staging")
