"""Writing many rows at once, inside the caller's transaction.

SQLite takes an ``executemany`` well; psycopg runs it as one statement per row
(pipelined), so on PostgreSQL the rows go through ``COPY … FROM STDIN`` on the
session's own connection instead (same transaction: a failure rolls it back).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, SQLModel

__all__ = ["insert_rows"]

_BATCH = 5000


def insert_rows(session: Session, model: type[SQLModel], rows: Iterable[dict[str, Any]]) -> None:
    """Insert ``rows`` (column name -> value; every row the same columns) into ``model``'s table."""
    table = model.__table__  # type: ignore[attr-defined]
    if session.connection().dialect.name == "postgresql":
        _copy(session, table.name, rows)
        return
    for batch in _batches(rows):
        session.execute(insert(model), batch)


def _copy(session: Session, table: str, rows: Iterable[dict[str, Any]]) -> None:
    connection = session.connection().connection.driver_connection  # psycopg's, in the transaction
    assert connection is not None
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return
    columns = list(first)
    names = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cursor, cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
        for row in _chain(first, iterator):
            copy.write_row([_value(row[c]) for c in columns])


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


def _value(value: Any) -> Any:
    # JSON columns: COPY's text format takes the JSON text (a list would be sent as an array).
    return json.dumps(value) if isinstance(value, list | dict) else value


def _batches(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
