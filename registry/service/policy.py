"""Teams, their approve/block decisions, and the policy built on them.

A registration is refused when a parent is tainted (compromised, infected or
confirmed), blocked for the registering team (or for every team), or not
approved for a team that requires approval. A deployment is refused when the
model is tainted or blocked for that team. An approver of the team may
override with a reason; the override is audited with what it overrode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from lineage import DEFAULT_PROPAGATION, Relation, Status
from registry.errors import AlreadyExists, InvalidInput, NotFound, PolicyViolation
from registry.identity import Actor
from registry.schemas import DecisionPublic, TeamPublic
from registry.service import audit, paging
from registry.service._idset import among
from registry.service._tx import mutation
from registry.service.authorization import Operation, authorize
from registry.service.graph import ancestor_rows
from registry.service.refs import ref_of, resolve
from registry.tables import Artifact, Decision, Edge, ScanRecord, Team
from registry.vocabulary import DecisionVerdict, Kind


@mutation
def create_team(
    session: Session,
    *,
    actor: Actor,
    name: str,
    require_approval: bool = False,
    require_registry_scan: bool = False,
) -> TeamPublic:
    """Create a team (admins only).

    ``require_registry_scan``: the team builds on, deploys and pulls only versions
    whose files the registry holds and scanned itself (no metadata-only bases).
    """
    authorize(actor, Operation.CREATE_TEAM)
    if not name.strip() or any(ch.isspace() for ch in name):
        raise InvalidInput(f"{name!r} is not a team name", hint="use one word, e.g. fraud-ml")
    if session.exec(select(Team).where(Team.name == name)).first():
        raise AlreadyExists("team", name)
    team = Team(
        name=name, require_approval=require_approval, require_registry_scan=require_registry_scan
    )
    session.add(team)
    session.flush()
    audit.record(
        session,
        actor=actor,
        operation="team.create",
        subject=f"team:{name}",
        details={
            "require_approval": require_approval,
            "require_registry_scan": require_registry_scan,
        },
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
    verdict: DecisionVerdict,
    reason: str,
    all_versions: bool = False,
) -> DecisionPublic:
    """Approve or block a model version (or every version of its name) for a team."""
    authorize(
        actor,
        Operation.APPROVE if verdict == DecisionVerdict.APPROVE else Operation.BLOCK,
        team=team,
    )
    require_team(session, team)
    if not reason.strip():
        raise InvalidInput("a decision needs a --reason")
    artifact = resolve(session, ref, kind=Kind.MODEL)
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
            verdict=DecisionVerdict.BLOCK,
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


def count_decisions(session: Session, *, team: str | None = None) -> int:
    """How many decisions :func:`list_decisions` pages through."""
    return paging.count(session, _decisions_query(team))


def _decisions_query(team: str | None) -> Any:
    query = select(Decision).where(Decision.active).order_by(col(Decision.id))
    if team:
        query = query.where(or_(col(Decision.team) == team, col(Decision.team).is_(None)))
    return query


def list_decisions(
    session: Session, *, team: str | None = None, limit: int | None = None, offset: int = 0
) -> list[DecisionPublic]:
    """Active decisions, oldest first; with a team, that team's and the global ones."""
    query = _decisions_query(team).offset(offset).limit(limit)
    return [decision_public(decision) for decision in session.exec(query)]


def effective_decision(
    session: Session, *, team: str | None, artifact: Artifact
) -> Decision | None:
    """The decision that governs this version for this team, if any.

    A block for every team (from a flag) always wins; otherwise the team's
    newest version-level decision, else its newest whole-name decision.
    """
    return effective_decisions(session, team=team, artifacts=[artifact]).get(artifact.id or 0)


def effective_decisions(
    session: Session, *, team: str | None, artifacts: Iterable[Artifact]
) -> dict[int, Decision]:
    """:func:`effective_decision` for many versions in one query (id -> decision)."""
    wanted = list(artifacts)
    if not wanted:
        return {}
    query = (
        select(Decision)
        .where(
            Decision.active,
            col(Decision.name).in_({artifact.name for artifact in wanted}),
            or_(col(Decision.team) == team, col(Decision.team).is_(None)),
        )
        .order_by(col(Decision.id).desc())
    )
    by_name: dict[str, list[Decision]] = {}
    for decision in session.exec(query):
        by_name.setdefault(decision.name, []).append(decision)
    found = {}
    for artifact in wanted:
        chosen = _governing(by_name.get(artifact.name, []), artifact.version)
        if chosen is not None:
            found[artifact.id or 0] = chosen
    return found


