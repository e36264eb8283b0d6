"""Authenticate an API request before the server reads a byte of its body.

FastAPI reads and parses a request's body before it runs the route's
dependencies (the bearer-token check among them), and the JSON depth check
(:mod:`registry.api.body_limits`) reads it whole before either. Without this
gate anyone who can reach the port could make the server buffer and parse a
body of up to the request size limit without holding a token. This ASGI
middleware checks the ``Authorization: Bearer`` token of every ``/api/`` request
that may carry a body, through the same :func:`registry.service.authenticate`
the routes use, and answers 401 problem+json before the body is read. The
routes still authenticate (and authorize) the request themselves.
"""

from __future__ import annotations

import anyio.to_thread
from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from registry import service
from registry.api.problems import error_response
from registry.db import unit_of_work
from registry.errors import AuthenticationRequired, MbomError

__all__ = ["AuthenticateFirst"]

#: Methods whose requests carry no body worth guarding (the routes check their token).
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthenticateFirst:
    """ASGI middleware: no body of an unauthenticated ``/api/`` request is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request with a body and no valid bearer token; else hand it on."""
        if (
            scope["type"] != "http"
            or scope["method"] in _BODILESS
            or not str(scope["path"]).startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        try:
            token = _bearer(scope)
            engine: Engine = scope["app"].state.engine
            await anyio.to_thread.run_sync(_authenticate, engine, token)
        except MbomError as error:
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    raise AuthenticationRequired(
        "this server needs a bearer token", hint="send Authorization: Bearer <token>"
    )


def _authenticate(engine: Engine, token: str) -> None:
    with unit_of_work(engine) as session:
        service.authenticate(session, token)
