"""Every writing API operation x every kind of caller, over real HTTP, on SQLite and PostgreSQL.

:data:`ROWS` holds one row per writing operation (some routes have several: a
rescan that flags is not a clean rescan); each row gives the HTTP status every
caller in :data:`CALLERS` must get. The rows are checked against the app's
routes: a new writing route without a row fails :func:`test_every_writing_route_has_a_row`.

The registry and the server are built once per backend. Each (row, caller) case
creates the objects it acts on under names of its own first, so no case sees
another's writes and the outcomes do not depend on the order.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import io
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import Engine

from registry import service, signing
from registry.api import create_app
from registry.audit_key import KEY_FILENAME, AuditKeyFile
from registry.client import LocalRegistry
from registry.db import make_engine, migrate
from registry.identity import Actor, Role
from registry.service.audit import bind_key
from registry.service.authorization import RULES, Operation
from registry.settings import Settings
from registry.store import open_store
from tests.conftest import fake_manifest
from tests.registry.live_server import serve_in_thread
from tests.registry.test_db_support import pg_database  # noqa: F401  (a fixture)

#: Who calls: no token, a bad one, a revoked one, then real tokens by role and team.
CALLERS = (
    "none",
    "bad",
    "revoked",
    "reader",
    "publisher-a",
    "publisher-b",
    "publisher",
    "approver-a",
    "approver-b",
    "admin",
)
TOKENS = {
    "revoked": (Role.PUBLISHER, None),
    "reader": (Role.READER, None),
    "publisher-a": (Role.PUBLISHER, "a"),
    "publisher-b": (Role.PUBLISHER, "b"),
    "publisher": (Role.PUBLISHER, None),
    "approver-a": (Role.APPROVER, "a"),
    "approver-b": (Role.APPROVER, "b"),
    "admin": (Role.ADMIN, None),
}
WRITING = {"POST", "PUT", "PATCH", "DELETE"}


def outcome(ok: int, *allowed: str) -> dict[str, int]:
    """``ok`` for the ``allowed`` callers, 401 without a valid token, 403 for everyone else."""
    unknown = set(allowed) - set(CALLERS)
    assert not unknown, unknown
    return {
        caller: 401 if caller in ("none", "bad", "revoked") else ok if caller in allowed else 403
        for caller in CALLERS
    }


ADMIN = ("admin",)
ANY_PUBLISHER = ("publisher-a", "publisher-b", "publisher", "approver-a", "approver-b", "admin")
FOR_TEAM_A = ("publisher-a", "publisher", "approver-a", "admin")  # and team-less publishers
ANYONE = ("reader", *ANY_PUBLISHER)


@dataclass
class Case:
    """One caller's attempt: the registry (as an admin, for set-up) and a unique name."""

    reg: LocalRegistry
    n: int

    def model(self, prefix: str, **options: Any) -> str:
        """Register ``prefix-N@1`` (as an admin) and return its ref."""
        ref = f"{prefix}-{self.n}@1"
        self.reg.register_model(name=ref.split("@")[0],
            version="1",
            manifest=fake_manifest(f"{ref} {options}"),
            **options,
        )
        return ref


@dataclass(frozen=True)
class Row:
    """A writing operation: its route, how to call it for a case, who may."""

    name: str
    method: str
    route: str
    call: Callable[[Case], tuple[str, Any]]  # (path under /api/v1, JSON body)
    expected: dict[str, int] = field(default_factory=dict)


def manifest(content: str) -> dict[str, Any]:
    data = content.encode()
    digest = hashlib.sha256(data).hexdigest()
    return {"entries": [{"path": "weights.bin", "size": len(data), "sha256": digest}]}


def trigger_b64() -> str:
    buffer = io.BytesIO()
    mask = np.zeros((1, 8, 8), dtype=np.float32)
    mask[0, :2, :2] = 1.0
    np.savez(buffer, mask=mask, pattern=np.ones((1, 8, 8), dtype=np.float32))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def report(verdict: str) -> dict[str, Any]:
    return {"report": {"verdict": verdict, "score": 4.5 if verdict == "compromised" else 0.1}}


def infected(case: Case, **options: Any) -> str:
    """A model of an infected lineage, as ``options`` register it."""
    source = case.model("src")
    ref = case.model("inf", parents=[source], override="set-up", **options)
    case.reg.flag(source, reason="backdoor")
    return ref


