"""Every failure is a problem answer (issue 10, point 2).

Text the database cannot encode (lone surrogates) is refused as a 400 before it
reaches the database, on every writing endpoint and on both backends; an error
nobody expected is a problem+json 500 whose incident id is in the server's log,
and the connection stays usable.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from registry.api import create_app
from registry.client import LocalRegistry
from registry.identity import Actor, Role
from registry.settings import Settings
from tests.conftest import fake_manifest
from tests.registry.live_server import serve_in_thread
from tests.registry.test_api import PROBLEM, assert_problem, model_body
from tests.registry.test_cli import MBOM, cli_env

BAD = "x\ud800"  # a lone surrogate: json.loads accepts its escape, UTF-8 cannot hold it

#: Writing endpoints and a body whose text field holds the lone surrogate.
SURROGATE_WRITES: list[tuple[str, dict[str, Any]]] = [
    ("/teams", {"name": BAD}),
    ("/models", {**model_body("ok"), "name": BAD}),
    ("/models", model_body("ok", source=BAD)),
    ("/datasets", {"name": BAD, "version": "1", "digest": "sha256:" + "d" * 64}),
    ("/deployments", {"ref": "base@1", "environment": BAD, "team": "t"}),
    ("/decisions", {"team": "t", "ref": "base@1", "verdict": "approve", "reason": BAD}),
    ("/tokens", {"user": BAD, "role": "reader"}),
    ("/keys", {"publisher": BAD, "public_key_pem": "not a key"}),
    ("/artifacts/base@1/flag", {"reason": BAD}),
    ("/artifacts/base@1/parents", {"parents": [BAD + "@1"]}),
    ("/bom/import", {"bomFormat": "CycloneDX", "specVersion": "1.6",
                     "components": [{"type": "machine-learning-model", "name": BAD,
                                     "version": "1", "bom-ref": BAD}]}),
    ("/verify", {"manifest": {"entries": []}, "ref": BAD + "@1"}),
]


@pytest.fixture
def served(engine: Engine, database_url: str) -> Iterator[tuple[str, str]]:
    """The app on this test's database, with team t, base@1 and an admin token."""
    reg = LocalRegistry(engine, Actor("setup", Role.ADMIN))
    reg.create_team(name="t")
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"))
    token = str(reg.create_token(user="root", role=Role.ADMIN).token)
    with serve_in_thread(create_app(Settings(database_url=database_url), engine=engine)) as url:
        yield url, token


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST ``body`` as JSON with ASCII escapes (how a lone surrogate travels)."""
    return http.post(path, content=json.dumps(body).encode(),
                     headers={"content-type": "application/json"})


def client(served: tuple[str, str]) -> httpx.Client:
    """An admin client of the served app."""
    url, token = served
    return httpx.Client(base_url=f"{url}/api/v1", timeout=30,
                        headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize(("path", "body"), SURROGATE_WRITES,
                         ids=[f"{p}-{i}" for i, (p, _) in enumerate(SURROGATE_WRITES)])
def test_lone_surrogate_is_a_400_problem_not_a_500(
    served: tuple[str, str], engine: Engine, path: str, body: dict[str, Any]
) -> None:
    before = LocalRegistry(engine).list_events()
    with client(served) as http:
        response = post(http, path, body)
        problem = assert_problem(response, 400, "invalid-input")
        assert "not valid Unicode" in problem["detail"]
        assert "\\ud800" in problem["detail"]
        # The same connection answers the next request.
        assert http.get("/teams").status_code == 200
    assert LocalRegistry(engine).list_events() == before


def test_lone_surrogate_in_an_invalid_body_is_a_422_problem(served: tuple[str, str]) -> None:
    with client(served) as http:
        response = post(http, "/teams", {"name": BAD, "require_approval": "maybe"})
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"].startswith(PROBLEM)


def test_lone_surrogate_in_a_json_key_is_refused(served: tuple[str, str]) -> None:
    with client(served) as http:
        response = post(http, "/teams", {"name": "fine", BAD: 1})
        assert_problem(response, 400, "invalid-input")


def test_unexpected_error_is_a_problem_500_with_a_logged_incident(
    served: tuple[str, str], engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # A real fault: the table the route reads is gone.
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE deployment"))
    with client(served) as http, caplog.at_level(logging.ERROR, logger="mbom.api"):
        response = http.get("/deployments")
        problem = assert_problem(response, 500, "internal-error")
        incident = problem["context"]["incident"]
        assert incident in problem["detail"]
        assert any(incident in record.getMessage() for record in caplog.records)
        assert http.get("/teams").status_code == 200


@pytest.mark.parametrize("args", [("team", "create", b"x\xff"), ("show", b"x\xff@1"),
                                  ("flag", b"x\xff@1", "--reason", "r")])
def test_undecodable_cli_argument_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str | bytes, ...]
) -> None:
    # An existing registry: a read on a missing one is refused before its argument is used.
    subprocess.run([str(MBOM), "team", "create", "setup"], env=cli_env(tmp_path), check=True,
                   capture_output=True, timeout=60)
    done = subprocess.run([str(MBOM), *args], env=cli_env(tmp_path), capture_output=True,
                          timeout=60, check=False)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, err
    assert err.startswith("mbom: error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert "not valid Unicode" in err


def _answer_before_body(url: str, path: str, headers: dict[str, str]) -> str:
    """Send only the head of a request announcing a 400 MB JSON body; the status line the
    server answers with before it gets the body ('' if it waits for the body)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in {
        "Host": parts.netloc, "Content-Type": "application/json",
        "Content-Length": str(400 * 2**20), **headers}.items())
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + b'{"name": "')
        try:
            return sock.recv(4096).decode("latin-1").split("\r\n")[0]
        except TimeoutError:
            return ""


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic cm9vdDpyb290"])
def test_an_unauthenticated_body_is_refused_before_it_is_read(
    served: tuple[str, str], authorization: str | None
) -> None:
    """Without a valid token the server answers 401 at once, never buffering the body."""
    url, token = served
    headers = {"Authorization": authorization} if authorization else {}
    for path in ("/api/v1/bom/import", "/api/v1/models", "/api/v1/blobs"):
        assert _answer_before_body(url, path, headers) == "HTTP/1.1 401 Unauthorized", path
    # With a valid token the server does wait for the body it was promised.
    assert _answer_before_body(url, "/api/v1/models", {"Authorization": f"Bearer {token}"}) == ""
