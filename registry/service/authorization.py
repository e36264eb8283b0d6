"""Who may do what: the role and the team scope of every writing operation, in one place.

Every service verb that writes calls :func:`authorize` (or :func:`authorize_model`)
before it reads what it will change; the REST routes, the CLI and the importers
never decide. :data:`RULES` is the whole table: an operation missing from it
cannot be authorized.

Roles are ordered reader < publisher < approver < admin (:class:`~registry.identity.Role`).
Teams scope actors and operations:

- An **admin** may do everything, for every team.
- A **team-less** actor (a token without ``--team``) holds its role for every
  team: a platform-wide publisher or approver.
- A **team-scoped** actor acts only for its own team. It may not act for another
  team, nor with no team at all: a registration, deployment or override left
  without ``--team`` would escape its team's approvals and blocks.

Each operation is scoped one of four ways (:class:`Scope`):

- ``GLOBAL``: the role is enough (datasets, tokens, keys, teams, flags).
- ``TEAM``: the team the operation names (``register --team``, ``deploy --team``,
  ``approve --team``); a team-scoped actor must name its own.
- ``MODEL``: the team of the model written to (its lineage, its scans). A
  team-less model belongs to nobody in particular, so only team-less actors and
  admins may change it.
- ``MODEL_AND_DEPLOYERS``: the model's team and every team deploying it (a
  clearance changes what each of them runs): a team-scoped approver may clear
  only its own team's model, when no other team deploys it; a team-less model
  (which any team may deploy next) or a shared one needs a team-less approver
  or an admin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum

from sqlmodel import Session, col, select

from registry.errors import PermissionDenied
from registry.identity import Actor, Role
from registry.service._idset import among
from registry.service.graph import descendant_rows
from registry.service.refs import ref_of
from registry.tables import Artifact, Decision, Deployment


class Scope(Enum):
    """Which team an operation is scoped by (see the module docstring)."""

    GLOBAL = "global"
    TEAM = "team"
    MODEL = "model"
    MODEL_AND_DEPLOYERS = "model and deployers"


class Operation(StrEnum):
    """Every writing operation; the value is how an error names it."""

    REGISTER_MODEL = "register models"
    IMPORT_HF = "import models"
    IMPORT_BOM = "import bills of materials"
    REGISTER_DATASET = "register datasets"
    CHANGE_LINEAGE = "change lineage"
    RESCAN = "rescan models"
    FLAG = "flag artifacts"
    UNFLAG = "unflag artifacts"
    CLEAR = "clear infections"
    ATTACH_TRIGGER = "attach triggers"
    RECORD_REPLAYS = "record trigger replays"
    DEPLOY = "deploy models"
    UNDEPLOY = "undeploy models"
    CREATE_TEAM = "create teams"
    APPROVE = "approve models"
    BLOCK = "block models"
    OVERRIDE = "override the policy"
    CREATE_TOKEN = "create tokens"
    REVOKE_TOKEN = "revoke tokens"
    LIST_TOKENS = "list tokens"
    ENROLL_KEY = "enroll publisher keys"
    ANCHOR_AUDIT = "anchor the audit log"
    UPLOAD_FILES = "upload model files"
    PULL = "pull models"
    COLLECT_STORE = "collect unreferenced blobs"


@dataclass(frozen=True)
class Rule:
    """The least role an operation needs, and what scopes it by team."""

    role: Role
    scope: Scope


RULES: Mapping[Operation, Rule] = {
    Operation.REGISTER_MODEL: Rule(Role.PUBLISHER, Scope.TEAM),
    Operation.IMPORT_HF: Rule(Role.PUBLISHER, Scope.TEAM),
    Operation.IMPORT_BOM: Rule(Role.PUBLISHER, Scope.TEAM),
    Operation.REGISTER_DATASET: Rule(Role.PUBLISHER, Scope.GLOBAL),
    Operation.CHANGE_LINEAGE: Rule(Role.PUBLISHER, Scope.MODEL),
    Operation.RESCAN: Rule(Role.PUBLISHER, Scope.MODEL),
    # A rescan whose verdict flags the model is a flag: see flag_or_rescan().
    Operation.FLAG: Rule(Role.ADMIN, Scope.GLOBAL),
    Operation.UNFLAG: Rule(Role.ADMIN, Scope.GLOBAL),
    Operation.CLEAR: Rule(Role.APPROVER, Scope.MODEL_AND_DEPLOYERS),
    Operation.ATTACH_TRIGGER: Rule(Role.ADMIN, Scope.GLOBAL),
    Operation.RECORD_REPLAYS: Rule(Role.ADMIN, Scope.GLOBAL),
    Operation.DEPLOY: Rule(Role.PUBLISHER, Scope.TEAM),
    Operation.UNDEPLOY: Rule(Role.PUBLISHER, Scope.TEAM),
    Operation.CREATE_TEAM: Rule(Role.ADMIN, Scope.GLOBAL),
    Operation.APPROVE: Rule(Role.APPROVER, Scope.TEAM),
    Operation.BLOCK: Rule(Role.APPROVER, Scope.TEAM),
    Operation.OVERRIDE: Rule(Role.APPROVER, Scope.TEAM),
    Operation.CREATE_TOKEN: Rule(Role.ADMIN, Scope.GLOBAL),
    Operation.REVOKE_TOKEN: Rule(Role.ADMIN, Scope.GLOBAL),
    Operation.LIST_TOKENS: Rule(Role.ADMIN, Scope.GLOBAL),
    Operation.ENROLL_KEY: Rule(Role.ADMIN, Scope.GLOBAL),
    Operation.ANCHOR_AUDIT: Rule(Role.ADMIN, Scope.GLOBAL),
    # Bytes alone change nothing: a blob matters once a registration (team-scoped) names it.
    Operation.UPLOAD_FILES: Rule(Role.PUBLISHER, Scope.GLOBAL),
    Operation.PULL: Rule(Role.READER, Scope.TEAM),
    Operation.COLLECT_STORE: Rule(Role.ADMIN, Scope.GLOBAL),
}


def authorize(actor: Actor, operation: Operation, *, team: str | None = None) -> None:
    """Refuse unless ``actor`` may do a ``GLOBAL`` or ``TEAM`` operation (for ``team``).

    Raises :class:`~registry.errors.PermissionDenied` naming the role or team missing.
    """
    rule = RULES[operation]
    if rule.scope not in (Scope.GLOBAL, Scope.TEAM):
        raise ValueError(f"{operation.name} is scoped by a model: use authorize_model")
    actor.require(rule.role, action=operation.value, team=team)
    if rule.scope is Scope.TEAM and team is None and _scoped(actor):
        raise PermissionDenied(
            f"{actor.user} acts for team {actor.team} and may not {operation.value} without a team",
            hint=f"pass --team {actor.team}: a team-less action would skip that team's policy",
        )


def authorize_model(
    session: Session, actor: Actor, operation: Operation, *, artifact: Artifact
) -> None:
    """Refuse unless ``actor`` may do a ``MODEL``-scoped operation on ``artifact``."""
    rule = RULES[operation]
    if rule.scope is Scope.MODEL_AND_DEPLOYERS:
        _require_every_team(actor, operation, artifact, concerned_teams(session, artifact))
        return
    if rule.scope is not Scope.MODEL:
        authorize(actor, operation, team=artifact.team if rule.scope is Scope.TEAM else None)
        return
    actor.require(rule.role, action=operation.value, team=artifact.team)
    if artifact.team is None and _scoped(actor):
        raise PermissionDenied(
            f"{actor.user} acts for team {actor.team} and may not {operation.value} on "
            f"{ref_of(artifact)}, which belongs to no team",
            hint="ask a publisher without a team scope, or an admin",
        )


def authorize_quarantine(
    session: Session, actor: Actor, placeholder: Artifact | None, *, flags: bool
) -> None:
    """A registration whose admission scan quarantines a placeholder others build on is a flag.

    Filling a placeholder keeps its descendants; a compromised or malicious
    verdict would infect them all, so it needs the flag permission, as a
    compromised rescan does (a new model with no descendants needs nothing more).
    """
    if flags and placeholder is not None and descendant_rows(session, placeholder.id or 0):
        authorize(actor, Operation.FLAG)


def authorize_fill(session: Session, actor: Actor, placeholder: Artifact) -> None:
    """Refuse a team-scoped actor filling a placeholder other teams build on or decided on.

    Filling gives the placeholder files, an owner (the filler's team) and the
    version-level decisions made on it: a team-scoped publisher could otherwise
    take over a base another team's models descend from (then change its lineage
    at will), or inherit another team's approval for bytes of its own choosing.
    """
    if not _scoped(actor):
        return
    teams = set(
        session.exec(
            select(Artifact.team).where(
                among(Artifact.id, descendant_rows(session, placeholder.id or 0)),
                col(Artifact.team).is_not(None),
            )
        ).all()
    ) | set(
        session.exec(
            select(Decision.team).where(
                Decision.name == placeholder.name,
                Decision.version == placeholder.version,
                col(Decision.active).is_(True),
                col(Decision.team).is_not(None),
            )
        ).all()
    )
    others = sorted(str(team) for team in teams - {actor.team})
    if others:
        raise PermissionDenied(
            f"{actor.user} acts for team {actor.team} and may not fill {ref_of(placeholder)}: "
            f"team {', '.join(others)} builds on it or decided on it",
            hint="a publisher without a team scope, or an admin, may register it",
        )


def rescan_operation(*, flags: bool) -> Operation:
    """A rescan whose verdict flags the model needs the flag permission; others a rescan's."""
    return Operation.FLAG if flags else Operation.RESCAN


