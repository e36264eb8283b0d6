"""Digests of the state tables the audit log vouches for.

The last audit event of each transaction seals these digests (see
:mod:`registry.service.audit`); ``mbom check`` recomputes them from the
tables and names each table that changed without an audited operation —
a flag deactivated, a clearance added or a decision deleted by hand.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlmodel import Session, col, select

from registry.tables import Clearance, Decision, Flag


def _active_flags(session: Session) -> Sequence[tuple[Any, ...]]:
    query = select(Flag.id, Flag.artifact_id, Flag.reason).where(col(Flag.active))
    return [tuple(row) for row in session.exec(query)]


def _active_clearances(session: Session) -> Sequence[tuple[Any, ...]]:
    query = select(Clearance.id, Clearance.artifact_id, Clearance.source_id).where(
        col(Clearance.active)
    )
    return [tuple(row) for row in session.exec(query)]


def _active_decisions(session: Session) -> Sequence[tuple[Any, ...]]:
    query = select(
        Decision.id, Decision.team, Decision.name, Decision.version, Decision.verdict
    ).where(col(Decision.active))
    return [tuple(row) for row in session.exec(query)]


#: What each digest covers: the active rows of a table that decides a status or a policy.
TABLES: dict[str, Callable[[Session], Sequence[tuple[Any, ...]]]] = {
    "flags": _active_flags,
    "clearances": _active_clearances,
    "decisions": _active_decisions,
}


def state_of(session: Session) -> dict[str, Any]:
    """``{table: [active rows, sha256 of them]}`` for each table in :data:`TABLES`."""
    return {name: _digest(rows(session)) for name, rows in TABLES.items()}


def _digest(rows: Sequence[tuple[Any, ...]]) -> list[Any]:
    ordered = sorted(rows, key=lambda row: json.dumps(row, default=str))
    encoded = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, default=str)
    return [len(ordered), hashlib.sha256(encoded.encode()).hexdigest()]


def state_differences(session: Session, recorded: dict[str, Any], seq: int) -> list[str]:
    """Where the tables now differ from the state the audit log recorded at event ``seq``."""
    problems = []
    for name, now in state_of(session).items():
        then = recorded.get(name)
        if then != now:
            count = then[0] if isinstance(then, list) and then else "?"
            problems.append(
                f"active {name}: {now[0]} now, {count} as the audit log recorded at event "
                f"{seq}, and their digests differ: the {name} table was changed outside mbom"
            )
    return problems
