"""A 2xx from the API means the change is committed (issue 10, point 1).

The commit runs before the response is sent: checked by the order of the engine's
commit and the response's first message, and by real ``kill -9`` of a real
``mbom serve`` the moment it has answered, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api import create_app
from registry.client import LocalRegistry
from registry.db import make_engine
from registry.identity import Actor, Role
from registry.settings import Settings
from tests.conftest import fake_manifest
from tests.registry.live_server import mbom_serve, serve_in_thread
from tests.registry.test_api import assert_problem, model_body
from tests.registry.test_cli import MBOM, cli_env

Check = Callable[[LocalRegistry], bool]
#: Writing requests and how to see afterwards that each one is in the database.
WRITES: list[tuple[str, str, dict[str, Any], Check]] = [
    ("POST", "/teams", {"name": "kept-team"},
     lambda reg: "kept-team" in {t.name for t in reg.list_teams()}),
    ("POST", "/models", model_body("kept/model"),
     lambda reg: reg.show("kept/model@1").name == "kept/model"),
    ("POST", "/artifacts/base@1/flag", {"reason": "advisory 10"},
     lambda reg: reg.status_report("base@1").status == "compromised"),
]


class _RecordResponseStart:
    """ASGI wrapper noting when the response starts, in the same list as the commits."""

    def __init__(self, app: ASGIApp, order: list[str]) -> None:
        self.app = app
        self.order = order

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.order.append("response")
            await send(message)

        await self.app(scope, receive, noting)


def _seed(reg: LocalRegistry) -> str:
    """A base model to flag, and an admin token (returned)."""
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"))
    token = reg.create_token(user="ci", role=Role.ADMIN).token
    assert token
    return str(token)


@pytest.mark.parametrize(("method", "path", "body", "check"), WRITES,
                         ids=[f"{m} {p}" for m, p, _, _ in WRITES])
def test_api_commits_before_it_answers(
    engine: Engine, database_url: str, method: str, path: str, body: dict[str, Any], check: Check
) -> None:
    reg = LocalRegistry(engine, Actor("setup", Role.ADMIN))
    token = _seed(reg)
    order: list[str] = []
    event.listen(engine, "commit", lambda _connection: order.append("commit"))
    app = create_app(Settings(database_url=database_url), engine=engine)
    app.add_middleware(_RecordResponseStart, order=order)
    with serve_in_thread(app) as base_url:
        order.clear()
        response = httpx.request(method, f"{base_url}/api/v1{path}", json=body,
                                 headers={"Authorization": f"Bearer {token}"}, timeout=30)
        seen = list(order)
    assert response.status_code in (200, 201), response.text
    assert "commit" in seen, seen
    assert seen[-1] == "response", f"the response was sent before the commit: {seen}"
    assert check(reg)


@pytest.mark.parametrize(("method", "path", "body", "check"), WRITES,
                         ids=[f"{m} {p}" for m, p, _, _ in WRITES])
def test_kill_9_right_after_a_2xx_loses_nothing(
    engine: Engine, database_url: str, tmp_path: Path, method: str, path: str,
    body: dict[str, Any], check: Check,
) -> None:
    # The fixture's engine keys the audit log with the key the server is given too.
    token = _seed(LocalRegistry(engine, Actor("setup", Role.ADMIN)))
    engine.dispose()
    env = cli_env(tmp_path, MBOM_DATABASE_URL=database_url)
    with mbom_serve(MBOM, env, tmp_path / "serve.log") as server, httpx.stream(
        method, f"{server.base_url}/api/v1{path}", json=body,
        headers={"Authorization": f"Bearer {token}"}, timeout=30,
    ) as response:
        # The status line is the promise: kill the server the moment it arrives.
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=15)
        assert response.status_code in (200, 201)
    engine = make_engine(database_url)
    try:
        assert check(LocalRegistry(engine, Actor("check", Role.ADMIN))), (
            f"{method} {path} answered {response.status_code} but kill -9 lost the change")
    finally:
        engine.dispose()


class CommitFailed(Exception):
    """The database failing at commit (a full disk, an I/O error), injected by the test."""


def test_a_failed_commit_is_an_error_response_not_a_2xx(
    engine: Engine, database_url: str
) -> None:
    reg = LocalRegistry(engine, Actor("setup", Role.ADMIN))
    token = _seed(reg)

    def fail(_connection: Any) -> None:
        raise CommitFailed("disk I/O error")

    app = create_app(Settings(database_url=database_url), engine=engine)
    with serve_in_thread(app) as base_url:
        event.listen(engine, "commit", fail)
        try:
            response = httpx.post(f"{base_url}/api/v1/teams", json={"name": "unsaved"},
                                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
        finally:
            event.remove(engine, "commit", fail)
    assert_problem(response, 500, "internal-error")
    assert "unsaved" not in {t.name for t in reg.list_teams()}
