"""The web console: server-rendered pages over the service layer (``install``)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from registry.service.audit import key_file_of
from registry.web.pages import router
from registry.web.rendering import TEMPLATE_PACKAGE
from registry.web.sessions import SessionKeys


def install(app: FastAPI, engine: Engine) -> None:
    """Add the pages and their stylesheet to ``app``; sessions are keyed from the audit key."""
    key_file = key_file_of(engine)
    app.state.web_keys = (
        SessionKeys.from_audit_key(key_file) if key_file is not None else SessionKeys.random()
    )
    package, folder = TEMPLATE_PACKAGE
    app.mount("/static", StaticFiles(packages=[(package, f"{folder}/static")]), name="static")
    app.include_router(router)


__all__ = ["install"]
