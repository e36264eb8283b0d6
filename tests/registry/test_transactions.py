"""Every operation is one transaction: a failure anywhere in it leaves nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, event

from lineage import Relation
from registry import signing
from registry.client import LocalRegistry
from registry.errors import (
    AlreadyExists,
    Conflict,
    DuplicateContent,
    LineageCycle,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    SignatureError,
)
from registry.identity import Actor, Role
from tests.conftest import fake_manifest
from tests.registry.test_db_support import (  # noqa: F401  (fixtures: engine and what it needs)
    fast_engine,
    pg_database,
    row_counts,
    snapshot,
    sqlite_template,
)

PUBLISHER = Actor("bob", Role.PUBLISHER)
Call = tuple[str, tuple[Any, ...], dict[str, Any]]


class InjectedFailure(Exception):
    """Raised by the test in the middle of an operation."""


def call(verb: str, *args: Any, **kwargs: Any) -> Call:
    return verb, args, kwargs


@pytest.fixture
def acme(tmp_path: Path) -> tuple[Ed25519PrivateKey, str]:
    """Publisher acme's key pair: the private key and the public PEM."""
    private, public = signing.write_keypair(tmp_path / "acme")
    return signing.load_private_key(private), public.read_text()


@pytest.fixture
def registry(reg: LocalRegistry, acme: tuple[Ed25519PrivateKey, str]) -> LocalRegistry:
    """base@1 -> ft@1 -> app@1 (deployed); bad@1 flagged; dataset d@1; team t; acme's key."""
    reg.create_team(name="t")
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"))
    reg.register_model(name="ft", version="1", manifest=fake_manifest("ft"), parents=["base@1"]
    )
    reg.register_model(name="app", version="1", manifest=fake_manifest("app"), parents=["ft@1"]
    )
    reg.register_model(name="bad", version="1", manifest=fake_manifest("bad"))
    reg.register_model(name="bad-child",
        version="1",
        manifest=fake_manifest("bad-child"),
        parents=["bad@1"],
    )
    reg.flag("bad@1", reason="backdoor")
    reg.register_dataset(name="d", version="1", digest="sha256:" + "d" * 64)
    reg.deploy("app@1", environment="prod", team="t")
    reg.enroll_key(publisher="acme", public_key_pem=acme[1])
    reg.create_token(user="ci", role=Role.PUBLISHER)
    return reg


def run(reg: LocalRegistry, step: Call, key: Ed25519PrivateKey | None = None) -> Any:
    """Run a step; ``signed=True`` means: the manifest of its name, signed by ``key``."""
    verb, args, options = step
    kwargs = {name: value for name, value in options.items() if name != "signed"}
    if options.get("signed"):
        assert key is not None
        manifest = fake_manifest(kwargs["name"])
        kwargs |= {
            "manifest": manifest,
            "publisher": "acme",
            "signature": signing.sign_digest(key, manifest.digest),
        }
    if verb == "revoke_token":  # token ids depend on the backend's id sequence
        args = (reg.list_tokens()[0].id,)
    return reg.call(verb, *args, **kwargs)


def assert_sound(reg: LocalRegistry) -> None:
    assert reg.find_inconsistencies() == []
    assert reg.verify_chain().ok


# --- refusals -----------------------------------------------------------------------------

