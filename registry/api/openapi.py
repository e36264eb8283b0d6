"""The OpenAPI document: bearer authentication and every error status, documented.

FastAPI documents what routes return; the errors come from one place
(:mod:`registry.api.problems`) instead, so they are added here: the bearer
scheme on every ``/api/`` operation, and the problem+json answers each kind of
operation can give (401 always; 403, 409 and 503 for writes; 404 where the path
names something; 400 where a body or a query is read).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = ["install"]

_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem: what went wrong (detail) and a stable code.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "examples": ["urn:mbom:problem:not-found"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "examples": ["not-found"]},
        "context": {"type": "object", "additionalProperties": True},
    },
}

_MEANING = {
    "400": "The input is malformed (a reference, a digest, a value out of range).",
    "401": "No bearer token, or one that is unknown or revoked.",
    "403": "The token's role or team does not allow this operation.",
    "404": "What the path names is not registered.",
    "409": "It clashes with the registry's state (exists already, policy, pending admission).",
    "503": "The database is busy: retry after the Retry-After seconds.",
}

_WRITES = {"post", "put", "patch", "delete"}


def _statuses(path: str, method: str) -> list[str]:
    found = ["401", "400"]
    if method in _WRITES:
        found += ["403", "409", "503"]
    if "{" in path:
        found.append("404")
    return sorted(found)


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with authentication and errors filled in (cached)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = _PROBLEM_SCHEMA
    components["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from `mbom tokens create` (admins make them).",
        }
    }
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            operation["security"] = [{"bearerAuth": []}]
            responses = operation.setdefault("responses", {})
            for status in _statuses(path, method):
                responses.setdefault(status, {"description": _MEANING[status], "content": problem})
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    """Make ``app`` serve :func:`document` as its OpenAPI."""

    def openapi() -> dict[str, Any]:
        return document(app)

    app.openapi = openapi  # type: ignore[method-assign]
