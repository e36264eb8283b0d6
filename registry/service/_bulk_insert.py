"""Writing many rows at once, inside the caller's transaction.

SQLite takes an ``executemany`` well; psycopg runs it as one statement per row
(pipelined), so on PostgreSQL the rows go through ``COPY … FROM STDIN`` on the
session's own connection instead (same transaction: a failure rolls it back).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import JSON, Table, insert
from sqlmodel import Session, SQLModel

__all__ = ["insert_rows"]

_BATCH = 5000


def insert_rows(session: Session, model: type[SQLModel], rows: Iterable[dict[str, Any]]) -> None:
    """Insert ``rows`` (column name -> value; every row the same columns) into ``model``'s table."""
    table = model.__table__  # type: ignore[attr-defined]
    if session.connection().dialect.name == "postgresql":
        _copy(session, table, rows)
        return
    for batch in _batches(rows):
        session.execute(insert(model), batch)


def _copy(session: Session, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    connection = session.connection().connection.driver_connection  # psycopg's, in the transaction
    assert connection is not None
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return
    columns = list(first)
    json_columns = {c for c in columns if isinstance(table.columns[c].type, JSON)}
    names = ", ".join(f'"{c}"' for c in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    with connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in itertools.chain([first], iterator):
            values = [row[c] for c in columns]
            if json_columns:
                values = [_json(row[c]) if c in json_columns else row[c] for c in columns]
            copy.write_row(values)


def _json(value: Any) -> Any:
    # COPY's text format takes the JSON text (a list would go as an array); None stays NULL.
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
