"""Pulling a vetted version from the registry: the gate, and the record of who took what.

A pull is allowed by the same rules as a deployment for the pulling team (the
version tainted, blocked for the team or along its lineage, or not approved
where the team requires approval is refused unless an approver overrides), and
only for a version the registry holds and has scanned itself. Every allowed pull
is recorded before a byte is handed out, so ``descendants --deployed`` and
``status`` can name who took a model that is flagged later.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from lineage import Status
from registry.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from registry.identity import Actor
from registry.schemas import PullTicket, StoredFilePublic
from registry.service import audit, policy
from registry.service._tx import mutation
from registry.service.authorization import Operation, authorize
from registry.service.refs import ref_of, resolve
from registry.service.stored import stored_manifest
from registry.tables import Artifact, Pull, utcnow
from registry.vocabulary import DecisionVerdict, Finding, Kind

#: How long a recorded pull may fetch its files (a pull is one download, not a licence).
PULL_WINDOW = timedelta(hours=6)


def pull_violations(session: Session, artifact: Artifact, *, team: str | None) -> list[str]:
    """Why handing ``artifact`` out (to ``team``) breaks the policy.

    The deploy rules, and one more: a team that requires approval takes as a base
    only what it approved (or registered itself), since a pulled model is a base.
    """
    if team is not None:
        problems = policy.deployment_violations(session, team=team, artifact=artifact)
        required = policy.require_team(session, team)
        decision = policy.effective_decision(session, team=team, artifact=artifact)
        approved = decision is not None and decision.verdict == DecisionVerdict.APPROVE
        vetted = approved or artifact.team == team
        if required is not None and required.require_approval and not vetted:
            problems.append(f"{ref_of(artifact)} is not approved for team {team}")
        return problems
    if Status(artifact.status).is_tainted:
        return [f"{ref_of(artifact)} is {artifact.status}"]
    return []


@mutation
def start_pull(
    session: Session,
    ref: str,
    *,
    actor: Actor,
    team: str | None = None,
    override: str | None = None,
) -> PullTicket:
    """Check and record a pull of a stored version; the ticket lists the files to fetch."""
    authorize(actor, Operation.PULL, team=team)
    artifact = resolve(session, ref, kind=Kind.MODEL)
    if not artifact.stored or artifact.placeholder:
        raise NotFound(
            "stored files of",
            ref_of(artifact),
            message=f"{ref_of(artifact)} is metadata-only: the registry does not hold its files",
            hint="pull it from where it is kept (its source), or register it with its files",
        )
    if artifact.finding == Finding.UNSCANNED and not Status(artifact.status).is_tainted:
        raise Conflict(
            f"{ref_of(artifact)} has not been scanned by the registry yet",
            hint=f"an admin runs mbom rescan {ref_of(artifact)}",
        )
    policy.enforce(
        session,
        actor=actor,
        violations=pull_violations(session, artifact, team=team),
        override=override,
        team=team,
        subject=ref_of(artifact),
    )
    pull = Pull(
        artifact_id=artifact.id or 0,
        user=actor.user,
        team=team,
        digest=artifact.digest or "",
        override=override,
    )
    session.add(pull)
    session.flush()
    audit.record(
        session,
        actor=actor,
        operation="pull",
        subject=ref_of(artifact),
        details={"team": team, "digest": artifact.digest, "override": override},
    )
    manifest = stored_manifest(session, artifact)
    return PullTicket(
        id=pull.id or 0,
        ref=ref_of(artifact),
        digest=artifact.digest or "",
        files=[
            StoredFilePublic(path=e.path, size=e.size, sha256=e.sha256) for e in manifest.entries
        ],
    )


def pulled_file(session: Session, pull_id: int, index: int, *, actor: Actor) -> StoredFilePublic:
    """The ``index``-th file of a recorded pull, if ``actor`` may fetch it now.

    Only the puller fetches, within :data:`PULL_WINDOW`, and never once the
    version became tainted: a flag between the pull and the download stops it.
    """
    pull = session.get(Pull, pull_id)
    if pull is None or pull.user != actor.user:
        raise NotFound("pull", str(pull_id))
    if utcnow() - _utc(pull.created_at) > PULL_WINDOW:
        raise PermissionDenied(
            f"pull {pull_id} has expired", hint="pull again: each pull is checked and recorded"
        )
    artifact = session.get(Artifact, pull.artifact_id)
    assert artifact is not None
    if pull.override is None:  # a flag, a block or a withdrawn approval since stops it
        problems = pull_violations(session, artifact, team=pull.team)
        if problems:
            raise PermissionDenied(
                f"pull {pull_id} of {ref_of(artifact)} is no longer allowed: "
                + "; ".join(problems),
                hint="pull again: each pull is checked against the rules of now",
            )
    entries = stored_manifest(session, artifact).entries
    if not 0 <= index < len(entries):
        raise InvalidInput(f"pull {pull_id} has {len(entries)} files; there is no file {index}")
    entry = entries[index]
    return StoredFilePublic(path=entry.path, size=entry.size, sha256=entry.sha256)


def _utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC time (SQLite gives naive UTC back)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
