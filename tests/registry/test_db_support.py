"""Fast, isolated registries for the service tests, and a dump of every table.

Cloning a PostgreSQL database per test costs about a second; these tests
instead share one migrated database per test module and delete every row before
each test, and copy a migrated SQLite file. Every test still starts from an
empty registry of its own. Import ``fast_engine`` (with the two module fixtures
it uses) into a test module to replace the conftest's ``engine`` there; ``reg``
follows.

pytest collects this module too; it holds no tests.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import registry.tables  # noqa: F401  (puts the tables on SQLModel.metadata)
from registry.audit_key import AuditKeyFile
from registry.db import make_engine, migrate
from registry.service.audit import bind_key

PG_URL = os.environ.get("MBOM_TEST_POSTGRES_URL")
Snapshot = dict[str, list[tuple[Any, ...]]]

#: For checks that refuse bad input before anything is written: the backend
#: makes no difference there, and test_transactions proves the rollback on both.
SQLITE_ONLY = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


@pytest.fixture(scope="module", name="mbom_sqlite_template")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite registry file to copy."""
    path = tmp_path_factory.mktemp("template") / "registry.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="module", name="mbom_pg_database")
def pg_database(pg_template: str) -> Iterator[str]:
    """The URL of a migrated PostgreSQL database shared by one test module."""
    assert PG_URL
    name = f"mbom_test_{uuid.uuid4().hex[:12]}"
    server = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        server.dispose()


@pytest.fixture(
    name="engine", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fast_engine(
    request: pytest.FixtureRequest, tmp_path: Path, audit_key_file: AuditKeyFile
) -> Iterator[Engine]:
    """An engine on an empty, migrated registry (its audit log keyed): SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        target = tmp_path / "registry.db"
        shutil.copyfile(request.getfixturevalue("mbom_sqlite_template"), target)
        created = make_engine(f"sqlite:///{target}")
    else:
        created = make_engine(request.getfixturevalue("mbom_pg_database"))
        empty(created)
    bind_key(created, audit_key_file)
    yield created
    created.dispose()


def empty(engine: Engine) -> None:
    """Delete every row of every registry table (the schema and its revision stay).

    Plain DELETEs: on a few rows they are several times faster than TRUNCATE,
    and no test depends on the values ids start from.
    """
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


def snapshot(engine: Engine) -> Snapshot:
    """Every row of every registry table, in primary-key order."""
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in SQLModel.metadata.sorted_tables
        }


def row_counts(engine: Engine) -> dict[str, int]:
    """How many rows each registry table holds."""
    return {name: len(rows) for name, rows in snapshot(engine).items()}
