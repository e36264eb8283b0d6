"""Domain errors as RFC 9457 problem responses (``application/problem+json``).

Every error is one: a domain error its 4xx (a busy database 503 with ``Retry-After``),
anything unexpected a 500 whose incident id is also in the server's log.
"""

from __future__ import annotations

import json
import logging
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry import errors

log = logging.getLogger("mbom.api")

_STATUS: tuple[tuple[type[errors.MbomError], int], ...] = (
    (errors.AuthenticationRequired, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.AlreadyExists, 409),
    (errors.Conflict, 409),
    (errors.DuplicateContent, 409),
    (errors.LineageCycle, 409),
    (errors.PolicyViolation, 409),
    (errors.SignatureError, 422),
    (errors.InvalidInput, 400),
    (errors.UnsafePath, 400),
    (errors.ConfigurationError, 500),
    (errors.BlobCorrupt, 500),
    (errors.DatabaseBusy, 503),
)


def status_for(error: errors.MbomError) -> int:
    """The HTTP status of a domain error."""
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 400


class ProblemResponse(JSONResponse):
    """A problem+json body that always encodes: text the client sent that is not valid
    Unicode (a lone surrogate) is written as its JSON escape."""

    media_type = "application/problem+json"

    def render(self, content: Any) -> bytes:
        """The body as UTF-8 JSON, lone surrogates escaped."""
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, default=str)
        return text.encode("utf-8", "backslashreplace")


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> JSONResponse:
    """A problem+json response."""
    body = {
        "type": f"urn:mbom:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "context": context,
    }
    headers = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if status == 401 else {})}
    return ProblemResponse(body, status_code=status, headers=headers)


def error_response(error: errors.MbomError) -> JSONResponse:
    """The problem+json answer for a domain error."""
    context = {k: v for k, v in vars(error).items() if k not in ("message", "hint")}
    retry = None
    if isinstance(error, errors.DatabaseBusy):
        retry = {"Retry-After": str(error.retry_after)}
    return problem(
        status_for(error),
        error.code,
        type(error).__name__,
        error.diagnostics(),
        headers=retry,
        **{k: v if isinstance(v, str | int | None) else str(v) for k, v in context.items()},
    )


def install(app: FastAPI) -> None:
    """Map every domain and validation error to a problem response, in one place."""

    @app.exception_handler(errors.MbomError)
    async def _domain(_request: Request, error: errors.MbomError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        found = validation_errors(error)
        first = found[0] if found else {"location": "", "message": "invalid request"}
        detail = f"{first['location']}: {first['message']}"
        return problem(422, "invalid-request", "RequestValidationError", detail, errors=found[:20])

    @app.exception_handler(StarletteHTTPException)
    async def _framework(request: Request, error: StarletteHTTPException) -> Response:
        code, title, detail = _framework_problem(request, error.status_code)
        if _wants_page(request):
            from registry.web.rendering import page

            return page(
                "error.html", status_code=error.status_code, title=title, message=detail, hint=None
            )
        headers = dict(error.headers) if error.headers else None
        return problem(error.status_code, code, title, detail, headers=headers)


def validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    """Each validation error as ``{location, message, type}`` (JSON-safe, no input echoed)."""
    return [
        {
            "location": ".".join(str(part) for part in item.get("loc", ())),
            "message": str(item.get("msg", "invalid")),
            "type": str(item.get("type", "invalid")),
        }
        for item in error.errors()
    ]


def _framework_problem(request: Request, status: int) -> tuple[str, str, str]:
    """Code, title and detail of a routing error (no such path, method not allowed)."""
    where = f"{request.method} {request.url.path}"
    if status == 404:
        return "no-such-endpoint", "Not Found", f"there is no endpoint {where} (see /docs)"
    if status == 405:
        return (
            "method-not-allowed",
            "Method Not Allowed",
            f"{where} is not allowed; the Allow header lists the methods this path takes",
        )
    return "http-error", HTTPStatus(status).phrase, f"{where}: {HTTPStatus(status).phrase}"


def _wants_page(request: Request) -> bool:
    """A browser asking outside the API gets the console's error page, not JSON."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


class UnexpectedErrors:
    """ASGI middleware: an exception no handler knows becomes a problem+json 500.

    Its incident id is in the answer and in the log (with the traceback), and the
    connection stays open: Starlette's own last resort answers in plain text and
    re-raises, and the server then drops the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; answer for it if it fails before it started answering."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as error:
            incident = uuid.uuid4().hex
            log.error(
                "incident %s: unexpected %s on %s %s",
                incident,
                type(error).__name__,
                scope.get("method"),
                scope.get("path"),
                exc_info=error,
            )
            if started:
                raise
            await _internal_error(incident)(scope, receive, send)


def _internal_error(incident: str) -> JSONResponse:
    return problem(
        500,
        "internal-error",
        "InternalServerError",
        f"the server failed unexpectedly (incident {incident}); give that id to its operators",
        incident=incident,
    )
