"""Configuration, read once from the environment and passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from registry.audit_key import KEY_FILENAME, AuditKeyFile
from registry.errors import ConfigurationError

DEFAULT_DB_FILENAME = "registry.db"
#: Largest model file a server accepts in one upload: 64 GiB.
DEFAULT_MAX_UPLOAD_BYTES = 64 * 2**30
#: Seconds an admitting process vouches for itself between heartbeats (MBOM_ADMISSION_LEASE).
DEFAULT_ADMISSION_LEASE = 60.0
#: The local artifact store's directory, beside the registry (MBOM_STORE_URL overrides).
STORE_DIRNAME = "store"
#: Seconds a writer waits for another writer's lock before giving up (MBOM_BUSY_TIMEOUT).
DEFAULT_BUSY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Settings:
    """Where the registry lives and how the CLI reaches it.

    ``database_url`` is a SQLAlchemy URL; the default is a SQLite file in the
    per-user data directory. ``server`` and ``token`` make the CLI a client of
    a running ``mbom serve`` instead of opening the database itself.
    ``busy_timeout`` is how many seconds a writer waits for another writer's
    lock before the operation is refused as busy (readers never wait).
    """

    database_url: str
    server: str | None = None
    token: str | None = None
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    audit_key_file: Path | None = None
    store_url: str | None = None
    #: Largest file a server takes in one upload (``MBOM_MAX_UPLOAD_BYTES``).
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    #: Seconds an admitting process vouches for itself between heartbeats
    #: (``MBOM_ADMISSION_LEASE``); a pending admission whose lease ran out was left
    #: by a process that died, and the next registration of it takes it over.
    admission_lease: float = DEFAULT_ADMISSION_LEASE

    def store_location(self) -> str:
        """Where the artifact store lives: ``MBOM_STORE_URL``, or a directory beside the registry.

        Beside an embedded registry that is ``store/`` next to its SQLite file; for
        PostgreSQL, ``store/`` in the data directory (teams set ``s3://bucket/prefix``).
        """
        if self.store_url:
            return self.store_url
        from sqlalchemy.engine import make_url

        parsed = make_url(self.database_url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            return str(Path(parsed.database).expanduser().parent / STORE_DIRNAME)
        return str(data_directory() / STORE_DIRNAME)

    def audit_key(self) -> AuditKeyFile:
        """Where the audit chain's HMAC key lives: ``MBOM_AUDIT_KEY_FILE``, or beside the registry.

        Beside an embedded registry that is ``audit.key`` next to its SQLite
        file; for PostgreSQL, ``audit.key`` in the data directory. Never in the
        database: someone who can only write the database cannot re-key the chain.
        """
        if self.audit_key_file is not None:
            return AuditKeyFile(self.audit_key_file)
        from sqlalchemy.engine import make_url

        parsed = make_url(self.database_url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            return AuditKeyFile(Path(parsed.database).expanduser().parent / KEY_FILENAME)
        return AuditKeyFile(data_directory() / KEY_FILENAME)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``MBOM_DATABASE_URL``, ``MBOM_HOME``, ``MBOM_SERVER``, ``MBOM_TOKEN``,
        ``MBOM_BUSY_TIMEOUT``.

        And ``MBOM_AUDIT_KEY_FILE`` (see :meth:`audit_key`) and ``MBOM_STORE_URL``
        (see :meth:`store_location`).
        """
        env = os.environ if environ is None else environ
        url = env.get("MBOM_DATABASE_URL") or _default_sqlite_url(env)
        _check_url(url)
        return cls(
            database_url=url,
            server=env.get("MBOM_SERVER") or None,
            token=env.get("MBOM_TOKEN") or None,
            busy_timeout=_busy_timeout(env.get("MBOM_BUSY_TIMEOUT")),
            audit_key_file=_audit_key_file(env, url),
            store_url=env.get("MBOM_STORE_URL") or None,
            max_upload_bytes=_max_upload(env.get("MBOM_MAX_UPLOAD_BYTES")),
            admission_lease=_admission_lease(env.get("MBOM_ADMISSION_LEASE")),
        )


def data_directory(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user directory holding the embedded registry (``MBOM_HOME`` overrides)."""
    env = os.environ if environ is None else environ
    if env.get("MBOM_HOME"):
        return Path(env["MBOM_HOME"]).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("mbom", appauthor=False))


def _audit_key_file(env: Mapping[str, str], url: str) -> Path | None:
    """``MBOM_AUDIT_KEY_FILE``; else, for a server database, the data directory's key."""
    if env.get("MBOM_AUDIT_KEY_FILE"):
        return Path(env["MBOM_AUDIT_KEY_FILE"]).expanduser()
    from sqlalchemy.engine import make_url

    if make_url(url).get_backend_name() == "sqlite":
        return None  # beside the SQLite file: see Settings.audit_key
    return data_directory(env) / KEY_FILENAME


def _default_sqlite_url(env: Mapping[str, str]) -> str:
    return f"sqlite:///{data_directory(env) / DEFAULT_DB_FILENAME}"


def _max_upload(value: str | None) -> int:
    if not value:
        return DEFAULT_MAX_UPLOAD_BYTES
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(
            f"MBOM_MAX_UPLOAD_BYTES is not a positive number of bytes: {value!r}",
            hint="unset it for the default of 64 GiB, or set e.g. "
            "MBOM_MAX_UPLOAD_BYTES=10737418240",
        )
    return int(value)


def _admission_lease(value: str | None) -> float:
    if not value:
        return DEFAULT_ADMISSION_LEASE
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= 86400:
        raise ConfigurationError(
            f"MBOM_ADMISSION_LEASE is not a number of seconds between 1 and 86400: {value!r}",
            hint="unset it for the default of 60 s, or set e.g. MBOM_ADMISSION_LEASE=120",
        )
    return seconds


def _busy_timeout(value: str | None) -> float:
    if not value:
        return DEFAULT_BUSY_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise ConfigurationError(
            f"MBOM_BUSY_TIMEOUT is not a number of seconds between 0 and 3600: {value!r}",
            hint="unset it for the default of 30 s, or set e.g. MBOM_BUSY_TIMEOUT=5",
        )
    return seconds


def _check_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(
            f"MBOM_DATABASE_URL is not a database URL: {url!r}",
            hint="use sqlite:///PATH or postgresql+psycopg://USER:PASS@HOST/DB",
        ) from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"unsupported database {parsed.get_backend_name()!r} in MBOM_DATABASE_URL",
            hint="mbom supports SQLite and PostgreSQL",
        )
