"""The REST API over real HTTP: uvicorn on a free port, httpx as the client.

Every test runs on SQLite and on PostgreSQL (the parametrized ``engine``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from registry.api import create_app
from registry.client import LocalRegistry
from registry.identity import Actor, Role
from registry.settings import Settings
from tests.registry.live_server import serve_in_thread

PROBLEM = "application/problem+json"


@dataclass
class Api:
    """A running server and an admin token for it."""

    base_url: str
    admin_token: str

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client on ``/api/v1`` sending ``token`` (default: the admin's)."""
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=f"{self.base_url}/api/v1", headers=headers, timeout=30.0)


@pytest.fixture
def api(engine: Engine, database_url: str) -> Iterator[Api]:
    """The app from ``create_app`` on this test's database, served by uvicorn."""
    bootstrap = LocalRegistry(engine, Actor("bootstrap", Role.ADMIN))
    token = bootstrap.create_token(user="root", role=Role.ADMIN).token
    assert token
    app = create_app(Settings(database_url=database_url), engine=engine)
    with serve_in_thread(app) as base_url:
        yield Api(base_url, token)


@pytest.fixture
def admin_http(api: Api) -> Iterator[httpx.Client]:
    """A client holding the admin token."""
    with api.client() as client:
        yield client


def entry(content: str, path: str = "weights.bin") -> dict[str, Any]:
    """A manifest entry for a file holding ``content``."""
    data = content.encode()
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def model_body(name: str, version: str = "1", *, parents: list[str] | None = None,
               content: str | None = None, **extra: Any) -> dict[str, Any]:
    """A ``POST /models`` body with a one-file manifest unique to the name."""
    manifest = {"entries": [entry(content or f"weights of {name}@{version}")]}
    return {"name": name, "version": version, "manifest": manifest,
            "parents": parents or [], **extra}


