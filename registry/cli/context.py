"""How a CLI invocation reaches its registry: local database or a server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import ConfigurationError
from registry.settings import Settings

if TYPE_CHECKING:
    from registry.client import Registry


@dataclass
class CliContext:
    """Options shared by every command, resolved lazily into a registry."""

    server: str | None = None
    token: str | None = None
    #: The command only reads: an embedded registry must exist already.
    must_exist: bool = False
    _registry: Registry | None = field(default=None, repr=False)

    def registry(self) -> Registry:
        """The local registry, or the server's when --server / MBOM_SERVER is set."""
        if self._registry is None:
            if self.server:
                # A client of a server reads no database settings: checking the database
                # URL alone imports SQLAlchemy (~0.5 s), which a remote command never uses.
                from registry.client.remote import RemoteRegistry

                self._registry = RemoteRegistry(self.server, self.token)
                return self._registry
            settings = Settings.from_env()
            server = settings.server
            # Imported here: the database stack costs ~0.5 s; --help and a client of a
            # server need none of it.
            if server:
                from registry.client.remote import RemoteRegistry

                self._registry = RemoteRegistry(server, self.token or settings.token)
            else:
                _refuse_missing(settings, must_exist=self.must_exist)
                from registry.client.local import LocalRegistry
                from registry.db import make_engine, migrate
                from registry.service.audit import bind_key

                engine = bind_key(
                    make_engine(settings.database_url, busy_timeout=settings.busy_timeout),
                    settings.audit_key(),
                )
                migrate(engine)
                from registry.store import open_store

                self._registry = LocalRegistry(
                    engine,
                    store=open_store(settings.store_location()),
                    admission_lease=settings.admission_lease,
                )
        return self._registry

    def call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        """Deprecated: ``cli.registry().flag(...)`` is ``cli.registry().flag(...)``."""
        return self.registry().call(verb, *args, **kwargs)


def _refuse_missing(settings: Settings, *, must_exist: bool) -> None:
    """A read on an embedded SQLite registry that does not exist is an error, not an
    answer from a new, empty registry (a mistyped MBOM_HOME)."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if not must_exist or url.get_backend_name() != "sqlite" or url.database in (None, ":memory:"):
        return
    path = Path(str(url.database)).expanduser()
    if not path.exists():
        raise ConfigurationError(
            f"there is no registry at {path}",
            hint="check MBOM_HOME or MBOM_DATABASE_URL; a registry is created by its first "
            "write (mbom register, mbom team create, mbom demo)",
        )
