"""REST conventions: every error is problem+json, OpenAPI documents auth and errors,
lists come in pages with a total and a cursor. Real HTTP against the real app."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from registry.api import create_app
from registry.client import LocalRegistry
from registry.identity import Actor, Role
from registry.settings import Settings
from tests.conftest import fake_manifest
from tests.registry.live_server import serve_in_thread

PROBLEM = "application/problem+json"


@pytest.fixture
def api(engine: Engine, database_url: str) -> Iterator[httpx.Client]:
    """An admin client of the app on this test's database, with seven models and a team."""
    reg = LocalRegistry(engine, Actor("setup", Role.ADMIN))
    reg.create_team(name="t")
    for index in range(7):
        reg.register_model(name=f"m{index}", version="1", manifest=fake_manifest(f"m{index}"))
        reg.deploy(f"m{index}@1", environment=f"env{index % 3}", team="t")
    token = reg.create_token(user="root", role=Role.ADMIN).token
    app = create_app(Settings(database_url=database_url), engine=engine)
    with serve_in_thread(app) as url, httpx.Client(
        base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


def test_routing_errors_are_problems(api: httpx.Client) -> None:
    missing = api.get("/api/v1/no/such/thing")
    assert (missing.status_code, missing.headers["content-type"]) == (404, PROBLEM)
    assert missing.json()["code"] == "no-such-endpoint"
    assert "GET /api/v1/no/such/thing" in missing.json()["detail"]
    wrong = api.delete("/api/v1/teams")
    assert (wrong.status_code, wrong.headers["content-type"]) == (405, PROBLEM)
    assert wrong.json()["code"] == "method-not-allowed"
    assert wrong.headers["allow"]
    # A browser lost outside the API gets the console's page, not JSON.
    page = api.get("/no-such-page", headers={"Accept": "text/html"})
    assert (page.status_code, page.headers["content-type"].split(";")[0]) == (404, "text/html")
    assert "there is no endpoint GET /no-such-page" in page.text


def test_validation_errors_are_structured(api: httpx.Client) -> None:
    answer = api.post("/api/v1/teams", json={"nam": "x"})
    assert (answer.status_code, answer.headers["content-type"]) == (422, PROBLEM)
    errors = answer.json()["context"]["errors"]
    assert {"location": "body.name", "message": "Field required", "type": "missing"} in errors
    assert all(set(e) == {"location", "message", "type"} for e in errors)
    assert answer.json()["detail"].startswith("body.")


def test_openapi_documents_bearer_auth_and_every_error_status(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer",
        "description": "An API token from `mbom tokens create` (admins make them).",
    }
    operations = [
        (path, method, op) for path, ops in schema["paths"].items() if path.startswith("/api/")
        for method, op in ops.items()
    ]
    assert len(operations) > 40
    for path, method, op in operations:
        assert op["security"] == [{"bearerAuth": []}], (path, method)
        codes = set(op["responses"])
        assert "401" in codes, (path, method)
        if method == "post":
            assert {"403", "409"} <= codes, (path, method)
        if "{" in path:
            assert "404" in codes, (path, method)
        problem = op["responses"]["401"]["content"][PROBLEM]["schema"]
        assert problem == {"$ref": "#/components/schemas/Problem"}


def _walk(api: httpx.Client, path: str, **params: str | int) -> tuple[list[str], list[str]]:
    """Every item of a list, page by page through the Link header; and the totals seen."""
    seen: list[str] = []
    totals: list[str] = []
    answer = api.get(path, params=params)
    while True:
        assert answer.status_code == 200, answer.text
        totals.append(answer.headers["x-total-count"])
        seen += [item.get("ref") or str(item.get("seq")) for item in answer.json()]
        if "link" not in answer.headers:
            assert "x-next-cursor" not in answer.headers
            return seen, totals
        url = answer.headers["link"].split(";")[0].strip("<>")
        answer = api.get(url)


@pytest.mark.parametrize(("path", "total"), [("/api/v1/models", 7), ("/api/v1/deployments", 7)])
def test_lists_come_in_pages_with_a_total(api: httpx.Client, path: str, total: int) -> None:
    whole = [item["ref"] for item in api.get(path).json()]
    paged, totals = _walk(api, path, limit=3)
    assert (len(whole), paged, set(totals)) == (total, whole, {str(total)})


def test_audit_pages_go_back_in_time(api: httpx.Client) -> None:
    newest = api.get("/api/v1/audit", params={"limit": 5})
    older = api.get(newest.headers["link"].split(";")[0].strip("<>"))
    newest_seqs = [e["seq"] for e in newest.json()]
    older_seqs = [e["seq"] for e in older.json()]
    assert newest_seqs == sorted(newest_seqs)  # each page oldest first
    assert max(older_seqs) < min(newest_seqs)
    assert int(newest.headers["x-total-count"]) >= 15


def test_a_forged_cursor_is_a_400_problem(api: httpx.Client) -> None:
    for cursor in ("nonsense", "eDox", "%%%", "bzotMQ"):  # eDox: "x:1", bzotMQ: "o:-1"
        answer = api.get("/api/v1/models", params={"cursor": cursor})
        assert (answer.status_code, answer.headers["content-type"]) == (400, PROBLEM), cursor
        assert "is not one this server gave" in answer.json()["detail"]