def deployed(case: Case, ref: str, *teams: str) -> str:
    for team in teams:
        case.reg.deploy(ref, environment="prod", team=team, override="set-up")
    return ref


def key_pem() -> str:
    _, public = signing.generate_keypair()
    return public.decode()


def bom(ref: str, parent: str) -> dict[str, Any]:
    """A CycloneDX BOM recording ``parent`` as the base of ``ref``."""
    name, version = ref.split("@")
    base_name, base_version = parent.split("@")
    base = {"type": "machine-learning-model", "name": base_name, "version": base_version}
    model = {
        "type": "machine-learning-model",
        "name": name,
        "version": version,
        "pedigree": {"ancestors": [base]},
    }
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [model, base]}


def uploaded(case: Case, content: str) -> dict[str, Any]:
    """Put ``content`` into the server's store (as the admin's set-up); its manifest."""
    data = content.encode()
    info = case.reg.store.put(io.BytesIO(data))
    case.reg.record_blobs([info], store=case.reg.store)
    return manifest(content)


def stored_model(case: Case, prefix: str) -> str:
    """A stored, admitted model of team a."""
    ref = f"{prefix}-{case.n}@1"
    case.reg.admit_model(
        manifest=_manifest_of(case, ref),
        name=ref.split("@")[0],
        version="1",
        team="a",
    )
    return ref


def _manifest_of(case: Case, content: str) -> Any:
    from registry.schemas import ManifestIn, manifest_of

    return manifest_of(ManifestIn.model_validate(uploaded(case, content)))


def token_id(case: Case) -> int:
    return int(case.reg.create_token(user=f"u{case.n}", role=Role.READER).id)


def trigger_of(case: Case) -> tuple[str, int]:
    ref = case.model("trig")
    attached = case.reg.attach_trigger(ref, data=base64.b64decode(trigger_b64()))
    return ref, int(attached.id)


