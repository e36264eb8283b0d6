"""Engines, migrations and units of work.

Every domain operation runs inside one :func:`unit_of_work`: one transaction
that commits when the operation returns and rolls back entirely when it
raises, so a refused operation leaves nothing half-written. Writers are
serialised (SQLite ``BEGIN IMMEDIATE``; a PostgreSQL transaction-level
advisory lock) because status propagation and the audit chain read what the
previous writer wrote. Readers take no lock: on SQLite they run in deferred
transactions on a WAL snapshot, so a long write never blocks a query. A
writer that waits longer than the busy timeout for another writer's lock is
refused with :class:`~registry.errors.DatabaseBusy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, OperationalError
from sqlmodel import Session

from registry.errors import ConfigurationError, DatabaseBusy, InvalidInput
from registry.settings import DEFAULT_BUSY_TIMEOUT

_WRITE_LOCK_KEY = 0x6D626F6D  # "mbom": the advisory lock every PostgreSQL writer takes
_MIGRATIONS = Path(__file__).parent / "migrations"
#: Execution option (and connection-info key) marking a SQLite transaction that writes:
#: it begins IMMEDIATE, taking the write lock before it reads anything.
_WRITE = "mbom_write"
#: Connection-info key: sqlite3's ``total_changes`` when the transaction began.
_CHANGES_AT_BEGIN = "mbom_changes_at_begin"
#: Connection-info key: the busy timeout in seconds the engine was made with.
_BUSY_TIMEOUT = "mbom_busy_timeout"
_SQLITE_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)
_PG_BUSY = ("55P03", "40P01")  # lock_not_available, deadlock_detected
#: The newest migration; checked against Alembic's scripts by a test, so that
#: opening an up-to-date registry needs no Alembic import.
HEAD_REVISION = "0010"


def make_engine(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Engine:
    """Create an engine for a SQLite file (WAL mode) or a PostgreSQL database.

    ``busy_timeout`` is how many seconds a writer waits for another writer's lock.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, busy_timeout)
    # JIT compilation costs ~1 s on set-based statements over the closure and
    # never pays off for the registry's short queries. psycopg prepares a statement
    # run five times; PostgreSQL then may switch to a generic plan that ignores which
    # base is asked about, and a hub base is not a typical one (21k descendants
    # against a median of none): the lineage walk went from 12 ms to 200 ms.
    # lock_timeout bounds the writers' advisory-lock wait (readers take no locks).
    options = (
        "-c jit=off -c plan_cache_mode=force_custom_plan"
        f" -c lock_timeout={max(1, round(busy_timeout * 1000))}"
    )
    engine = create_engine(url, pool_pre_ping=True, connect_args={"options": options})
    _remember_busy_timeout(engine, busy_timeout)
    return engine


def _remember_busy_timeout(engine: Engine, seconds: float) -> None:
    @event.listens_for(engine, "connect")
    def _remember(_dbapi_connection: Any, record: Any) -> None:
        record.info[_BUSY_TIMEOUT] = seconds


def _sqlite_engine(url: str, database: str | None, busy_timeout: float) -> Engine:
    if database and database != ":memory:":
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the registry directory for {database}: {exc.strerror}",
                hint="set MBOM_HOME or MBOM_DATABASE_URL to a writable place",
            ) from exc
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout})
    _remember_busy_timeout(engine, busy_timeout)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the API answers 2xx (NORMAL may lose the
        # newest commits on power loss in WAL mode).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={max(1, round(busy_timeout * 1000))}")
        # 32 MiB of page cache per connection instead of 2: lineage answers look up
        # thousands of scattered artifact rows, re-read from the OS with the default.
        cursor.execute("PRAGMA cache_size=-32768")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # Readers begin DEFERRED: in WAL they read a snapshot and never wait for a
        # writer. Writers (lock_for_write) begin IMMEDIATE: the write lock up front,
        # so no transaction ever has to upgrade a read lock (which could fail).
        writing = bool(connection.get_execution_options().get(_WRITE))
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")
        connection.info[_WRITE] = writing
        connection.info[_CHANGES_AT_BEGIN] = connection.connection.dbapi_connection.total_changes

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
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        with connection.begin():
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
    check_encodable(value, what=f"the {what}")
    if limit is not None and len(value) > limit:
        raise InvalidInput(
            f"the {what} is {len(value)} characters long; at most {limit} are allowed"
        )


def check_encodable(value: str, *, what: str) -> None:
    """Refuse text the database cannot store: a lone surrogate is no UTF-8 character.

    JSON ``"\\ud800"`` escapes and undecodable command-line bytes give such strings.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{what} is not valid Unicode text: {_shown(exc)}",
            hint="send UTF-8 text without lone surrogates (\\ud800-\\udfff)",
        ) from exc


def _shown(exc: UnicodeEncodeError) -> str:
    """Where a string fails to encode, printable (the bad characters escaped)."""
    text_ = exc.object if isinstance(exc.object, str) else str(exc.object)
    start = max(0, exc.start - 20)
    # repr() escapes lone surrogates, so the message itself always encodes.
    return f"{text_[start : exc.end + 20]!r} (character {exc.start})"


def lock_for_write(session: Session) -> None:
    """Serialise writers: take the registry's write lock for this transaction.

    PostgreSQL takes a transaction-level advisory lock (re-entrant). On SQLite the
    transaction must hold the write lock from its start: one that has only read
    so far is ended and begun again IMMEDIATE (the objects it loaded are expired,
    so everything is re-read under the lock); a nested mutation, or a transaction
    that has written already and so holds the lock, goes on as it is. Readers
    never take the lock, so queries run while a writer works.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY})
    elif dialect == "sqlite" and not _holds_sqlite_write_lock(session):
        session.commit()  # it has only read: ending it loses nothing
        session.expire_all()
        session.connection(execution_options={_WRITE: True})


def _holds_sqlite_write_lock(session: Session) -> bool:
    """Whether the SQLite transaction began IMMEDIATE or has written (SQLite then holds
    the lock until it ends); pending ORM changes are flushed to find out."""
    connection = session.connection()
    if connection.info.get(_WRITE):
        return True
    if session.new or session.dirty or session.deleted:
        session.flush()
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    wrote: bool = dbapi.total_changes != connection.info.get(_CHANGES_AT_BEGIN)
    return wrote


def current_revision(engine: Engine) -> str | None:
    """The schema's migration revision, or None for an empty database."""
    from sqlalchemy import inspect

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction: committed on return, rolled back on any exception.

    A writer that waited out the busy timeout raises :class:`DatabaseBusy`; text
    the database cannot encode raises :class:`InvalidInput`.
    """
    with Session(engine, expire_on_commit=False, autoflush=True) as session:
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            if _is_busy(exc):
                raise DatabaseBusy(_busy_timeout_of(engine)) from exc
            raise
        except UnicodeEncodeError as exc:
            session.rollback()
            raise InvalidInput(
                f"a text value is not valid Unicode: {_shown(exc)}",
                hint="use UTF-8 text without lone surrogates (\\ud800-\\udfff)",
            ) from exc
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


def _is_busy(exc: OperationalError) -> bool:
    """Whether the database refused because another transaction held a lock too long."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_BUSY
    return getattr(exc.orig, "sqlstate", None) in _PG_BUSY


def _busy_timeout_of(engine: Engine) -> float:
    """The busy timeout the engine was made with (seconds)."""
    with engine.connect() as connection:
        seconds = connection.connection.info.get(_BUSY_TIMEOUT, DEFAULT_BUSY_TIMEOUT)
    return float(seconds)