REFUSALS = [
    (
        "unknown parent",
        call(
            "register_model",
            name="m",
            version="1",
            manifest=fake_manifest("m"),
            parents=["base@1", "nope@1"],
        ),
        NotFound,
        "model nope@1 is not registered",
    ),
    (
        "unknown dataset",
        call(
            "register_model",
            name="m",
            version="1",
            manifest=fake_manifest("m"),
            parents=["base@1"],
            datasets=[("d@1", Relation.TRAINED_ON), ("e@1", Relation.TRAINED_ON)],
        ),
        NotFound,
        "dataset e@1 is not registered",
    ),
    (
        "tainted parent",
        call(
            "register_model",
            name="m",
            version="1",
            manifest=fake_manifest("m"),
            parents=["base@1", "bad@1"],
        ),
        PolicyViolation,
        "parent bad@1 is compromised",
    ),
    (
        "duplicate version",
        call("register_model", name="ft", version="1", manifest=fake_manifest("m")),
        AlreadyExists,
        "model ft@1 is already registered",
    ),
    (
        "duplicate content",
        call("register_model", name="m", version="1", manifest=fake_manifest("app")),
        DuplicateContent,
        "already registered as app@1",
    ),
    (
        "bad signature",
        call(
            "register_model",
            name="m",
            version="1",
            manifest=fake_manifest("m"),
            publisher="acme",
            signature=signing.sign_digest(Ed25519PrivateKey.generate(), fake_manifest("m").digest),
        ),
        SignatureError,
        "does not verify",
    ),
    ("cycle", call("add_parents", "base@1", parents=["app@1"]), LineageCycle, "would be cyclic"),
    (
        "cycle among good parents",
        call("add_parents", "ft@1", parents=["bad@1", "app@1"]),
        LineageCycle,
        "would be cyclic",
    ),
    (
        "deploy tainted",
        call("deploy", "bad-child@1", environment="prod", team="t"),
        PolicyViolation,
        "bad-child@1 is infected",
    ),
    (
        "clear a clean model",
        call("clear", "ft@1", reason="x"),
        PolicyViolation,
        "only an inherited",
    ),
    ("flag twice", call("flag", "bad@1", reason="again"), Conflict, "flagged already"),
]