ROWS = (
    Row(
        "upload a file",
        "POST",
        "/api/v1/blobs",
        lambda c: ("/blobs", f"bytes of case {c.n}".encode()),
        outcome(201, *ANY_PUBLISHER),
    ),
    Row(
        "register a stored model for team a",
        "POST",
        "/api/v1/models/stored",
        lambda c: (
            "/models/stored",
            {"name": f"s-{c.n}", "version": "1", "manifest": uploaded(c, f"s{c.n}"), "team": "a"},
        ),
        outcome(201, *FOR_TEAM_A),
    ),
    Row(
        "import a stored Hugging Face snapshot for team a",
        "POST",
        "/api/v1/models/hf/stored",
        lambda c: (
            "/models/hf/stored",
            {
                "plan": {"repo_id": f"hf/s-{c.n}", "version": "1"},
                "manifest": uploaded(c, f"hfs{c.n}"),
                "team": "a",
            },
        ),
        outcome(201, *FOR_TEAM_A),
    ),
    Row(
        "pull a team-a model for team a",
        "POST",
        "/api/v1/models/{ref}/pulls",
        lambda c: (f"/models/{stored_model(c, 'p')}/pulls", {"team": "a"}),
        outcome(201, "reader", *FOR_TEAM_A),
    ),
    Row(
        "rescan a stored team-a model on the server (no profile: 404 once allowed)",
        "POST",
        "/api/v1/models/{ref}/rescans",
        lambda c: (f"/models/{stored_model(c, 'rs')}/rescans", {}),
        outcome(404, *FOR_TEAM_A),
    ),
    Row(
        "replay on stored files on the server (no trigger: 404 once allowed)",
        "POST",
        "/api/v1/models/{ref}/replays/run",
        lambda c: (f"/models/{stored_model(c, 'rp')}/replays/run", {}),
        outcome(404, *ADMIN),
    ),
    Row(
        "register for team a",
        "POST",
        "/api/v1/models",
        lambda c: (
            "/models",
            {
                "name": f"m-{c.n}",
                "version": "1",
                "manifest": manifest(f"m{c.n}"),
                "team": "a",
                "parents": ["base@1"],
            },
        ),
        outcome(201, *FOR_TEAM_A),
    ),
    Row(
        "register with no team",
        "POST",
        "/api/v1/models",
        lambda c: ("/models", {"name": f"m-{c.n}", "version": "1", "manifest": manifest(f"{c.n}")}),
        outcome(201, "publisher", "admin"),
    ),
    Row(
        "import a Hugging Face snapshot for team a",
        "POST",
        "/api/v1/models/hf",
        lambda c: (
            "/models/hf",
            {
                "plan": {"repo_id": f"hf/m-{c.n}", "version": "1"},
                "manifest": manifest(f"hf{c.n}"),
                "team": "a",
            },
        ),
        outcome(201, *FOR_TEAM_A),
    ),
    Row(
        "rescan of a team-a model: compromised (a flag)",
        "POST",
        "/api/v1/models/{ref}/rescan",
        lambda c: (f"/models/{c.model('r', team='a')}/rescan", report("compromised")),
        outcome(200, *ADMIN),
    ),
    Row(
        "rescan of a team-less model: compromised (a flag)",
        "POST",
        "/api/v1/models/{ref}/rescan",
        lambda c: (f"/models/{c.model('r')}/rescan", report("compromised")),
        outcome(200, *ADMIN),
    ),
    Row(
        "rescan of a team-a model: clean",
        "POST",
        "/api/v1/models/{ref}/rescan",
        lambda c: (f"/models/{c.model('r', team='a')}/rescan", report("clean")),
        outcome(200, *FOR_TEAM_A),
    ),
    Row(
        "rescan of a team-less model: clean",
        "POST",
        "/api/v1/models/{ref}/rescan",
        lambda c: (f"/models/{c.model('r')}/rescan", report("clean")),
        outcome(200, "publisher", "admin"),
    ),
    Row(
        "attach a trigger",
        "POST",
        "/api/v1/models/{ref}/triggers",
        lambda c: (f"/models/{c.model('t', team='a')}/triggers", {"data": trigger_b64()}),
        outcome(201, *ADMIN),
    ),
    Row(
        "record replays",
        "POST",
        "/api/v1/models/{ref}/replays",
        lambda c: (lambda ref, tid: (f"/models/{ref}/replays", {"trigger_id": tid, "results": []}))(
            *trigger_of(c)
        ),
        outcome(200, *ADMIN),
    ),
    Row(
        "register a dataset",
        "POST",
        "/api/v1/datasets",
        lambda c: (
            "/datasets",
            {"name": f"d-{c.n}", "version": "1", "digest": "sha256:" + f"{c.n:064x}"},
        ),
        outcome(201, *ANY_PUBLISHER),
    ),
    Row(
        "add a parent to a team-a model",
        "POST",
        "/api/v1/artifacts/{ref}/parents",
        lambda c: (f"/artifacts/{c.model('p', team='a')}/parents", {"parents": ["base@1"]}),
        outcome(200, *FOR_TEAM_A),
    ),
    Row(
        "add a parent to a team-less model",
        "POST",
        "/api/v1/artifacts/{ref}/parents",
        lambda c: (f"/artifacts/{c.model('p')}/parents", {"parents": ["base@1"]}),
        outcome(200, "publisher", "admin"),
    ),
    Row(
        "flag",
        "POST",
        "/api/v1/artifacts/{ref}/flag",
        lambda c: (f"/artifacts/{c.model('f', team='a')}/flag", {"reason": "backdoor"}),
        outcome(200, *ADMIN),
    ),
    Row(
        "unflag",
        "POST",
        "/api/v1/artifacts/{ref}/unflag",
        lambda c: (lambda ref: (f"/artifacts/{ref}/unflag", {"reason": "false positive"}))(
            c.reg.flag(c.model("u", team="a"), reason="backdoor").ref
        ),
        outcome(200, *ADMIN),
    ),
    Row(
        "clear a team-a model deployed by team a",
        "POST",
        "/api/v1/artifacts/{ref}/clear",
        lambda c: (f"/artifacts/{deployed(c, infected(c, team='a'), 'a')}/clear", {"reason": "r"}),
        outcome(200, "approver-a", "admin"),
    ),
    Row(
        "clear a team-a model deployed by teams a and b",
        "POST",
        "/api/v1/artifacts/{ref}/clear",
        lambda c: (
            f"/artifacts/{deployed(c, infected(c, team='a'), 'a', 'b')}/clear",
            {"reason": "r"},
        ),
        outcome(200, *ADMIN),
    ),
    Row(
        "clear a team-less model deployed by team b",
        "POST",
        "/api/v1/artifacts/{ref}/clear",
        lambda c: (f"/artifacts/{deployed(c, infected(c), 'b')}/clear", {"reason": "r"}),
        outcome(200, *ADMIN),  # a team-less model concerns every team, not only its deployers
    ),
    Row(
        "clear a team-less model nobody deploys",
        "POST",
        "/api/v1/artifacts/{ref}/clear",
        lambda c: (f"/artifacts/{infected(c)}/clear", {"reason": "r"}),
        outcome(200, *ADMIN),
    ),
    Row(
        "deploy for team a",
        "POST",
        "/api/v1/deployments",
        lambda c: (
            "/deployments",
            {"ref": c.model("dep", team="a"), "environment": "prod", "team": "a"},
        ),
        outcome(201, *FOR_TEAM_A),
    ),
    Row(
        "undeploy for team a",
        "POST",
        "/api/v1/deployments/undeploy",
        lambda c: (
            "/deployments/undeploy",
            {"ref": deployed(c, c.model("dep", team="a"), "a"), "environment": "prod", "team": "a"},
        ),
        outcome(200, *FOR_TEAM_A),
    ),
    Row(
        "create a team",
        "POST",
        "/api/v1/teams",
        lambda c: ("/teams", {"name": f"team-{c.n}"}),
        outcome(201, *ADMIN),
    ),
    Row(
        "approve for team a",
        "POST",
        "/api/v1/decisions",
        lambda c: (
            "/decisions",
            {"ref": c.model("dec"), "team": "a", "verdict": "approve", "reason": "r"},
        ),
        outcome(201, "approver-a", "admin"),
    ),
    Row(
        "block for team b",
        "POST",
        "/api/v1/decisions",
        lambda c: (
            "/decisions",
            {"ref": c.model("dec"), "team": "b", "verdict": "block", "reason": "r"},
        ),
        outcome(201, "approver-b", "admin"),
    ),
    Row(
        "enrol a key",
        "POST",
        "/api/v1/keys",
        lambda c: ("/keys", {"publisher": f"p{c.n}", "public_key_pem": key_pem()}),
        outcome(201, *ADMIN),
    ),
    Row(
        "create a token",
        "POST",
        "/api/v1/tokens",
        lambda c: ("/tokens", {"user": f"u{c.n}", "role": "admin"}),
        outcome(201, *ADMIN),
    ),
    Row(
        "revoke a token",
        "POST",
        "/api/v1/tokens/{token_id}/revoke",
        lambda c: (f"/tokens/{token_id(c)}/revoke", None),
        outcome(200, *ADMIN),
    ),
    Row(
        "import a BOM adding a base to a team-a model",
        "POST",
        "/api/v1/bom/import",
        lambda c: ("/bom/import", bom(c.model("bom", team="a"), "base@1")),
        outcome(201, *FOR_TEAM_A),
    ),
    Row(
        "import a BOM adding a base to a team-less model",
        "POST",
        "/api/v1/bom/import",
        lambda c: ("/bom/import", bom(c.model("bom"), "base@1")),
        outcome(201, "publisher", "admin"),
    ),
    Row(
        "anchor the audit log",
        "POST",
        "/api/v1/audit/anchor",
        lambda _case: ("/audit/anchor", None),
        outcome(409, *ADMIN),  # the chain is keyed from its first event: nothing to anchor
    ),
    # Reads sent as POST (a body too large for a query): any valid token.
    Row(
        "inherited profile",
        "POST",
        "/api/v1/profiles/inherited",
        lambda _case: ("/profiles/inherited", {"parents": ["base@1"]}),
        outcome(200, *ANYONE),
    ),
    Row(
        "identify",
        "POST",
        "/api/v1/identify",
        lambda _case: ("/identify", {"manifest": manifest("nothing")}),
        outcome(200, *ANYONE),
    ),
    Row(
        "verify",
        "POST",
        "/api/v1/verify",
        lambda _case: ("/verify", {"manifest": manifest("x"), "ref": "base@1"}),
        outcome(200, *ANYONE),
    ),
    Row(
        "verify a model-signing bundle",
        "POST",
        "/api/v1/verify/model-signing",
        lambda _case: (
            "/verify/model-signing",
            {"manifest": manifest("x"), "bundle": {}, "public_key_pem": key_pem()},
        ),
        outcome(400, *ANYONE),  # an empty bundle is refused once the caller is known
    ),
)


