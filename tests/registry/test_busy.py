"""Readers never wait for writers; a busy database is a clear refusal (issue 10, point 8).

A real second writer holds the registry's write lock (SQLite ``BEGIN IMMEDIATE``
on its own connection; PostgreSQL the writers' advisory lock) while the API and
the embedded CLI read — they answer at once — and write — they are refused with
a 503 problem carrying ``Retry-After``, or one line on stderr and exit 1, after
the (shortened) busy timeout.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from registry import service
from registry.api import create_app
from registry.client import LocalRegistry
from registry.db import make_engine, migrate, unit_of_work
from registry.errors import ConfigurationError
from registry.identity import Actor, Role
from registry.settings import Settings
from tests.registry.live_server import serve_in_thread
from tests.registry.test_api import assert_problem
from tests.registry.test_cli import MBOM, cli_env

BUSY_TIMEOUT = 1.0
PROMPT = 5.0  # seconds: far below the default busy timeout of 30
ADMIN = Actor("alice", Role.ADMIN)


@contextmanager
def writer_holding_the_lock(database_url: str) -> Iterator[None]:
    """Another writer, in its own connection, holding the registry's write lock."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        holder = sqlite3.connect(url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO team (name, require_approval, created_at) "
                       "VALUES ('held', 0, '2026-01-01')")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection, connection.begin():
            connection.execute(text("SELECT pg_advisory_xact_lock(1835167597)"))
            yield
    finally:
        engine.dispose()


@pytest.fixture
def busy_engine(database_url: str) -> Iterator[Engine]:
    """An engine on a fresh registry whose writers wait at most BUSY_TIMEOUT."""
    engine = make_engine(database_url, busy_timeout=BUSY_TIMEOUT)
    migrate(engine)
    LocalRegistry(engine, ADMIN).create_team(name="t")
    yield engine
    engine.dispose()


def test_api_reads_while_a_writer_holds_the_lock_and_a_second_writer_gets_503(
    busy_engine: Engine, database_url: str
) -> None:
    token = LocalRegistry(busy_engine, ADMIN).create_token(user="ci", role=Role.ADMIN)
    settings = Settings(database_url=database_url, busy_timeout=BUSY_TIMEOUT)
    headers = {"Authorization": f"Bearer {token.token}"}
    with serve_in_thread(create_app(settings, engine=busy_engine)) as url, httpx.Client(
        base_url=f"{url}/api/v1", headers=headers, timeout=PROMPT
    ) as http, writer_holding_the_lock(database_url):
        started = time.monotonic()
        teams = http.get("/teams")
        assert teams.status_code == 200, teams.text
        assert [t["name"] for t in teams.json()] == ["t"]
        assert time.monotonic() - started < BUSY_TIMEOUT
        refused = http.post("/teams", json={"name": "second"})
        problem = assert_problem(refused, 503, "database-busy")
        assert refused.headers["retry-after"] == "1"
        assert "busy" in problem["detail"]
        assert "MBOM_BUSY_TIMEOUT" in problem["detail"]
    assert "second" not in {t.name for t in LocalRegistry(busy_engine).list_teams()}


@pytest.mark.usefixtures("busy_engine")
def test_embedded_cli_reads_while_a_writer_holds_the_lock_and_a_writer_gets_one_line(
    database_url: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, MBOM_DATABASE_URL=database_url, MBOM_BUSY_TIMEOUT=str(BUSY_TIMEOUT))
    with writer_holding_the_lock(database_url):
        reader = subprocess.Popen([str(MBOM), "team", "list"], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        writer = subprocess.Popen([str(MBOM), "team", "create", "second"], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        read_out, read_err = reader.communicate(timeout=PROMPT + 10)
        _, write_err = writer.communicate(timeout=PROMPT + 10)
    assert reader.returncode == 0, read_err
    assert "t" in read_out.split()
    assert writer.returncode == 1, write_err
    lines = write_err.strip().splitlines()
    assert len(lines) == 1, write_err
    assert lines[0].startswith("mbom: error: the registry database is busy")


def test_a_unit_of_work_that_reads_then_writes_takes_the_lock_without_blocking_others(
    busy_engine: Engine,
) -> None:
    with unit_of_work(busy_engine) as session:
        assert [t.name for t in service.list_teams(session)] == ["t"]
        # Another writer commits while this one has only read: it is not blocked ...
        LocalRegistry(busy_engine, ADMIN).create_team(name="other")
        # ... and this one then writes on top of it, under the lock, twice (nested).
        service.create_team(session, actor=ADMIN, name="mine")
        service.create_team(session, actor=ADMIN, name="mine-too")
    reg = LocalRegistry(busy_engine, ADMIN)
    assert sorted(t.name for t in reg.list_teams()) == ["mine", "mine-too", "other", "t"]
    assert reg.verify_chain().ok


class InjectedFailure(Exception):
    """Raised by the test after the operations under test."""


def _two_mutations_then_fail(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        service.list_teams(session)
        service.create_team(session, actor=ADMIN, name="first")
        service.create_team(session, actor=ADMIN, name="second")
        raise InjectedFailure


def test_a_second_mutation_in_one_unit_of_work_does_not_commit_the_first(
    busy_engine: Engine,
) -> None:
    with pytest.raises(InjectedFailure):
        _two_mutations_then_fail(busy_engine)
    names = {t.name for t in LocalRegistry(busy_engine).list_teams()}
    assert names == {"t"}


@pytest.mark.parametrize(("value", "seconds"), [(None, 30.0), ("", 30.0), ("2.5", 2.5)])
def test_busy_timeout_is_read_from_the_environment(value: str | None, seconds: float) -> None:
    env = {"MBOM_DATABASE_URL": "sqlite:///x.db"}
    if value is not None:
        env["MBOM_BUSY_TIMEOUT"] = value
    assert Settings.from_env(env).busy_timeout == seconds


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "1e9"])
def test_a_bad_busy_timeout_is_a_configuration_error(value: str) -> None:
    env = {"MBOM_DATABASE_URL": "sqlite:///x.db", "MBOM_BUSY_TIMEOUT": value}
    with pytest.raises(ConfigurationError, match="MBOM_BUSY_TIMEOUT is not a number of seconds"):
        Settings.from_env(env)
