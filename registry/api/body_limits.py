"""JSON request bodies: refuse deep nesting before FastAPI parses them.

The size limit is FastAPI's own (``FastAPI(max_body_size=...)``, a 413); this
ASGI middleware adds the nesting limit of :mod:`registry.limits`, measured on
the raw bytes, so a body nested thousands deep is a 400 problem rather than a
``RecursionError`` in the JSON decoder or in a recursive validator.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry import limits
from registry.api.problems import problem
from registry.errors import LimitExceeded

__all__ = ["JsonDepthLimit"]


class JsonDepthLimit:
    """ASGI middleware: a JSON body nested deeper than ``max_depth`` is a 400 problem."""

    def __init__(self, app: ASGIApp, max_depth: int = limits.MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read a JSON body whole, check its depth, then hand it on unchanged."""
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body, last = await _read_body(receive)
        try:
            limits.check_json_depth(body, self.max_depth, what="the request body")
        except LimitExceeded as error:
            response = problem(400, error.code, type(error).__name__, error.diagnostics())
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, last, receive), send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media_type = bytes(value).split(b";")[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return False


async def _read_body(receive: Receive) -> tuple[bytes, Message]:
    """The whole body, and the message that ended it (the last chunk or a disconnect)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), {"type": "http.request", "body": b"", "more_body": False}


def _replay(body: bytes, last: Message, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if last["type"] != "http.request":
                return last
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