def _governing(newest_first: Sequence[Decision], version: str) -> Decision | None:
    decisions = [d for d in newest_first if d.version in (version, None)]
    for decision in decisions:
        if decision.team is None and decision.verdict == DecisionVerdict.BLOCK:
            return decision
    team_level = [d for d in decisions if d.team is not None]
    specific = [d for d in team_level if d.version is not None]
    chosen = specific or team_level
    return chosen[0] if chosen else None


#: How many names one ``IN`` list holds (well under every backend's parameter limit).
_NAMES_PER_QUERY = 500


def may_govern_new_versions(session: Session, *, team: str | None, names: Iterable[str]) -> bool:
    """Whether the policy could refuse new versions of ``names`` built on each other for ``team``.

    True when an active decision (of the team, or of every team) names one of
    them, or when the team requires approval (a new parent is never approved).
    A caller that finds False may register such a lineage without checking each
    version: :func:`registration_violations` would find nothing.
    """
    required = require_team(session, team)
    if required is not None and required.require_approval:
        return True
    wanted = sorted(set(names))
    for start in range(0, len(wanted), _NAMES_PER_QUERY):
        found = session.exec(
            select(Decision.id)
            .where(
                Decision.active,
                col(Decision.name).in_(wanted[start : start + _NAMES_PER_QUERY]),
                or_(col(Decision.team) == team, col(Decision.team).is_(None)),
            )
            .limit(1)
        ).first()
        if found is not None:
            return True
    return False


def registration_violations(
    session: Session, *, team: str | None, parents: Sequence[tuple[Artifact, Relation]]
) -> list[str]:
    """Why building on these parents for this team breaks the policy (empty: it doesn't).

    A tainted parent counts only over an edge that carries compromise: evaluating
    on a poisoned benchmark does not infect the model, so it is not refused.
    Besides each parent's own decision, a block of the team on any ancestor of
    a parent counts too: a model built on a blocked base is built on it still.

    A registration with no team meets only the rules of every team (taint, flag
    blocks): each team's own approvals and blocks are checked over the model's
    whole lineage when that team deploys it (:func:`deployment_violations`).
    """
    problems = [
        f"parent {ref_of(parent)} is {parent.status}"
        for parent, relation in parents
        if Status(parent.status).is_tainted and DEFAULT_PROPAGATION[relation]
    ]
    models = [parent for parent, _ in parents if parent.kind == Kind.MODEL]
    problems += registry_scan_violations(session, team=team, artifacts=models, role="parent ")
    return problems + parent_violations(session, team=team, parents=models, flag_blocks=True)


def registry_scan_violations(
    session: Session, *, team: str | None, artifacts: Sequence[Artifact], role: str = ""
) -> list[str]:
    """For a team that requires registry-scanned bases: the versions the registry does
    not hold, or holds but has not scanned itself."""
    required = require_team(session, team)
    if required is None or not required.require_registry_scan:
        return []
    problems = []
    for artifact in artifacts:
        if not artifact.stored:
            problems.append(
                f"{role}{ref_of(artifact)} is metadata-only (team {team} requires "
                "models stored and scanned by the registry)"
            )
        elif not registry_scanned(session, artifact):
            problems.append(
                f"{role}{ref_of(artifact)} has no scan by the registry (team {team} requires one)"
            )
    return problems


def registry_scanned(session: Session, artifact: Artifact) -> bool:
    """Whether the newest static scan of ``artifact`` is one the registry ran itself."""
    provenance = session.exec(
        select(ScanRecord.provenance)
        .where(ScanRecord.artifact_id == artifact.id)
        .order_by(col(ScanRecord.id).desc())
    ).first()
    return provenance == "registry"


def lineage_violations(
    session: Session, *, team: str | None, parents: Sequence[tuple[Artifact, Relation]]
) -> list[str]:
    """Why adding these parents to a registered model of ``team`` breaks the team's policy.

    A tainted or flagged parent is not refused: recording a compromised base found
    late is how its descendants become infected. A block of the team, or a parent
    the team has not approved where it requires approval, is refused as it would
    be at registration.
    """
    models = [parent for parent, _ in parents if parent.kind == Kind.MODEL]
    return parent_violations(session, team=team, parents=models, flag_blocks=False)


def refuse_lineage(
    session: Session, *, child: Artifact, parents: Sequence[tuple[Artifact, Relation]]
) -> None:
    """Refuse adding ``parents`` to ``child`` when :func:`lineage_violations` finds any."""
    problems = lineage_violations(session, team=child.team, parents=parents)
    if problems:
        raise PolicyViolation(
            "refused: " + "; ".join(problems),
            hint=f"an approver of team {child.team} may approve or unblock the parent first",
        )