@dataclass
class Served:
    """A registry served over HTTP, the admin's view of it, and a token per caller."""

    reg: LocalRegistry
    clients: dict[str, httpx.Client]
    counter: Iterator[int]


def prepare(reg: LocalRegistry) -> dict[str, str]:
    """Teams a (requires approval) and b, a base approved for both, and the callers' tokens."""
    reg.create_team(name="a", require_approval=True)
    reg.create_team(name="b")
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"))
    for team in ("a", "b"):
        reg.decide(ref="base@1", team=team, verdict="approve", reason="reviewed")
    tokens = {"bad": "mbom_not-a-real-token"}
    for caller, (role, team) in TOKENS.items():
        made = reg.create_token(user=caller, role=role, team=team)
        tokens[caller] = made.token
        if caller == "revoked":
            reg.revoke_token(made.id)
    return tokens


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One registry and server per backend for the whole matrix."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('matrix') / 'registry.db'}"
    else:
        url = request.getfixturevalue("mbom_pg_database")
    key = AuditKeyFile(tmp_path_factory.mktemp("matrix-key") / KEY_FILENAME)
    engine: Engine = bind_key(make_engine(url), key)  # the server writes with the same key
    migrate(engine)
    store = open_store(str(tmp_path_factory.mktemp("matrix-store")))
    reg = LocalRegistry(engine, Actor("root", Role.ADMIN), store=store)
    tokens = prepare(reg)
    app = create_app(Settings(database_url=url), engine=engine, store=store)
    with serve_in_thread(app) as base_url:
        clients = {
            caller: httpx.Client(
                base_url=f"{base_url}/api/v1",
                headers={"Authorization": f"Bearer {tokens[caller]}"} if caller != "none" else {},
                timeout=30,
            )
            for caller in CALLERS
        }
        try:
            yield Served(reg, clients, itertools.count(1))
        finally:
            for client in clients.values():
                client.close()
    engine.dispose()


