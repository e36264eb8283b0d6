"""Teams, their approve/block decisions, and the policy built on them.

A registration is refused when a parent is tainted (compromised, infected or
confirmed), blocked for the registering team (or for every team), or not
approved for a team that requires approval. A deployment is refused when the
model is tainted or blocked for that team. An approver of the team may
override with a reason; the override is audited with what it overrode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sqlalchemy import or_
from sqlmodel import Session, col, select

from lineage import DEFAULT_PROPAGATION, Relation, Status
from registry.errors import AlreadyExists, InvalidInput, NotFound, PolicyViolation
from registry.identity import Actor, Role
from registry.schemas import DecisionPublic, TeamPublic
from registry.service import audit
from registry.service._tx import mutation
from registry.service.refs import ref_of, resolve
from registry.tables import Artifact, Decision, Team

Verdict = Literal["approve", "block"]


@mutation
def create_team(
    session: Session, *, actor: Actor, name: str, require_approval: bool = False
) -> TeamPublic:
    """Create a team (admins only)."""
    actor.require(Role.ADMIN, action="create teams")
    if not name.strip() or any(ch.isspace() for ch in name):
        raise InvalidInput(f"{name!r} is not a team name", hint="use one word, e.g. fraud-ml")
    if session.exec(select(Team).where(Team.name == name)).first():
        raise AlreadyExists("team", name)
    team = Team(name=name, require_approval=require_approval)
    session.add(team)
    session.flush()
    audit.record(
        session,
        actor=actor,
        operation="team.create",
        subject=f"team:{name}",
        details={"require_approval": require_approval},
    )
    return TeamPublic.model_validate(team, from_attributes=True)


def list_teams(session: Session) -> list[TeamPublic]:
    """Every team, by name."""
    teams = session.exec(select(Team).order_by(col(Team.name))).all()
    return [TeamPublic.model_validate(team, from_attributes=True) for team in teams]


def require_team(session: Session, name: str | None) -> Team | None:
    """The named team, or a clear error if it does not exist (None passes through)."""
    if name is None:
        return None
    team = session.exec(select(Team).where(Team.name == name)).first()
    if team is None:
        raise NotFound("team", name, hint=f"create it with: mbom team create {name}")
    return team


@mutation
def decide(
    session: Session,
    *,
    actor: Actor,
    ref: str,
    team: str,
    verdict: Verdict,
    reason: str,
    all_versions: bool = False,
) -> DecisionPublic:
    """Approve or block a model version (or every version of its name) for a team."""
    actor.require(Role.APPROVER, action=f"{verdict} models", team=team)
    require_team(session, team)
    if not reason.strip():
        raise InvalidInput("a decision needs a --reason")
    artifact = resolve(session, ref, kind="model")
    decision = Decision(
        team=team,
        name=artifact.name,
        version=None if all_versions else artifact.version,
        verdict=verdict,
        reason=reason,
        actor=actor.user,
    )
    session.add(decision)
    session.flush()
    audit.record(
        session,
        actor=actor,
        operation=f"decision.{verdict}",
        subject=_subject(decision),
        details={"team": team, "reason": reason},
    )
    return decision_public(decision)


def block_everywhere(session: Session, *, artifact: Artifact, reason: str, actor: Actor) -> None:
    """Block a version for every team, as a consequence of a flag."""
    session.add(
        Decision(
            team=None,
            name=artifact.name,
            version=artifact.version,
            verdict="block",
            reason=reason,
            actor=actor.user,
            origin="flag",
        )
    )


def lift_flag_blocks(session: Session, *, artifact: Artifact) -> None:
    """Deactivate the blocks a flag created (when it is withdrawn)."""
    for decision in session.exec(
        select(Decision).where(
            Decision.origin == "flag",
            Decision.active,
            Decision.name == artifact.name,
            Decision.version == artifact.version,
        )
    ):
        decision.active = False


def list_decisions(session: Session, *, team: str | None = None) -> list[DecisionPublic]:
    """Active decisions, oldest first; with a team, that team's and the global ones."""
    query = select(Decision).where(Decision.active).order_by(col(Decision.id))
    if team:
        query = query.where(or_(col(Decision.team) == team, col(Decision.team).is_(None)))
    return [decision_public(decision) for decision in session.exec(query)]