def created(response: httpx.Response) -> Any:
    """The JSON body of a 200/201 answer (the problem detail otherwise)."""
    assert response.status_code in (200, 201), response.text
    return response.json()


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem with this status (and code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys()
    assert body["status"] == status
    assert body["type"] == f"urn:mbom:problem:{body['code']}"
    assert body["title"]
    assert body["detail"]
    if code is not None:
        assert body["code"] == code
    return body


def make_token(http: httpx.Client, user: str, role: str, team: str | None = None) -> str:
    """Create a token through the API and return its secret."""
    body = created(http.post("/tokens", json={"user": user, "role": role, "team": team}))
    assert body["token"].startswith("mbom_")
    return str(body["token"])


# --- authentication, documentation ----------------------------------------------------------


UNAUTHENTICATED = [
    {},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer mbom_not-a-real-token"},
]


def test_401_problems_without_a_valid_token_and_open_docs(api: Api) -> None:
    for headers in UNAUTHENTICATED:
        with httpx.Client(base_url=api.base_url, headers=headers, timeout=30.0) as http:
            for method, path in [("GET", "/api/v1/models"), ("POST", "/api/v1/teams"),
                                 ("GET", "/api/v1/artifacts/acme/base@1/deployments")]:
                response = http.request(method, path, json={"name": "t"})
                body = assert_problem(response, 401, "authentication-required")
                assert response.headers["www-authenticate"] == "Bearer"
                assert "token" in body["detail"], headers
            assert http.get("/healthz").json() == {"status": "ok"}
    # The documentation needs no token.
    with httpx.Client(base_url=api.base_url, timeout=30.0) as http:
        docs = http.get("/docs")
        assert docs.status_code == 200
        assert "text/html" in docs.headers["content-type"]
        assert "swagger" in docs.text.lower()
        spec = http.get("/openapi.json").json()
    assert spec["info"]["title"] == "mbom"
    for path in ["/api/v1/models", "/api/v1/artifacts/{ref}/deployments", "/api/v1/tokens",
                 "/api/v1/decisions", "/api/v1/audit/verify"]:
        assert path in spec["paths"], path


# --- roles --------------------------------------------------------------------------------------


def test_each_endpoint_checks_the_role(api: Api, admin_http: httpx.Client) -> None:
    for team in ("fraud", "search"):
        created(admin_http.post("/teams", json={"name": team}))
    created(admin_http.post("/models", json=model_body("acme/base")))
    tokens = {
        "reader": make_token(admin_http, "rita", "reader"),
        "publisher": make_token(admin_http, "paul", "publisher", team="fraud"),
        "approver": make_token(admin_http, "anna", "approver", team="fraud"),
    }
    with api.client(tokens["reader"]) as reader:
        assert [m["ref"] for m in created(reader.get("/models"))] == ["acme/base@1"]
        body = assert_problem(reader.post("/models", json=model_body("r")), 403,
                              "permission-denied")
        assert "publisher" in body["detail"]
    with api.client(tokens["publisher"]) as publisher:
        registered = created(publisher.post("/models", json=model_body("p", parents=["acme/base@1"],
                                                                       team="fraud")))
        assert (registered["ref"], registered["created_by"]) == ("p@1", "paul")
        assert_problem(publisher.post("/models", json=model_body("q", team="search")), 403)
        assert_problem(publisher.post("/teams", json={"name": "x"}), 403, "permission-denied")
        assert_problem(publisher.get("/tokens"), 403, "permission-denied")
        assert_problem(publisher.post("/decisions", json={
            "ref": "acme/base@1", "team": "fraud", "verdict": "approve", "reason": "r"}), 403)
    with api.client(tokens["approver"]) as approver:
        decision = {"ref": "acme/base@1", "verdict": "approve", "reason": "reviewed"}
        body = assert_problem(approver.post("/decisions", json={**decision, "team": "search"}), 403)
        assert "search" in body["detail"]
        approved = created(approver.post("/decisions", json={**decision, "team": "fraud"}))
        assert (approved["team"], approved["actor"]) == ("fraud", "anna")
        assert_problem(approver.post("/artifacts/acme/base@1/flag", json={"reason": "x"}), 403)
        assert_problem(approver.post("/tokens", json={"user": "u", "role": "admin"}), 403)
        assert_problem(approver.post("/keys", json={"publisher": "p", "public_key_pem": "x"}), 403)
    flagged = created(admin_http.post("/artifacts/acme/base@1/flag", json={"reason": "backdoor"}))
    assert [c["ref"] for c in flagged["changed"]] == ["p@1"]
    assert [e["actor"] for e in created(admin_http.get("/audit"))][-2:] == ["anna", "root"]


def test_tokens_created_over_the_api_work_until_revoked(api: Api, admin_http: httpx.Client) -> None:
    answer = created(admin_http.post("/tokens", json={"user": "ci", "role": "publisher"}))
    assert (answer["role"], answer["revoked"]) == ("publisher", False)
    with api.client(answer["token"]) as ci:
        assert created(ci.post("/models", json=model_body("ci-built")))["created_by"] == "ci"
        listed = {t["id"]: t for t in created(admin_http.get("/tokens"))}
        assert listed[answer["id"]]["token"] is None, "secrets are shown once only"
        revoked = created(admin_http.post(f"/tokens/{answer['id']}/revoke"))
        assert revoked["revoked"] is True
        assert_problem(ci.get("/models"), 401, "authentication-required")
    assert_problem(admin_http.post("/tokens/999999/revoke"), 404, "not-found")
    assert_problem(admin_http.post("/tokens", json={"user": "u", "role": "root"}), 422)


# --- the cascade ----------------------------------------------------------------------------------


def test_flag_cascade_over_http(admin_http: httpx.Client) -> None:
    http = admin_http
    for team in ("fraud", "search"):
        created(http.post("/teams", json={"name": team}))
    created(http.post("/datasets", json={"name": "corpus", "version": "1",
                                         "digest": "sha256:" + "c" * 64, "source": "s3://b/c"}))
    created(http.post("/models", json=model_body("acme/base")))
    created(http.post("/models", json=model_body(
        "acme/ft", parents=["acme/base@1"], relation="finetune",
        datasets=[{"ref": "corpus@1", "use": "fine_tuned_on"}])))
    created(http.post("/models", json=model_body("acme/app", parents=["acme/ft@1"], team="fraud")))
    created(http.post("/models", json=model_body("search/app", parents=["acme/base@1"],
                                                 relation="adapter", team="search")))
    created(http.post("/models", json=model_body("other")))
    for ref, env, team in [("acme/app@1", "prod", "fraud"), ("search/app@1", "staging", "search"),
                           ("other@1", "prod", "fraud")]:
        created(http.post("/deployments", json={"ref": ref, "environment": env, "team": team}))

    change = created(http.post("/artifacts/acme/base@1/flag", json={"reason": "backdoor"}))
    assert change["status"] == "compromised"
    assert {c["ref"]: c["path"] for c in change["changed"]} == {
        "acme/ft@1": ["acme/base@1", "acme/ft@1"],
        "acme/app@1": ["acme/base@1", "acme/ft@1", "acme/app@1"],
        "search/app@1": ["acme/base@1", "search/app@1"],
    }
    hit = created(http.get("/artifacts/acme/base@1/deployments"))
    assert sorted((d["ref"], d["environment"], d["team"], d["status"], d["path"]) for d in hit) == [
        ("acme/app@1", "prod", "fraud", "infected", ["acme/base@1", "acme/ft@1", "acme/app@1"]),
        ("search/app@1", "staging", "search", "infected", ["acme/base@1", "search/app@1"]),
    ]
    assert [d["ref"] for d in created(http.get("/artifacts/acme/base@1/deployments",
                                               params={"team": "search"}))] == ["search/app@1"]
    near = created(http.get("/artifacts/acme/base@1/descendants", params={"depth": 1}))
    assert sorted((e["ref"], e["depth"]) for e in near) == [("acme/ft@1", 1), ("search/app@1", 1)]
    ancestors = created(http.get("/artifacts/acme/app@1/ancestors"))
    assert {(a["ref"], a["kind"], a["depth"]) for a in ancestors} == {
        ("acme/ft@1", "model", 1), ("acme/base@1", "model", 2), ("corpus@1", "dataset", 2)}
    report = created(http.get("/artifacts/acme/app@1/status"))
    assert report["status"] == "infected"
    assert [(s["source"], s["path"], s["reasons"]) for s in report["sources"]] == [
        ("acme/base@1", ["acme/base@1", "acme/ft@1", "acme/app@1"], ["backdoor"])]
    assert created(http.get("/artifacts/model:acme/app@1"))["status"] == "infected"
    assert created(http.get("/artifacts/other@1"))["status"] == "clean"
    refused = assert_problem(http.post("/deployments", json={
        "ref": "acme/ft@1", "environment": "prod", "team": "fraud"}), 409, "policy-violation")
    assert "infected" in refused["detail"]
    assert_problem(http.post("/models", json=model_body("late", parents=["acme/ft@1"])),
                   409, "policy-violation")

    cleared = created(http.post("/artifacts/search/app@1/clear", json={"reason": "retrained"}))
    assert cleared["status"] == "cleared"
    undone = created(http.post("/artifacts/acme/base@1/unflag", json={"reason": "false positive"}))
    assert undone["status"] == "clean"
    assert {m["status"] for m in created(http.get("/models"))} == {"clean"}
    ended = created(http.post("/deployments/undeploy", json={
        "ref": "other@1", "environment": "prod", "team": "fraud"}))
    assert ended["active"] is False
    assert sorted(d["ref"] for d in created(http.get("/deployments"))) == [
        "acme/app@1", "search/app@1"]
    assert created(http.get("/consistency")) == []
    assert created(http.get("/audit/verify"))["ok"] is True


def test_identify_and_verify_over_http(admin_http: httpx.Client) -> None:
    http = admin_http
    files = [entry("w", "model.safetensors"), entry("{}", "config.json")]
    created(http.post("/models", json={"name": "acme/m", "version": "2",
                                       "manifest": {"entries": files}}))
    found = created(http.post("/identify", json={"manifest": {"entries": files[::-1]}}))
    assert [a["ref"] for a in found] == ["acme/m@2"]
    assert created(http.post("/identify", json={"manifest": {"entries": [entry("x")]}})) == []
    changed = [entry("tampered", "model.safetensors"), entry("new", "extra.bin")]
    report = created(http.post("/verify", json={"manifest": {"entries": changed},
                                                "ref": "acme/m@2"}))
    assert report["ok"] is False
    assert {f["path"]: f["state"] for f in report["files"]} == {
        "config.json": "missing", "extra.bin": "extra", "model.safetensors": "mismatch"}
    assert report["signature"]["state"] == "unsigned"


# --- bad input: 4xx problems, never 500 ---------------------------------------------------------

BAD_REQUESTS: list[Any] = [
    pytest.param("GET", "/artifacts/nobody@1", None, 404, "not-found", id="unknown-ref"),
    pytest.param("GET", "/artifacts/acme/nobody@1/descendants", None, 404, "not-found",
                 id="unknown-ref-descendants"),
    pytest.param("POST", "/artifacts/nobody@1/flag", {"reason": "x"}, 404, "not-found",
                 id="flag-unknown"),
    pytest.param("POST", "/models", model_body("child", parents=["ghost@1"]), 404, "not-found",
                 id="unknown-parent"),
    pytest.param("POST", "/deployments", {"ref": "acme/base@1", "environment": "prod",
                                          "team": "ghosts"}, 404, "not-found", id="unknown-team"),
    pytest.param("POST", "/models", model_body("acme/base", content="other bytes"), 409,
                 "already-exists", id="duplicate-version"),
    pytest.param("POST", "/models", model_body("copy"), 409, "duplicate-content",
                 id="duplicate-content"),
    pytest.param("POST", "/models", model_body("self", parents=["self@1"]), 409, "lineage-cycle",
                 id="self-parent"),
    pytest.param("POST", "/artifacts/acme/base@1/parents", {"parents": ["acme/ft@1"]}, 409,
                 "lineage-cycle", id="cycle"),
    pytest.param("POST", "/teams", {"name": "fraud"}, 409, "already-exists", id="duplicate-team"),
    pytest.param("POST", "/artifacts/acme/ft@1/clear", {"reason": "x"}, 409, "policy-violation",
                 id="clear-clean"),
    pytest.param("GET", "/artifacts/no-version/status", None, 400, "invalid-input",
                 id="malformed-ref"),
    pytest.param("GET", "/artifacts/a@b@c", None, 400, "invalid-input", id="two-ats"),
    pytest.param("POST", "/models", model_body("x", parents=["not a ref"]), 400, "invalid-input",
                 id="malformed-parent"),
    pytest.param("POST", "/datasets", {"name": "d", "version": "1", "digest": "md5:abc"}, 400,
                 "invalid-input", id="bad-digest"),
    pytest.param("POST", "/models", {**model_body("bad-sha"), "manifest": {"entries": [
        {"path": "w.bin", "size": 1, "sha256": "ABC"}]}}, None, None, id="bad-sha256"),
    pytest.param("POST", "/models", {**model_body("dotdot"), "manifest": {"entries": [
        entry("x", "../escape.bin")]}}, None, None, id="path-with-dotdot"),
    pytest.param("POST", "/models", {**model_body("abs"), "manifest": {"entries": [
        entry("x", "/etc/passwd")]}}, None, None, id="absolute-path"),
    pytest.param("POST", "/models", {**model_body("twice"), "manifest": {"entries": [
        entry("x", "a.bin"), entry("y", "a.bin")]}}, None, None, id="path-twice"),
    pytest.param("POST", "/verify", {"manifest": {"entries": [entry("x", "a\\b")]}}, None, None,
                 id="backslash-path"),
    pytest.param("POST", "/models", {**model_body("neg"), "manifest": {"entries": [
        {"path": "w.bin", "size": -1, "sha256": "0" * 64}]}}, 422, "invalid-request",
        id="negative-size"),
    pytest.param("POST", "/models", {"name": "no-manifest", "version": "1"}, 422,
                 "invalid-request", id="missing-field"),
    pytest.param("POST", "/models", {**model_body("r"), "relation": "grafted"}, 422,
                 "invalid-request", id="unknown-relation"),
    pytest.param("POST", "/models", {**model_body("e"), "unexpected": 1}, 422, "invalid-request",
                 id="extra-field"),
    pytest.param("POST", "/decisions", {"ref": "acme/base@1", "team": "fraud",
                                        "verdict": "maybe", "reason": "r"}, 422,
                 "invalid-request", id="bad-verdict"),
    pytest.param("GET", "/artifacts/acme/base@1/descendants?depth=0", None, 422,
                 "invalid-request", id="depth-zero"),
    pytest.param("POST", "/tokens/abc/revoke", None, 422, "invalid-request", id="token-id-text"),
]


@pytest.fixture
def small_registry(admin_http: httpx.Client) -> httpx.Client:
    """acme/base@1 -> acme/ft@1, the team fraud; ``copy`` has the bytes of acme/base@1."""
    created(admin_http.post("/teams", json={"name": "fraud"}))
    created(admin_http.post("/models", json=model_body("acme/base", content="weights of copy@1")))
    created(admin_http.post("/models", json=model_body("acme/ft", parents=["acme/base@1"])))
    return admin_http


def test_bad_requests_get_4xx_problems(small_registry: httpx.Client) -> None:
    # One server for the whole table: each case is a request, not a new database.
    failures = []
    for case in BAD_REQUESTS:
        method, path, body, status, code = case.values
        response = small_registry.request(method, path, json=body)
        if status is None:
            status_ok = 400 <= response.status_code < 500
        else:
            status_ok = response.status_code == status
        is_problem = response.headers.get("content-type", "").startswith(PROBLEM)
        code_ok = code is None or (is_problem and response.json().get("code") == code)
        if not (status_ok and is_problem and code_ok):
            failures.append(f"{case.id}: {response.status_code} {response.text[:200]}")
    assert failures == []
    models = created(small_registry.get("/models"))
    assert [m["ref"] for m in models] == ["acme/base@1", "acme/ft@1"], "refusals wrote nothing"
    assert created(small_registry.get("/audit/verify"))["events"] == 4


def test_refs_are_percent_decoded_in_urls(small_registry: httpx.Client) -> None:
    http = small_registry
    created(http.post("/models", json=model_body("odd#name?x", content="odd")))
    shown = created(http.get("/artifacts/odd%23name%3Fx@1"))
    assert shown["ref"] == "odd#name?x@1"
    assert created(http.get("/artifacts/acme%2Fbase@1/descendants"))[0]["ref"] == "acme/ft@1"


# --- bad input that could reach the database unchecked: always a 4xx problem -----------


def test_a_file_size_beyond_64_bits_is_a_4xx_problem(admin_http: httpx.Client) -> None:
    body = {**model_body("huge"), "manifest": {"entries": [
        {"path": "w.bin", "size": 2**70, "sha256": "0" * 64}]}}
    response = admin_http.post("/models", json=body)
    assert 400 <= response.status_code < 500, response.text


def test_an_unknown_status_filter_is_a_4xx_problem(admin_http: httpx.Client) -> None:
    response = admin_http.get("/models", params={"status": "bogus"})
    assert 400 <= response.status_code < 500, response.text


def test_a_token_id_beyond_64_bits_is_a_4xx_problem(admin_http: httpx.Client) -> None:
    response = admin_http.post(f"/tokens/{2**70}/revoke")
    assert 400 <= response.status_code < 500, response.text


OVERLONG_OR_NUL = [
    ("/models", model_body("n" * 301)),
    ("/teams", {"name": "t" * 101}),
    ("/tokens", {"user": "u" * 201, "role": "reader"}),
    ("/models", model_body("nul\x00name")),
]


def test_overlong_or_nul_fields_are_refused_as_problems(admin_http: httpx.Client) -> None:
    answers = [admin_http.post(path, json=body) for path, body in OVERLONG_OR_NUL]
    assert [r.status_code for r in answers] == [400] * len(OVERLONG_OR_NUL)
    assert all(r.headers["content-type"] == "application/problem+json" for r in answers)


def test_bom_export_and_import_over_http(small_registry: httpx.Client) -> None:
    http = small_registry
    cyclonedx = created(http.get("/bom/acme/ft@1"))
    assert (cyclonedx["bomFormat"], cyclonedx["specVersion"]) == ("CycloneDX", "1.6")
    assert cyclonedx["metadata"]["component"]["bom-ref"] == "model:acme/ft@1"
    spdx = created(http.get("/bom/acme/ft@1", params={"format": "spdx3"}))
    assert "ai_AIPackage" in {element["type"] for element in spdx["@graph"]}
    assert http.get("/bom/acme/ft@1", params={"format": "pdf"}).status_code == 422
    assert http.get("/bom/nope@1").status_code == 404
    # Importing what the registry exported registers nothing new.
    assert created(http.post("/bom/import", json=cyclonedx)) == {
        "registered": [],
        "flagged": [],
        "warnings": [],
    }
    broken = http.post("/bom/import", json={"bomFormat": "CycloneDX"})
    assert broken.status_code == 400
    assert broken.headers["content-type"] == "application/problem+json"


def test_bom_import_over_http_acts_for_the_team_named(small_registry: httpx.Client) -> None:
    http = small_registry
    document = created(http.get("/bom/acme/ft@1"))
    document["metadata"]["component"]["version"] = "2"
    document["metadata"]["component"]["bom-ref"] = "model:acme/ft@2"
    del document["metadata"]["component"]["hashes"]  # the digest follows the new file list
    document["metadata"]["component"]["components"] = [
        {
            "type": "file",
            "name": "weights.bin",
            "hashes": [{"alg": "SHA-256", "content": "ab" * 32}],
            "properties": [{"name": "mbom:size", "value": "5"}],
        }
    ]
    missing = http.post("/bom/import", params={"team": "nowhere"}, json=document)
    assert missing.status_code == 404
    imported = http.post("/bom/import", params={"team": "fraud"}, json=document)
    assert created(imported)["registered"] == ["acme/ft@2"]
    assert created(http.get("/artifacts/acme/ft@2"))["team"] == "fraud"
