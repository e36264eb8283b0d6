"""Pending admissions: the versions the registry is scanning before it records them.

Admission of a stored version runs in three steps: :func:`begin` holds the
version's name (a ``pending_admission`` row, in a short transaction of its own),
the scans run with no transaction open, and the transaction that records the
version deletes the row (:func:`finish`). While pending, the version is listed
(:func:`list_pending`, ``mbom admissions``) but it is no artifact: a reference to
it anywhere (a pull, a deploy, a ``--parent``, a decision) is refused with
:class:`~registry.errors.AdmissionPending` by :func:`refuse_reference`, which
:func:`registry.service.refs.resolve` calls when a name is not registered. There
is no way around it because there is nothing to get around: the version does
not exist until its admission ended.

The admitting process renews a lease (:func:`renew`). A row whose lease ran
out was left by a process that died mid-admission (a killed server, a lost
machine): the next registration of the same version takes it over
(``attempt`` + 1), and any other registration of that name supersedes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select, update

from registry.errors import AdmissionPending
from registry.identity import Actor
from registry.schemas import PendingAdmissionPublic
from registry.service._tx import mutation
from registry.settings import DEFAULT_ADMISSION_LEASE
from registry.tables import PendingAdmission, utcnow
from registry.vocabulary import Kind

__all__ = [
    "DEFAULT_LEASE",
    "Ticket",
    "abandon",
    "begin",
    "finish",
    "list_pending",
    "refuse_reference",
    "renew",
    "supersede_stalled",
]

#: How long an admitting process vouches for itself between heartbeats (seconds).
DEFAULT_LEASE = DEFAULT_ADMISSION_LEASE


@dataclass(frozen=True)
class Ticket:
    """The hold one admission attempt has on a version's name."""

    id: int
    attempt: int
    ref: str


