"""The two ways the CLI reaches a registry: in-process, or over HTTP.

:class:`LocalRegistry` opens the database itself and runs each verb as one unit
of work; :class:`RemoteRegistry` calls a running ``mbom serve`` with a bearer
token. Both implement the typed :class:`Registry` interface and return the same
:mod:`registry.schemas` views, so the CLI is written once. ``LocalRegistry`` is
loaded on first use only: a client of a server never imports the database stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.client.protocol import VERBS, Registry
from registry.client.remote import RemoteRegistry

if TYPE_CHECKING:
    from registry.client.local import LocalRegistry

__all__ = ["VERBS", "LocalRegistry", "Registry", "RemoteRegistry"]


def __getattr__(name: str) -> object:
    if name == "LocalRegistry":
        from registry.client.local import LocalRegistry

        return LocalRegistry
    raise AttributeError(name)


if TYPE_CHECKING:  # mypy checks that both implement the whole interface

    def _conforms(local: LocalRegistry, remote: RemoteRegistry) -> tuple[Registry, Registry]:
        return local, remote
