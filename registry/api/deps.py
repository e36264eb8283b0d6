"""Request dependencies: one unit of work per request, the bearer token's actor, and the
check that every text input can be stored."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session

from registry import service
from registry.db import check_encodable, unit_of_work
from registry.errors import AuthenticationRequired
from registry.identity import Actor


def get_session(request: Request) -> Iterator[Session]:
    """One transaction for the request: committed on success, rolled back on error.

    Used with ``scope="function"``: the commit runs when the route returns, before the
    response is sent, so a 2xx means the change is durable and a failed commit is an
    error response.
    """
    engine: Engine = request.app.state.engine
    with unit_of_work(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]

# A lone surrogate reaches a JSON body as a \uD800-\uDFFF escape or as CESU-8 bytes
# (json.loads decodes bytes with surrogatepass); only a body holding one is walked.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


async def check_text_inputs(request: Request) -> None:
    """Refuse a request whose path, query or JSON body holds text that is not UTF-8."""
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_encodable(value, what=f"the path parameter {name}")
    for name, value in request.query_params.multi_items():
        check_encodable(name, what="a query parameter name")
        check_encodable(value, what=f"the query parameter {name}")
    body = await request.body()
    if body and _MAYBE_SURROGATE.search(body):
        try:
            document = await request.json()
        except ValueError:
            return  # not JSON: FastAPI answers 422 itself
        _check_json_text(document)


def _check_json_text(document: Any) -> None:
    """Walk a parsed JSON document (without recursion) and check every string in it."""
    pending: list[tuple[str, Any]] = [("body", document)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str):
            check_encodable(value, what=f"the request's {where}")
        elif isinstance(value, dict):
            for key, item in value.items():
                check_encodable(key, what=f"a key in the request's {where}")
                pending.append((f"{where}.{key}", item))
        elif isinstance(value, list):
            pending.extend((f"{where}[{index}]", item) for index, item in enumerate(value))


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
