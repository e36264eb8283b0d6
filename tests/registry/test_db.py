"""Engines, migrations and settings: the schema comes from Alembic and matches the tables."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

import registry.db
import registry.tables  # noqa: F401  (puts the tables on SQLModel.metadata)
from registry.client import LocalRegistry
from registry.db import HEAD_REVISION, current_revision, make_engine, migrate, unit_of_work
from registry.errors import ConfigurationError, InvalidInput
from registry.identity import Actor, Role
from registry.manifest import Manifest, ManifestEntry
from registry.settings import DEFAULT_DB_FILENAME, Settings
from registry.tables import Artifact
from tests.conftest import fake_manifest
from tests.registry.test_db_support import (  # noqa: F401  (fixtures: engine and what it needs)
    fast_engine,
    pg_database,
    snapshot,
    sqlite_template,
)

PG_URL = os.environ.get("MBOM_TEST_POSTGRES_URL")
MIGRATIONS = Path(registry.db.__file__).parent / "migrations"
TABLES = set(SQLModel.metadata.tables)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database with no tables at all (not cloned from the template)."""
    if request.param == "sqlite":
        created = make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'registry.db'}")
        yield created
        created.dispose()
        return
    request.getfixturevalue("pg_template")  # skips (or fails) like the other PostgreSQL tests
    assert PG_URL
    name = f"mbom_empty_{uuid.uuid4().hex[:12]}"
    server = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    created = make_engine(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    try:
        yield created
    finally:
        created.dispose()
        with server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        server.dispose()


def _tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def _versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_migrate_creates_the_schema_on_an_empty_database(empty_engine: Engine) -> None:
    assert _tables(empty_engine) == set()
    assert current_revision(empty_engine) is None
    migrate(empty_engine)
    assert _tables(empty_engine) == TABLES | {"alembic_version"}
    assert current_revision(empty_engine) == HEAD_REVISION
    assert _versions(empty_engine) == [HEAD_REVISION]


def test_migrating_twice_is_a_no_op_that_keeps_the_data(empty_engine: Engine) -> None:
    migrate(empty_engine)
    reg = LocalRegistry(empty_engine, Actor("alice", Role.ADMIN))
    reg.register_model(name="m", version="1", manifest=fake_manifest("m"))
    migrate(empty_engine)
    assert _versions(empty_engine) == [HEAD_REVISION]
    assert _tables(empty_engine) == TABLES | {"alembic_version"}
    assert [a.ref for a in reg.list_artifacts()] == ["m@1"]
    assert reg.verify_chain().ok


def test_head_revision_is_alembics_single_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]


def test_migrated_schema_matches_the_table_definitions(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "n" * 301}, "the name of the artifact is 301 characters long; at most 300"),
        ({"source": "s3://bucket/\x00"}, "the source of the artifact contains a NUL character"),
        (
            {"manifest": Manifest((ManifestEntry("huge.bin", 2**64, "0" * 64),))},
            "a value cannot be stored",
        ),
    ],
)
def test_values_the_database_cannot_hold_are_bad_input(
    reg: LocalRegistry, options: dict[str, object], message: str
) -> None:
    before = snapshot(reg.engine)
    with pytest.raises(InvalidInput, match=message):
        reg.register_model(
            **{"name": "m", "version": "1", "manifest": fake_manifest("m"), **options},
        )
    assert snapshot(reg.engine) == before


@pytest.mark.parametrize(
    ("pragma", "expected"),
    [
        ("journal_mode", "wal"),
        ("foreign_keys", 1),
        ("busy_timeout", 30000),
    ],
)
def test_sqlite_connections_are_configured(tmp_path: Path, pragma: str, expected: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql(f"PRAGMA {pragma}").scalar() == expected
    finally:
        engine.dispose()


def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    migrate(engine)
    try:
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), engine.begin() as conn:
            conn.execute(
                text("INSERT INTO edge (parent_id, child_id, relation) VALUES (41, 42, 'finetune')")
            )
    finally:
        engine.dispose()


def test_make_engine_refuses_a_directory_it_cannot_create(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError, match="cannot create the registry directory"):
        make_engine(f"sqlite:///{blocker / 'sub' / 'registry.db'}")


def test_unit_of_work_commits_on_return_and_rolls_back_on_error(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    migrate(engine)
    row = {"kind": "model", "version": "1", "created_by": "alice"}

    def write_then_fail() -> None:
        with unit_of_work(engine) as session:
            session.add(Artifact(name="lost", **row))
            session.flush()
            raise RuntimeError("boom")

    try:
        with unit_of_work(engine) as session:
            session.add(Artifact(name="kept", **row))
        with pytest.raises(RuntimeError, match="boom"):
            write_then_fail()
        with engine.connect() as conn:
            assert list(conn.execute(text("SELECT name FROM artifact")).scalars()) == ["kept"]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a database url", "is not a database URL"),
        ("mysql://user@host/db", "unsupported database 'mysql'"),
        ("oracle://user@host/db", "unsupported database 'oracle'"),
    ],
)
def test_settings_refuse_unusable_database_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({"MBOM_DATABASE_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/mbom/registry.db",
        "postgresql+psycopg://mbom:secret@db.internal/mbom",
    ],
)
def test_settings_accept_sqlite_and_postgresql(url: str) -> None:
    assert Settings.from_env({"MBOM_DATABASE_URL": url}).database_url == url


def test_settings_default_to_a_sqlite_file_in_mbom_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"MBOM_HOME": str(tmp_path), "MBOM_SERVER": "", "MBOM_TOKEN": ""})
    assert settings == Settings(database_url=f"sqlite:///{tmp_path / DEFAULT_DB_FILENAME}")


def test_settings_read_the_server_and_token() -> None:
    settings = Settings.from_env(
        {
            "MBOM_DATABASE_URL": "sqlite:///x.db",
            "MBOM_SERVER": "http://reg:8000",
            "MBOM_TOKEN": "t",
        }
    )
    assert (settings.server, settings.token) == ("http://reg:8000", "t")
