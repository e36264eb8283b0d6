"""Domain errors as RFC 9457 problem responses (``application/problem+json``)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from registry import errors

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
)


def status_for(error: errors.MbomError) -> int:
    """The HTTP status of a domain error."""
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 400


def problem(status: int, code: str, title: str, detail: str, **context: Any) -> JSONResponse:
    """A problem+json response."""
    body = {
        "type": f"urn:mbom:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "context": context,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


def install(app: FastAPI) -> None:
    """Map every domain and validation error to a problem response, in one place."""

    @app.exception_handler(errors.MbomError)
    async def _domain(_request: Request, error: errors.MbomError) -> JSONResponse:
        context = {k: v for k, v in vars(error).items() if k not in ("message", "hint")}
        return problem(
            status_for(error),
            error.code,
            type(error).__name__,
            error.diagnostics(),
            **{k: v if isinstance(v, str | int | None) else str(v) for k, v in context.items()},
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        detail = f"{where}: {first.get('msg', 'invalid request')}"
        return problem(
            422, "invalid-request", "RequestValidationError", detail, errors=str(error.errors()[:5])
        )
