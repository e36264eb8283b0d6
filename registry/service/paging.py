"""Counting what a list query would return, for pages that say how many there are."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select
from sqlmodel.sql.expression import SelectOfScalar


def count(session: Session, query: SelectOfScalar[Any] | Any) -> int:
    """How many rows ``query`` selects (its order and limits ignored)."""
    inner = query.order_by(None).limit(None).offset(None).subquery()
    return int(session.exec(select(func.count()).select_from(inner)).one())