def concerned_teams(session: Session, artifact: Artifact) -> set[str]:
    """The model's own team and every team with an active deployment of it."""
    deploying = session.exec(
        select(Deployment.team).where(
            Deployment.artifact_id == artifact.id, col(Deployment.active).is_(True)
        )
    ).all()
    return set(deploying) | ({artifact.team} if artifact.team else set())


def _require_every_team(
    actor: Actor, operation: Operation, artifact: Artifact, teams: set[str]
) -> None:
    rule = RULES[operation]
    actor.require(rule.role, action=operation.value)
    if not _scoped(actor):
        return
    if artifact.team is None:
        # Every team may deploy a team-less model later: clearing it is not one team's call
        # (a team's approver could otherwise deploy it with an override, be the only team
        # concerned, clear it, and so clear it for every team that deploys it next).
        raise PermissionDenied(
            f"{actor.user} acts for team {actor.team} and may not {operation.value} on "
            f"{ref_of(artifact)}, which belongs to no team: it concerns every team",
            hint="an approver without a team scope, or an admin, may",
        )
    others = sorted(teams - {actor.team})
    if others:
        raise PermissionDenied(
            f"{actor.user} acts for team {actor.team} and may not {operation.value} for "
            f"team {', '.join(others)}: {ref_of(artifact)} concerns " + ", ".join(sorted(teams)),
            hint="an approver without a team scope, or an admin, may",
        )
    if not teams:
        raise PermissionDenied(
            f"{actor.user} acts for team {actor.team} and may not {operation.value} on "
            f"{ref_of(artifact)}, which belongs to no team and no team deploys",
            hint="an approver without a team scope, or an admin, may",
        )


def _scoped(actor: Actor) -> bool:
    return actor.role is not Role.ADMIN and actor.team is not None