def send(served: Served, row: Row, caller: str, request: tuple[str, Any]) -> int:
    """Send the row's request as ``caller``; the HTTP status (a problem body on errors)."""
    path, body = request
    if isinstance(body, bytes):
        response = served.clients[caller].request(row.method, path, content=body)
    else:
        response = served.clients[caller].request(row.method, path, json=body)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
    return response.status_code


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_each_caller_gets_the_expected_answer(served: Served, row: Row) -> None:
    """Each caller allowed gets objects of its own; the refused share one set (a refusal
    writes nothing, so they cannot disturb one another — and if one did write, its own
    answer already fails the row)."""
    refused_request = None
    got = {}
    for caller in CALLERS:
        if row.expected[caller] in (401, 403):
            refused_request = refused_request or row.call(Case(served.reg, next(served.counter)))
            got[caller] = send(served, row, caller, refused_request)
        else:
            got[caller] = send(
                served, row, caller, row.call(Case(served.reg, next(served.counter)))
            )
    wrong = {
        c: f"expected {row.expected[c]}, got {got[c]}" for c in CALLERS if got[c] != row.expected[c]
    }
    assert not wrong, wrong


def test_every_writing_route_has_a_row() -> None:
    app = create_app(Settings(database_url="sqlite://"), engine=make_engine("sqlite://"))
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method.upper() in WRITING
    }
    assert routes == {(row.method, row.route) for row in ROWS}


def test_the_matrix_covers_every_caller_kind() -> None:
    assert all(set(row.expected) == set(CALLERS) for row in ROWS)
    assert len(ROWS) * len(CALLERS) >= 300


def test_every_writing_service_verb_asks_the_authorization_table() -> None:
    """Each public verb marked ``@mutation`` calls authorize() or authorize_model() itself."""
    verbs = [getattr(service, name) for name in service.__all__]
    writing = [verb for verb in verbs if hasattr(verb, "__wrapped__")]
    assert len(writing) >= 18
    unchecked = [
        verb.__name__
        for verb in writing
        if not re.search(r"\bauthorize(_model)?\(", inspect.getsource(verb.__wrapped__))
    ]
    assert not unchecked
    assert set(RULES) == set(Operation)
