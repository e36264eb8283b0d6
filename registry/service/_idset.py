"""``column IN (ids)`` with the ids as one bound value, however many there are.

Rendering thousands of bound parameters is what made lineage queries slow
(SQLAlchemy and the driver spend milliseconds per thousand). PostgreSQL gets
one integer array (``= ANY(:ids)``), SQLite one JSON text read by
``json_each``; both plan it as an index look-up per id.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import Integer, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import NullType


class _Among(ColumnElement[bool]):
    """``column`` is one of ``ids`` (compiled per dialect below)."""

    type = NullType()  # type: ignore[assignment]  # not Boolean: SQLite would get "IN (…) = 1", which defeats the index
    inherit_cache = False  # the ids are part of the element, not of a cache key

    def __init__(self, column: ColumnElement[Any], ids: list[int]) -> None:
        self.column = column
        self.ids = ids


def among(column: Any, ids: Collection[int]) -> ColumnElement[bool]:
    """A condition true when ``column`` holds one of ``ids``."""
    return _Among(column, sorted({int(i) for i in ids}))


@compiles(_Among, "postgresql")
def _array(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    ids = bindparam(None, element.ids, type_=ARRAY(Integer()))
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(ids, **kw)})"


@compiles(_Among)
def _json_each(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    ids: BindParameter[str] = bindparam(None, json.dumps(element.ids))
    column = compiler.process(element.column, **kw)
    return f"{column} IN (SELECT value FROM json_each({compiler.process(ids, **kw)}))"
