"""The web console: server-rendered pages over the service layer (``install``)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from registry.audit_key import AuditKeyFile
from registry.service.audit import key_file_of
from registry.web import lineage_pages
from registry.web.pages import router
from registry.web.rendering import TEMPLATE_PACKAGE
from registry.web.sessions import SESSION_KEY_FILENAME, SessionKeys


def install(app: FastAPI, engine: Engine) -> None:
    """Add the pages and their stylesheet to ``app``.

    Sessions are keyed by ``session.key`` beside the audit key (created on first
    start, mode 0600), so every server of a fleet sharing the key directory
    accepts a session; never by the audit key itself, whose creation must stay
    with the first keyed audit event (``mbom audit anchor`` relies on it).
    """
    audit_key = key_file_of(engine)
    app.state.web_keys = (
        SessionKeys.from_key_file(AuditKeyFile(audit_key.path.with_name(SESSION_KEY_FILENAME)))
        if audit_key is not None
        else SessionKeys.random()
    )
    package, folder = TEMPLATE_PACKAGE
    app.mount("/static", StaticFiles(packages=[(package, f"{folder}/static")]), name="static")
    # Before the pages: /models/{ref}/lineage.svg would otherwise be read as a reference.
    app.include_router(lineage_pages.router)
    app.include_router(router)


__all__ = ["install"]
