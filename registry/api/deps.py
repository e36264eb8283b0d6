"""Request dependencies: one unit of work per request, and the bearer token's actor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session

from registry import service
from registry.db import unit_of_work
from registry.errors import AuthenticationRequired
from registry.identity import Actor


def get_session(request: Request) -> Iterator[Session]:
    """One transaction for the request: committed on success, rolled back on error."""
    engine: Engine = request.app.state.engine
    with unit_of_work(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_actor(request: Request, session: SessionDep) -> Actor:
    """The actor behind the ``Authorization: Bearer`` token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationRequired(
            "this server needs a bearer token", hint="send Authorization: Bearer <token>"
        )
    return service.authenticate(session, token.strip())


CurrentActor = Annotated[Actor, Depends(get_actor)]
