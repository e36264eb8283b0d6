"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from registry import limits
from registry.api import files, openapi, problems
from registry.api.auth_gate import AuthenticateFirst
from registry.api.body_limits import JsonDepthLimit
from registry.api.routes import router
from registry.db import make_engine, migrate
from registry.service.audit import bind_key, key_file_of
from registry.settings import Settings
from registry.store import BlobStore, open_store
from registry.web import install as install_pages


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    store: BlobStore | None = None,
) -> FastAPI:
    """Build the app on its own engine (created from ``settings`` unless given)."""
    settings = settings or Settings.from_env()
    engine = engine or make_engine(settings.database_url, busy_timeout=settings.busy_timeout)
    if key_file_of(engine) is None:  # a test's engine may carry its own key already
        bind_key(engine, settings.audit_key())
    migrate(engine)
    app = FastAPI(
        title="mbom",
        summary="Model bill of materials and lineage registry",
        description="Every endpoint needs `Authorization: Bearer <token>` (mbom tokens create).",
        version="0.1.0",
        max_body_size=limits.MAX_REQUEST_BYTES,
    )
    app.add_middleware(JsonDepthLimit)
    app.add_middleware(AuthenticateFirst)  # added later = runs first: no body read unauthenticated
    app.state.engine = engine
    app.state.settings = settings
    app.state.store = store or open_store(settings.store_location())
    problems.install(app)
    openapi.install(app)
    app.add_middleware(problems.UnexpectedErrors)
    # Before the JSON routes: their /artifacts/{ref:path} would swallow .../pulls.
    app.include_router(files.router)
    app.include_router(files.json_router)
    app.include_router(router)
    install_pages(app, engine)  # the web console: / and its pages, /static

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    return app