def _aware(moment: datetime) -> datetime:
    """A stored time as UTC (SQLite hands back naive datetimes)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _stalled(row: PendingAdmission, now: datetime) -> bool:
    return _aware(row.lease_until) < now


def _find(session: Session, kind: Kind, name: str, version: str) -> PendingAdmission | None:
    return session.exec(
        select(PendingAdmission).where(
            PendingAdmission.kind == kind,
            PendingAdmission.name == name,
            PendingAdmission.version == version,
        )
    ).first()


def _since(moment: datetime) -> str:
    return _aware(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def _describe(row: PendingAdmission, now: datetime) -> str:
    ref = f"{row.name}@{row.version}"
    if _stalled(row, now):
        return (
            f"{ref} is pending admission, stalled: the process admitting it for {row.user} "
            f"stopped at the {row.step} step (no sign of life since {_since(row.lease_until)})"
        )
    return (
        f"{ref} is pending admission ({row.step}, since {_since(row.started_at)}, "
        f"registered by {row.user})"
    )


@mutation
def begin(
    session: Session,
    *,
    actor: Actor,
    kind: Kind,
    name: str,
    version: str,
    digest: str,
    team: str | None,
    lease: float = DEFAULT_LEASE,
) -> Ticket:
    """Hold ``name@version`` for an admission about to scan its files.

    Refused with :class:`~registry.errors.AdmissionPending` while another
    admission of that version is alive; a stalled one (its lease ran out) is
    taken over. The caller checks first that the version is not registered and
    that the actor may register it.
    """
    now = utcnow()
    until = now + timedelta(seconds=lease)
    row = _find(session, kind, name, version)
    if row is not None:
        if not _stalled(row, now):
            raise AdmissionPending(
                _describe(row, now),
                hint="wait for it to end; mbom admissions lists the versions being admitted",
            )
        row.attempt += 1
        row.digest, row.user, row.team = digest, actor.user, team
        row.step, row.started_at, row.lease_until = "queued", now, until
        session.add(row)
        session.flush()
        return Ticket(row.id or 0, row.attempt, f"{name}@{version}")
    row = PendingAdmission(
        kind=kind,
        name=name,
        version=version,
        digest=digest,
        user=actor.user,
        team=team,
        step="queued",
        started_at=now,
        lease_until=until,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # another admission of the same version won the race
        raise AdmissionPending(
            f"{name}@{version} is pending admission (registered at the same moment by another "
            "client)",
            hint="wait for it to end; mbom admissions lists the versions being admitted",
        ) from exc
    return Ticket(row.id or 0, row.attempt, f"{name}@{version}")


def _mine(ticket: Ticket) -> ColumnElement[bool]:
    return and_(
        col(PendingAdmission.id) == ticket.id,
        col(PendingAdmission.attempt) == ticket.attempt,
    )


@mutation
def renew(session: Session, ticket: Ticket, *, lease: float, step: str | None = None) -> bool:
    """Extend the lease (and record the step); False when the hold was lost (taken over)."""
    values: dict[str, object] = {"lease_until": utcnow() + timedelta(seconds=lease)}
    if step is not None:
        values["step"] = step
    result = session.execute(update(PendingAdmission).where(_mine(ticket)).values(**values))
    return bool(getattr(result, "rowcount", 0))


@mutation
def finish(session: Session, ticket: Ticket) -> None:
    """Release the hold in the transaction that records the version.

    Raises :class:`~registry.errors.AdmissionPending` when another attempt took
    the admission over (this one stalled for longer than its lease): the version
    is then that attempt's to record.
    """
    result = session.execute(delete(PendingAdmission).where(_mine(ticket)))
    if not getattr(result, "rowcount", 0):
        raise AdmissionPending(
            f"the admission of {ticket.ref} was taken over by another attempt "
            "after this one stopped renewing its lease",
            hint="mbom admissions shows the attempt now admitting it",
        )


@mutation
def abandon(session: Session, ticket: Ticket) -> None:
    """Release the hold of a refused or failed admission (nothing was recorded)."""
    session.execute(delete(PendingAdmission).where(_mine(ticket)))


def supersede_stalled(session: Session, *, kind: Kind, name: str, version: str) -> None:
    """Before any registration of ``name@version``: refuse if it is being admitted.

    A stalled admission (its process died) gives way: its row is deleted.
    """
    row = _find(session, kind, name, version)
    if row is None:
        return
    now = utcnow()
    if not _stalled(row, now):
        raise AdmissionPending(
            _describe(row, now),
            hint="wait for it to end; mbom admissions lists the versions being admitted",
        )
    session.delete(row)
    session.flush()


def refuse_reference(session: Session, *, kind: Kind | None, name: str, version: str) -> None:
    """Raise :class:`~registry.errors.AdmissionPending` when the unregistered
    ``name@version`` is being admitted (called where a reference did not resolve)."""
    query = select(PendingAdmission).where(
        PendingAdmission.name == name, PendingAdmission.version == version
    )
    if kind is not None:
        query = query.where(PendingAdmission.kind == kind)
    row = session.exec(query).first()
    if row is None:
        return
    now = utcnow()
    hint = (
        "register it again to resume its admission"
        if _stalled(row, now)
        else "it can be pulled, deployed or used as a parent once admission ends"
    )
    raise AdmissionPending(_describe(row, now) + ": it is not registered yet", hint=hint)


def list_pending(session: Session) -> list[PendingAdmissionPublic]:
    """Every version being admitted, oldest first, stalled ones marked."""
    now = utcnow()
    rows = session.exec(select(PendingAdmission).order_by(col(PendingAdmission.started_at))).all()
    return [
        PendingAdmissionPublic(
            ref=f"{row.name}@{row.version}",
            kind=Kind(row.kind),
            digest=row.digest,
            user=row.user,
            team=row.team,
            step=row.step,
            attempt=row.attempt,
            started_at=row.started_at,
            lease_until=row.lease_until,
            stalled=_stalled(row, now),
        )
        for row in rows
    ]