@pytest.mark.parametrize(
    ("step", "error", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_a_refused_operation_writes_nothing(
    registry: LocalRegistry, step: Call, error: type[Exception], message: str
) -> None:
    before = snapshot(registry.engine)
    with pytest.raises(error, match=message):
        run(registry, step)
    assert snapshot(registry.engine) == before
    assert_sound(registry)


def test_a_publishers_refused_override_writes_nothing(registry: LocalRegistry) -> None:
    publisher = LocalRegistry(registry.engine, PUBLISHER)
    before = snapshot(registry.engine)
    with pytest.raises(PermissionDenied, match="may not override the policy"):
        publisher.register_model(name="m",
            version="1",
            manifest=fake_manifest("m"),
            parents=["bad@1"],
            override="trust me",
        )
    assert snapshot(registry.engine) == before


# --- failures after partial writes -------------------------------------------------------


@contextmanager
def failing_audit(engine: Engine, *, on: int = 1) -> Iterator[list[str]]:
    """Raise when the ``on``-th audit event is inserted: the last write of an operation.

    Yields the writes the operation executed before that.
    """
    writes: list[str] = []
    seen = 0

    def before_cursor_execute(_conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        nonlocal seen
        statement = " ".join(sql.split()).upper()
        if statement.startswith("INSERT INTO AUDIT_EVENT"):
            seen += 1
            if seen == on:
                raise InjectedFailure("the database went away")
        if statement.startswith(("INSERT", "UPDATE", "DELETE")):
            writes.append(statement.split(" (")[0].split(" SET ")[0].split(" WHERE ")[0])

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield writes
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)


# (the operation, which audit insert fails, writes that must have happened before it)
INTERRUPTED = [
    (
        call(
            "register_model",
            name="m",
            version="1",
            parents=["app@1"],
            signed=True,
            datasets=[("d@1", Relation.TRAINED_ON)],
        ),
        1,
        {
            "INSERT INTO ARTIFACT",
            "INSERT INTO EDGE",
            "INSERT INTO LINEAGE_CLOSURE",
            "INSERT INTO SIGNATURE",
        },
    ),
    (
        call(
            "register_model",
            name="m",
            version="1",
            manifest=fake_manifest("m"),
            parents=["bad@1"],
            override="incident response",
        ),
        2,
        {
            "INSERT INTO ARTIFACT",
            "INSERT INTO EDGE",
            "INSERT INTO LINEAGE_CLOSURE",
            "INSERT INTO INFECTION",
            "UPDATE ARTIFACT",
        },
    ),
    (
        call("register_dataset", name="e", version="1", digest="sha256:" + "e" * 64),
        1,
        {"INSERT INTO ARTIFACT"},
    ),
    (
        call("add_parents", "ft@1", parents=["bad@1"], datasets=[("d@1", Relation.FINE_TUNED_ON)]),
        1,
        {
            "INSERT INTO EDGE",
            "INSERT INTO LINEAGE_CLOSURE",
            "INSERT INTO INFECTION",
            "UPDATE ARTIFACT",
        },
    ),
    (
        call("flag", "base@1", reason="backdoor"),
        1,
        {"INSERT INTO FLAG", "INSERT INTO DECISION", "INSERT INTO INFECTION", "UPDATE ARTIFACT"},
    ),
    (
        call("unflag", "bad@1", reason="false positive"),
        1,
        {"UPDATE FLAG", "UPDATE DECISION", "DELETE FROM INFECTION", "UPDATE ARTIFACT"},
    ),
    (
        call("clear", "bad-child@1", reason="retrained"),
        1,
        {"INSERT INTO CLEARANCE", "UPDATE ARTIFACT"},
    ),
    (call("deploy", "ft@1", environment="staging", team="t"), 1, {"INSERT INTO DEPLOYMENT"}),
    (
        call("deploy", "bad-child@1", environment="prod", team="t", override="sandbox"),
        2,
        {"INSERT INTO AUDIT_EVENT", "INSERT INTO DEPLOYMENT"},
    ),
    (call("undeploy", "app@1", environment="prod", team="t"), 1, {"UPDATE DEPLOYMENT"}),
    (call("create_team", name="u", require_approval=True), 1, {"INSERT INTO TEAM"}),
    (
        call("decide", ref="base@1", team="t", verdict="block", reason="eol"),
        1,
        {"INSERT INTO DECISION"},
    ),
    (call("create_token", user="ops", role=Role.APPROVER, team="t"), 1, {"INSERT INTO API_TOKEN"}),
    (call("revoke_token"), 1, {"UPDATE API_TOKEN"}),
]


@pytest.mark.parametrize(
    ("step", "on", "partial"),
    INTERRUPTED,
    ids=[f"{step[0]}-{i}" for i, (step, _, _) in enumerate(INTERRUPTED)],
)
def test_a_failure_after_partial_writes_rolls_everything_back(
    registry: LocalRegistry,
    acme: tuple[Ed25519PrivateKey, str],
    step: Call,
    on: int,
    partial: set[str],
) -> None:
    before, counts = snapshot(registry.engine), row_counts(registry.engine)
    with failing_audit(registry.engine, on=on) as writes, pytest.raises(InjectedFailure):
        run(registry, step, acme[0])
    assert partial <= set(writes), writes
    assert row_counts(registry.engine) == counts
    assert snapshot(registry.engine) == before
    assert_sound(registry)
    run(registry, step, acme[0])  # the same operation, uninterrupted, succeeds
    assert snapshot(registry.engine) != before
    assert_sound(registry)


def test_enrolling_a_key_is_rolled_back_too(registry: LocalRegistry, tmp_path: Path) -> None:
    _, public = signing.write_keypair(tmp_path / "other")
    before = snapshot(registry.engine)
    with failing_audit(registry.engine) as writes, pytest.raises(InjectedFailure):
        registry.enroll_key(publisher="other", public_key_pem=public.read_text())
    assert writes == ["INSERT INTO PUBLISHER_KEY"]
    assert snapshot(registry.engine) == before


# --- concurrent writers ---------------------------------------------------------------------


def test_concurrent_writers_are_serialised(reg: LocalRegistry) -> None:
    """Registrations racing flags and unflags of their base: no fork, no stale status."""
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"))
    events = len(reg.list_events())

    def register(worker: int) -> int:
        registry = LocalRegistry(reg.engine, Actor(f"worker{worker}", Role.ADMIN))
        for index in range(4):
            name = f"w{worker}-{index}"
            registry.register_model(name=name,
                version="1",
                manifest=fake_manifest(name),
                parents=["base@1"],
                override="racing the flag on purpose",
            )
        return 4

    def toggle() -> int:
        for _ in range(3):
            reg.flag("base@1", reason="scanner hit")
            reg.unflag("base@1", reason="false positive")
        return 6

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(register, worker) for worker in range(3)] + [pool.submit(toggle)]
        written = sum(future.result() for future in futures)

    chain = reg.verify_chain()
    assert chain.ok
    # Each registration that met a flagged base also recorded its override.
    overrides = [e for e in reg.list_events() if e.operation == "policy.override"]
    assert chain.events == events + written + len(overrides)
    assert reg.find_inconsistencies() == []
    assert {a.status for a in reg.list_artifacts()} == {"clean"}
