"""What a page request needs: its unit of work, who signed in, and a checked form.

Errors become pages (:class:`PageRoute`): a domain error its status and message, a
missing sign-in a redirect to the sign-in page, anything unexpected a 500 page
with an incident id (the traceback goes to the log, never to the browser).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy import Engine
from sqlmodel import Session

from registry import errors, service
from registry.db import check_encodable, unit_of_work
from registry.identity import Actor
from registry.web.rendering import page
from registry.web.sessions import PRESESSION_COOKIE, SESSION_COOKIE, SessionKeys

log = logging.getLogger("mbom.web")

#: The largest form body a page accepts (reasons and references are short).
MAX_FORM_BYTES = 64 * 1024


class CsrfRefused(errors.PermissionDenied):
    """A form arrived without the CSRF token of the session that was shown it."""

    code = "csrf-refused"

    def __init__(self) -> None:
        super().__init__(
            "this form was refused: its CSRF token is missing or belongs to another session",
            hint="reload the page and submit the form again",
        )


_STATUS: tuple[tuple[type[errors.MbomError], int], ...] = (
    (errors.AuthenticationRequired, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.DatabaseBusy, 503),
    (errors.ConfigurationError, 500),
    (errors.BlobCorrupt, 500),
    (errors.InvalidInput, 400),
    (errors.UnsafePath, 400),
)


def _status_of(error: errors.MbomError) -> int:
    return next((code for cls, code in _STATUS if isinstance(error, cls)), 409)


class PageRoute(APIRoute):
    """A route whose errors are pages, never a problem body or a stack trace."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler, answering errors with pages."""
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except errors.AuthenticationRequired as error:
                if request.method == "GET":
                    return RedirectResponse(_signin_url(request), status_code=303)
                return _error_page(request, error)
            except errors.MbomError as error:
                return _error_page(request, error)
            except RequestValidationError as error:
                first = error.errors()[0] if error.errors() else {}
                where = ".".join(str(part) for part in first.get("loc", ()))
                message = f"{where}: {first.get('msg', 'invalid request')}"
                return _error_page(request, errors.InvalidInput(message))
            except Exception:
                incident = uuid.uuid4().hex
                log.exception("incident %s on %s %s", incident, request.method, request.url.path)
                return page(
                    "error.html",
                    status_code=500,
                    title="Something went wrong",
                    message=f"the server failed unexpectedly (incident {incident})",
                    hint="give that incident id to the registry's operators",
                )

        return handle


def _signin_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/?next=" + quote(target, safe="")


def _error_page(request: Request, error: errors.MbomError) -> Response:
    status = _status_of(error)
    titles = {401: "Sign-in needed", 403: "Not allowed", 404: "Not found", 503: "Busy"}
    viewer = getattr(request.state, "viewer", None)
    headers = (
        {"Retry-After": str(error.retry_after)} if isinstance(error, errors.DatabaseBusy) else {}
    )
    response = page(
        "error.html",
        status_code=status,
        title=titles.get(status, "Refused"),
        message=error.message,
        hint=error.hint,
        actor=viewer.actor if viewer else None,
        csrf=viewer.csrf if viewer else "",
    )
    response.headers.update(headers)
    return response


def keys_of(request: Request) -> SessionKeys:
    """The app's session keys."""
    keys: SessionKeys = request.app.state.web_keys
    return keys


def get_session(request: Request) -> Iterator[Session]:
    """One transaction for the request: committed on success, rolled back on error."""
    engine: Engine = request.app.state.engine
    with unit_of_work(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Viewer:
    """The person signed in: their actor and the CSRF token of their forms."""

    actor: Actor
    csrf: str


def get_viewer(request: Request, session: SessionDep) -> Viewer:
    """The signed-in person; their token is checked again on every request."""
    keys = keys_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    token = keys.open(cookie)
    if token is None or cookie is None:
        raise errors.AuthenticationRequired(
            "sign in to see this page", hint="sign in with an API token (mbom tokens create)"
        )
    viewer = Viewer(actor=service.authenticate(session, token), csrf=keys.csrf_token(cookie))
    request.state.viewer = viewer
    return viewer


CurrentViewer = Annotated[Viewer, Depends(get_viewer)]


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (first value of each field), every text checked."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise errors.InvalidInput(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.InvalidInput("the form is not UTF-8 text") from exc
    fields: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True, max_num_fields=50):
        check_encodable(value, what=f"the form field {name}")
        fields.setdefault(name, value)
    return fields


async def checked_form(request: Request) -> dict[str, str]:
    """A signed-in person's form; refused unless it carries their session's CSRF token."""
    fields = await read_form(request)
    if not keys_of(request).csrf_ok(request.cookies.get(SESSION_COOKIE), fields.get("csrf")):
        raise CsrfRefused()
    return fields


async def signin_form(request: Request) -> dict[str, str]:
    """The sign-in form; refused unless it carries the pre-session cookie's CSRF token."""
    fields = await read_form(request)
    if not keys_of(request).csrf_ok(request.cookies.get(PRESESSION_COOKIE), fields.get("csrf")):
        raise CsrfRefused()
    return fields


CheckedForm = Annotated[dict[str, str], Depends(checked_form)]
SigninForm = Annotated[dict[str, str], Depends(signin_form)]