def links_of(session: Session, artifact: Artifact) -> list[tuple[Artifact, Relation]]:
    """The parents already recorded for ``artifact`` (a placeholder keeps them when filled)."""
    if artifact.id is None:
        return []
    rows = session.exec(
        select(Artifact, Edge.relation)
        .join(Edge, col(Edge.parent_id) == col(Artifact.id))
        .where(Edge.child_id == artifact.id)
    ).all()
    return [(parent, Relation(relation)) for parent, relation in rows]


def parent_violations(
    session: Session, *, team: str | None, parents: Sequence[Artifact], flag_blocks: bool
) -> list[str]:
    """The team's blocks and missing approvals on these parent models and above them."""
    required = require_team(session, team)
    decisions = effective_decisions(session, team=team, artifacts=parents)
    problems = []
    for parent in parents:
        decision = decisions.get(parent.id or 0)
        if decision is not None and decision.verdict == DecisionVerdict.BLOCK:
            if flag_blocks or decision.team is not None:
                problems.append(
                    f"parent {ref_of(parent)} is blocked for {_scope(decision)}: {decision.reason}"
                )
        elif required is not None and required.require_approval and decision is None:
            problems.append(f"parent {ref_of(parent)} is not approved for team {team}")
    return problems + _blocks_above(session, team=team, nodes=parents)


def deployment_violations(session: Session, *, team: str, artifact: Artifact) -> list[str]:
    """Why deploying this version for this team breaks the policy.

    Deploying is checked against the deploying team's policy over the whole
    lineage, whoever registered the model and for whichever team (or none):

    - the model is tainted, or blocked for this team (or for every team);
    - an ancestor is blocked for this team;
    - the team requires approval and the model was neither registered for this
      team nor approved by it, and one of its parents is not approved for the
      team (the check its registration would have met, had it been for this team).
    """
    required = require_team(session, team)
    problems = []
    if Status(artifact.status).is_tainted:
        problems.append(f"{ref_of(artifact)} is {artifact.status}")
    decision = effective_decision(session, team=team, artifact=artifact)
    if decision is not None and decision.verdict == DecisionVerdict.BLOCK:
        problems.append(f"{ref_of(artifact)} is blocked for {_scope(decision)}: {decision.reason}")
    problems += _blocks_above(session, team=team, nodes=[artifact])
    problems += registry_scan_violations(session, team=team, artifacts=[artifact])
    vetted = artifact.team == team or (
        decision is not None and decision.verdict == DecisionVerdict.APPROVE
    )
    if required is not None and required.require_approval and not vetted:
        parents = _parent_models(session, artifact)
        decisions = effective_decisions(session, team=team, artifacts=parents)
        problems += [
            f"parent {ref_of(parent)} of {ref_of(artifact)} is not approved for team {team}"
            for parent in parents
            if (parent.id or 0) not in decisions
        ]
    return problems


def _blocks_above(session: Session, *, team: str | None, nodes: Sequence[Artifact]) -> list[str]:
    """The team's own blocks on any model ancestor of ``nodes`` (flag blocks show as taint)."""
    if team is None or not nodes:
        return []
    below: dict[int, Artifact] = {}
    for node in nodes:
        for ancestor_id in ancestor_rows(session, node.id or 0):
            below.setdefault(ancestor_id, node)
    if not below:
        return []
    ancestors = session.exec(
        select(Artifact).where(among(Artifact.id, below), Artifact.kind == Kind.MODEL)
    ).all()
    decisions = effective_decisions(session, team=team, artifacts=ancestors)
    problems = []
    for ancestor in sorted(ancestors, key=ref_of):
        decision = decisions.get(ancestor.id or 0)
        if (
            decision is not None
            and decision.verdict == DecisionVerdict.BLOCK
            and decision.team is not None
        ):
            problems.append(
                f"ancestor {ref_of(ancestor)} of {ref_of(below[ancestor.id or 0])} is blocked "
                f"for team {team}: {decision.reason}"
            )
    return problems


def _parent_models(session: Session, artifact: Artifact) -> list[Artifact]:
    return list(
        session.exec(
            select(Artifact)
            .join(Edge, col(Edge.parent_id) == col(Artifact.id))
            .where(Edge.child_id == artifact.id, Artifact.kind == Kind.MODEL)
            .order_by(col(Artifact.name), col(Artifact.version))
        ).all()
    )


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
    authorize(actor, Operation.OVERRIDE, team=team)
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
        verdict=DecisionVerdict(decision.verdict),
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
