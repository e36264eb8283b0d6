"""Engines, migrations and units of work.

Every domain operation runs inside one :func:`unit_of_work`: one transaction
that commits when the operation returns and rolls back entirely when it
raises, so a refused operation leaves nothing half-written. Writers are
serialised (SQLite ``BEGIN IMMEDIATE``; a PostgreSQL transaction-level
advisory lock) because status propagation and the audit chain read what the
previous writer wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError
from sqlmodel import Session

from registry.errors import ConfigurationError, InvalidInput

_WRITE_LOCK_KEY = 0x6D626F6D  # "mbom": the advisory lock every PostgreSQL writer takes
_MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest migration; checked against Alembic's scripts by a test, so that
#: opening an up-to-date registry needs no Alembic import.
HEAD_REVISION = "0007"


def make_engine(url: str) -> Engine:
    """Create an engine for a SQLite file (WAL mode) or a PostgreSQL database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    # JIT compilation costs ~1 s on set-based statements over the closure and
    # never pays off for the registry's short queries. psycopg prepares a statement
    # run five times; PostgreSQL then may switch to a generic plan that ignores which
    # base is asked about, and a hub base is not a typical one (21k descendants
    # against a median of none): the lineage walk went from 12 ms to 200 ms.
    options = "-c jit=off -c plan_cache_mode=force_custom_plan"
    return create_engine(url, pool_pre_ping=True, connect_args={"options": options})


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the registry directory for {database}: {exc.strerror}",
                hint="set MBOM_HOME or MBOM_DATABASE_URL to a writable place",
            ) from exc
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # 32 MiB of page cache per connection instead of 2: lineage answers look up
        # thousands of scattered artifact rows, re-read from the OS with the default.
        cursor.execute("PRAGMA cache_size=-32768")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: no deadlock on lock upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is there already)."""
    if current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current == heads:
        return
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@event.listens_for(Session, "before_flush")
def _check_text_limits(session: Session, _context: Any, _instances: Any) -> None:
    """Refuse over-long or NUL-holding text before the database sees it.

    SQLite would store both; PostgreSQL refuses them with an error that would
    otherwise surface as a 500. The limits are the columns' own lengths.
    """
    for row in (*session.new, *session.dirty):
        table = getattr(row, "__table__", None)
        if table is None:
            continue
        for column in table.columns:
            value = getattr(row, column.key, None)
            if isinstance(value, str):
                _check_text(table.name, column.key, value, getattr(column.type, "length", None))


def _check_text(table: str, field: str, value: str, limit: int | None) -> None:
    what = f"{field.replace('_', ' ')} of the {table.replace('_', ' ')}"
    if "\x00" in value:
        raise InvalidInput(f"the {what} contains a NUL character")
    if limit is not None and len(value) > limit:
        raise InvalidInput(
            f"the {what} is {len(value)} characters long; at most {limit} are allowed"
        )


def lock_for_write(session: Session) -> None:
    """Serialise writers: PostgreSQL takes a transaction-level advisory lock.

    SQLite needs nothing more: every transaction there begins IMMEDIATE.
    Readers never take it, so API processes answer queries concurrently.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY})


def current_revision(engine: Engine) -> str | None:
    """The schema's migration revision, or None for an empty database."""
    from sqlalchemy import inspect

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction: committed on return, rolled back on any exception."""
    with Session(engine, expire_on_commit=False, autoflush=True) as session:
        try:
            yield session
            session.commit()
        except (DataError, OverflowError) as exc:
            session.rollback()
            # A value the database cannot hold (a NUL byte, a number beyond 64 bits) is bad
            # input, not a server failure.
            raise InvalidInput(
                f"a value cannot be stored: {str(exc).splitlines()[0][:200]}",
                hint="remove control characters and keep numbers within 64 bits",
            ) from exc
        except BaseException:
            session.rollback()
            raise