def effective_decision(
    session: Session, *, team: str | None, artifact: Artifact
) -> Decision | None:
    """The decision that governs this version for this team, if any.

    A block for every team (from a flag) always wins; otherwise the team's
    newest version-level decision, else its newest whole-name decision.
    """
    query = (
        select(Decision)
        .where(
            Decision.active,
            Decision.name == artifact.name,
            or_(col(Decision.version) == artifact.version, col(Decision.version).is_(None)),
            or_(col(Decision.team) == team, col(Decision.team).is_(None)),
        )
        .order_by(col(Decision.id).desc())
    )
    decisions = session.exec(query).all()
    for decision in decisions:
        if decision.team is None and decision.verdict == "block":
            return decision
    team_level = [d for d in decisions if d.team is not None]
    specific = [d for d in team_level if d.version is not None]
    chosen = specific or team_level
    return chosen[0] if chosen else None


def registration_violations(
    session: Session, *, team: str | None, parents: Sequence[tuple[Artifact, Relation]]
) -> list[str]:
    """Why building on these parents for this team breaks the policy (empty: it doesn't).

    A tainted parent counts only over an edge that carries compromise: evaluating
    on a poisoned benchmark does not infect the model, so it is not refused.
    """
    required = require_team(session, team)
    problems = []
    for parent, relation in parents:
        if Status(parent.status).is_tainted and DEFAULT_PROPAGATION[relation]:
            problems.append(f"parent {ref_of(parent)} is {parent.status}")
        if parent.kind != "model":
            continue
        decision = effective_decision(session, team=team, artifact=parent)
        if decision is not None and decision.verdict == "block":
            problems.append(
                f"parent {ref_of(parent)} is blocked for {_scope(decision)}: {decision.reason}"
            )
        elif required is not None and required.require_approval and decision is None:
            problems.append(f"parent {ref_of(parent)} is not approved for team {team}")
    return problems


def deployment_violations(session: Session, *, team: str, artifact: Artifact) -> list[str]:
    """Why deploying this version for this team breaks the policy."""
    problems = []
    if Status(artifact.status).is_tainted:
        problems.append(f"{ref_of(artifact)} is {artifact.status}")
    decision = effective_decision(session, team=team, artifact=artifact)
    if decision is not None and decision.verdict == "block":
        problems.append(f"{ref_of(artifact)} is blocked for {_scope(decision)}: {decision.reason}")
    return problems


def enforce(
    session: Session,
    *,
    actor: Actor,
    violations: list[str],
    override: str | None,
    team: str | None,
    subject: str,
) -> None:
    """Refuse on violations, unless an approver overrides them with a reason (audited)."""
    if not violations:
        return
    if override is None:
        raise PolicyViolation(
            "refused: " + "; ".join(violations),
            hint="an approver of the team may pass --override REASON",
        )
    actor.require(Role.APPROVER, action="override the policy", team=team)
    if not override.strip():
        raise InvalidInput("--override needs a reason")
    audit.record(
        session,
        actor=actor,
        operation="policy.override",
        subject=subject,
        details={"team": team, "reason": override, "overridden": violations},
    )


def decision_public(decision: Decision) -> DecisionPublic:
    """The public view of a decision."""
    return DecisionPublic(
        id=decision.id or 0,
        team=decision.team,
        subject=_subject(decision),
        verdict="block" if decision.verdict == "block" else "approve",
        reason=decision.reason,
        actor=decision.actor,
        origin=decision.origin,
        active=decision.active,
        created_at=decision.created_at,
    )


def _subject(decision: Decision) -> str:
    return f"{decision.name}@{decision.version}" if decision.version else f"{decision.name}@*"


def _scope(decision: Decision) -> str:
    return f"team {decision.team}" if decision.team else "every team"
