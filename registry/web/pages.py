"""The console's pages: each view reads through :mod:`registry.service` and renders a
template; every write goes through the same service verb (and its authorization) as
the REST API."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine
from sqlmodel import Session

from registry import service
from registry.errors import AuthenticationRequired, InvalidInput
from registry.identity import Actor
from registry.schemas import DeploymentPublic, PullPublic
from registry.service import overview
from registry.service.authorization import RULES, Operation
from registry.vocabulary import Finding, Status
from registry.web.deps import CheckedForm, CurrentViewer, PageRoute, SessionDep, SigninForm, keys_of
from registry.web.lineage_pages import Expand, lineage_markup
from registry.web.rendering import SECURITY_HEADERS, blast_url, page, ref_url
from registry.web.sessions import (
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    new_presession,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

#: Deployments and pulls listed per blast-radius page.
PAGE_SIZE = 50
#: Audit events on the dashboard.
RECENT_EVENTS = 20


def _may(actor: Actor, operation: Operation) -> bool:
    """Whether to offer an action: the role the authorization table names (the service
    still decides when the form is posted)."""
    return actor.can(RULES[operation].role)


# Sign in and out.


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


@router.get("/")
def signin_page(
    request: Request, session: SessionDep, next_: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """The sign-in form (the dashboard when already signed in)."""
    keys = keys_of(request)
    token = keys.open(request.cookies.get(SESSION_COOKIE))
    if token is not None:
        try:
            service.authenticate(session, token)
            return RedirectResponse(_safe_next(next_), status_code=303)
        except AuthenticationRequired:
            pass
    return _signin(request, next_=next_)


def _signin(
    request: Request, *, next_: str | None, error: str | None = None, status_code: int = 200
) -> Response:
    presession = request.cookies.get(PRESESSION_COOKIE) or new_presession()
    response = page(
        "signin.html",
        status_code=status_code,
        csrf=keys_of(request).csrf_token(presession),
        next=_safe_next(next_),
        error=error,
    )
    response.set_cookie(
        PRESESSION_COOKIE,
        presession,
        max_age=3600,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/")
def signin(request: Request, session: SessionDep, form: SigninForm) -> Response:
    """Check the API token and open a session (an HttpOnly, SameSite=Strict cookie)."""
    token = form.get("token", "").strip()
    try:
        service.authenticate(session, token)
    except AuthenticationRequired as error:
        return _signin(request, next_=form.get("next"), error=error.message, status_code=401)
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        keys_of(request).seal(token),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(PRESESSION_COOKIE, path="/")
    return response


@router.post("/signout")
def signout(_viewer: CurrentViewer, _form: CheckedForm) -> Response:
    """End the session."""
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# Reading.


@router.get("/dashboard")
def dashboard(session: SessionDep, viewer: CurrentViewer) -> Response:
    """Active flags, tainted deployments by team and environment, recent audit events."""
    tainted = [d for d in service.list_deployments(session) if Status(d.status).is_tainted]
    groups: dict[tuple[str, str], list[DeploymentPublic]] = {}
    for deployment in tainted:
        groups.setdefault((deployment.team, deployment.environment), []).append(deployment)
    events = list(reversed(service.list_events(session, limit=RECENT_EVENTS)))
    return page(
        "dashboard.html",
        actor=viewer.actor,
        csrf=viewer.csrf,
        flags=overview.active_flags(session),
        groups=sorted(groups.items()),
        tainted=len(tainted),
        events=events,
    )


@router.get("/models")
def find_model(
    viewer: CurrentViewer,  # noqa: ARG001 - signed-in people only
    ref: Annotated[str, Query(min_length=1, max_length=500)],
) -> Response:
    """Go to a version's page by its reference (the dashboard's look-up form)."""
    return RedirectResponse(ref_url(ref.strip()), status_code=303)


@router.get("/models/{ref:path}")
def model_page(
    ref: str, session: SessionDep, viewer: CurrentViewer, expand: Expand = None
) -> Response:
    """A model or dataset version: what it is, its scans, its status and why, who uses it."""
    artifact = service.show(session, ref)
    report = service.status_report(session, ref)
    return page(
        "model.html",
        actor=viewer.actor,
        csrf=viewer.csrf,
        artifact=artifact,
        report=report,
        files=overview.version_files(session, ref),
        deployments=overview.deployments_of(session, ref),
        decisions=overview.decisions_on(session, ref),
        lineage=lineage_markup(session, ref, expand=expand),
        may_flag=_may(viewer.actor, Operation.FLAG) and artifact.finding != Finding.COMPROMISED,
    )


@router.get("/blast-radius/{ref:path}")
def blast_radius_page(
    ref: str,
    session: SessionDep,
    viewer: CurrentViewer,
    page_: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1,
    format_: Annotated[Literal["html", "csv", "json"], Query(alias="format")] = "html",
) -> Response:
    """Deployments and pulls a flagged version reaches, counted and page by page."""
    if format_ != "html":
        return _download(session, ref, format_)
    offset = (page_ - 1) * PAGE_SIZE
    radius = service.blast_radius(session, ref, limit=offset + PAGE_SIZE)
    pages = max(1, -(-max(radius.deployments, radius.pulls) // PAGE_SIZE))
    return page(
        "blast_radius.html",
        actor=viewer.actor,
        csrf=viewer.csrf,
        radius=radius,
        status=service.status_report(session, ref).status,
        deployments=radius.nearest[offset:],
        pulls=radius.pulled_by[offset:],
        page=page_,
        pages=pages,
        offset=offset,
    )


_CSV_COLUMNS = ["what", "ref", "team", "environment", "user", "status", "created_at", "path"]


def _download(session: Session, ref: str, format_: str) -> Response:
    """The whole blast radius as CSV or JSON (every deployment and pull, with paths)."""
    deployments = service.deployed_descendants(session, ref)
    pulls = service.pulls_of(session, ref)
    root = service.show(session, ref).ref
    filename = "blast-radius-" + "".join(c if c.isalnum() else "-" for c in root)
    headers = {**SECURITY_HEADERS}
    if format_ == "json":
        body = json.dumps(
            {
                "ref": root,
                "deployments": [d.model_dump(mode="json") for d in deployments],
                "pulls": [p.model_dump(mode="json") for p in pulls],
            },
            indent=2,
        )
        headers["Content-Disposition"] = f'attachment; filename="{filename}.json"'
        return Response(body, media_type="application/json", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return Response(_csv(deployments, pulls), media_type="text/csv; charset=utf-8", headers=headers)


def _csv(deployments: list[DeploymentPublic], pulls: list[PullPublic]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_COLUMNS)
    for d in deployments:
        writer.writerow(
            _cells(
                [
                    "deployment",
                    d.ref,
                    d.team,
                    d.environment,
                    d.created_by,
                    d.status,
                    d.created_at.isoformat(),
                    " > ".join(d.path),
                ]
            )
        )
    for p in pulls:
        writer.writerow(
            _cells(
                ["pull", p.ref, p.team or "", "", p.user, p.status, p.created_at.isoformat(), ""]
            )
        )
    return out.getvalue()


def _cells(row: list[str]) -> list[str]:
    """Cells a spreadsheet will not run as formulas (names may start with '=' or '@')."""
    return ["'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell for cell in row]


# Flagging: preview (what it would change, computed and rolled back), then confirm.


@contextmanager
def _rolled_back(engine: Engine) -> Iterator[Session]:
    """A transaction that is always rolled back: the preview of a change."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
        finally:
            session.rollback()


def _flag_fields(form: dict[str, str]) -> tuple[str, str]:
    ref, reason = form.get("ref", "").strip(), form.get("reason", "").strip()
    if not ref:
        raise InvalidInput("the form names no model or dataset to flag")
    if not reason:
        raise InvalidInput("a flag needs a reason", hint="say why, for the audit log")
    return ref, reason


@router.post("/flag/preview")
def flag_preview(request: Request, viewer: CurrentViewer, form: CheckedForm) -> Response:
    """What flagging would change (the real flag, run and rolled back), to confirm."""
    ref, reason = _flag_fields(form)
    with _rolled_back(request.app.state.engine) as trial:
        change = service.flag(trial, ref, actor=viewer.actor, reason=reason)
    return page(
        "flag_confirm.html", actor=viewer.actor, csrf=viewer.csrf, change=change, reason=reason
    )


@router.post("/flag")
def flag(session: SessionDep, viewer: CurrentViewer, form: CheckedForm) -> Response:
    """Flag a model or dataset compromised (admins); then show its blast radius."""
    ref, reason = _flag_fields(form)
    change = service.flag(session, ref, actor=viewer.actor, reason=reason)
    return RedirectResponse(blast_url(change.ref), status_code=303)
