"""The audit log: one chained event per change, and tampering found at the first bad event."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, delete, insert, select, update

from lineage import Relation
from registry import signing
from registry.client import LocalRegistry
from registry.identity import Actor, Role
from registry.service.audit import GENESIS, event_hash
from registry.tables import AuditEvent
from tests.conftest import fake_manifest
from tests.registry.test_db_support import (  # noqa: F401  (fixtures: engine and what it needs)
    fast_engine,
    pg_database,
    snapshot,
    sqlite_template,
)

EVENTS = AuditEvent.__table__
Call = tuple[str, tuple[Any, ...], dict[str, Any]]
FIRST_TOKEN = object()  # the id of the first token, known only once it exists


@pytest.fixture
def history(reg: LocalRegistry) -> LocalRegistry:
    """A small registry: team t, base@1 -> ft@1, dataset d@1, ft@1 deployed for t."""
    reg.create_team(name="t")
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"))
    reg.register_model(name="ft", version="1", manifest=fake_manifest("ft"), parents=["base@1"])
    reg.register_dataset(name="d", version="1", digest="sha256:" + "d" * 64)
    reg.deploy("ft@1", environment="prod", team="t")
    return reg


def call(verb: str, *args: Any, **kwargs: Any) -> Call:
    return verb, args, kwargs


def run(reg: LocalRegistry, step: Call) -> Any:
    verb, args, kwargs = step
    if FIRST_TOKEN in args:  # ids are not reused on PostgreSQL after a test empties the tables
        token_id = reg.list_tokens()[0].id
        args = tuple(token_id if arg is FIRST_TOKEN else arg for arg in args)
    return reg.call(verb, *args, **kwargs)


# (steps before, the measured step, operations it appends, subject, details it carries)
# Token ids are left out of the details: they depend on the backend's id sequence.
MUTATIONS = [
    (
        [],
        call(
            "register_model",
            name="m",
            version="1",
            manifest=fake_manifest("m"),
            parents=["ft@1"],
            datasets=[("d@1", Relation.TRAINED_ON)],
        ),
        ["register"],
        "m@1",
        {
            "kind": "model",
            "digest": fake_manifest("m").digest,
            "team": None,
            "signed_by": None,
            "scan": None,
            "behavioral": None,
            "stored": False,
            "scanned_by": "registry",
            "parents": [["ft@1", "finetune"], ["d@1", "trained_on"]],
        },
    ),
    (
        [],
        call(
            "register_dataset", name="e", version="1", digest="sha256:" + "e" * 64, source="s3://e"
        ),
        ["register"],
        "e@1",
        {"kind": "dataset", "digest": "sha256:" + "e" * 64, "source": "s3://e"},
    ),
    (
        [],
        call("add_parents", "ft@1", parents=[], datasets=[("d@1", Relation.FINE_TUNED_ON)]),
        ["lineage.add"],
        "ft@1",
        {"parents": [["d@1", "fine_tuned_on"]], "changed": 0},
    ),
    (
        [],
        call("flag", "base@1", reason="backdoor"),
        ["flag"],
        "base@1",
        {"kind": "model", "reason": "backdoor", "changed": 2},
    ),
    (
        [call("flag", "d@1", reason="poison")],
        call("unflag", "d@1", reason="false positive"),
        ["unflag"],
        "d@1",
        {"reason": "false positive", "changed": 1},
    ),
    (
        [call("flag", "base@1", reason="x")],
        call("clear", "ft@1", reason="retrained"),
        ["clear"],
        "ft@1",
        {"reason": "retrained", "sources": ["base@1"]},
    ),
    (
        [],
        call("deploy", "base@1", environment="staging", team="t"),
        ["deploy"],
        "base@1",
        {"environment": "staging", "team": "t"},
    ),
    (
        [],
        call("undeploy", "ft@1", environment="prod", team="t"),
        ["undeploy"],
        "ft@1",
        {"environment": "prod", "team": "t"},
    ),
    (
        [call("flag", "base@1", reason="x")],
        call("deploy", "ft@1", environment="staging", team="t", override="sandbox"),
        ["policy.override", "deploy"],
        "ft@1",
        {"environment": "staging", "team": "t"},
    ),
    (
        [],
        call("create_team", name="u", require_approval=True),
        ["team.create"],
        "team:u",
        {"require_approval": True, "require_registry_scan": False},
    ),
    (
        [],
        call("decide", ref="base@1", team="t", verdict="approve", reason="reviewed"),
        ["decision.approve"],
        "base@1",
        {"team": "t", "reason": "reviewed"},
    ),
    (
        [],
        call("decide", ref="base@1", team="t", verdict="block", reason="eol", all_versions=True),
        ["decision.block"],
        "base@*",
        {"team": "t", "reason": "eol"},
    ),
    (
        [],
        call("create_token", user="ci", role=Role.PUBLISHER, team="t"),
        ["token.create"],
        "user:ci",
        {"role": "publisher", "team": "t"},
    ),
    (
        [call("create_token", user="ci", role=Role.READER)],
        call("revoke_token", FIRST_TOKEN),
        ["token.revoke"],
        "user:ci",
        {},
    ),
]


@pytest.mark.parametrize(
    ("before", "step", "operations", "subject", "details"),
    MUTATIONS,
    ids=[step[0] for _, step, *_ in MUTATIONS],
)
def test_every_change_appends_a_chained_event(
    history: LocalRegistry,
    before: list[Call],
    step: Call,
    operations: list[str],
    subject: str,
    details: dict[str, Any],
) -> None:
    for setup in before:
        run(history, setup)
    seen = history.list_events()
    started = datetime.now(UTC)
    run(history, step)
    events = history.list_events()
    new = events[len(seen) :]
    assert events[: len(seen)] == seen
    assert [(e.operation, e.subject, e.actor) for e in new] == [
        (operation, subject, "alice") for operation in operations
    ]
    assert {k: v for k, v in new[-1].details.items() if k != "token_id"} == details
    assert all(started - timedelta(seconds=5) <= e.at <= datetime.now(UTC) for e in new)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.prev_hash for e in events] == [GENESIS] + [e.hash for e in events[:-1]]
    assert history.verify_chain().ok


def test_enrolling_a_key_is_audited(reg: LocalRegistry, tmp_path: Path) -> None:
    _, public = signing.write_keypair(tmp_path / "acme")
    key = reg.enroll_key(publisher="acme", public_key_pem=public.read_text())
    [event] = reg.list_events()
    assert (event.operation, event.subject, event.actor, event.details) == (
        "key.enroll",
        "publisher:acme",
        "alice",
        {"fingerprint": key.fingerprint},
    )


def test_the_actor_is_whoever_acted(history: LocalRegistry) -> None:
    LocalRegistry(history.engine, Actor("carol", Role.APPROVER)).decide(
        ref="base@1", team="t", verdict="block", reason="r"
    )
    assert history.list_events()[-1].actor == "carol"


READS = [
    call("show", "ft@1"),
    call("list_artifacts"),
    call("list_artifacts", kind="dataset"),
    call("status_report", "ft@1"),
    call("descendants", "base@1"),
    call("ancestors", "ft@1"),
    call("deployed_descendants", "base@1"),
    call("list_deployments"),
    call("list_decisions"),
    call("list_teams"),
    call("list_keys"),
    call("list_events"),
    call("verify_chain"),
    call("find_inconsistencies"),
    call("identify", fake_manifest("ft")),
    call("verify", fake_manifest("ft")),
    call("list_tokens"),
]


def test_reads_append_nothing(history: LocalRegistry) -> None:
    before = snapshot(history.engine)
    for step in READS:
        run(history, step)
    assert snapshot(history.engine) == before


def test_events_are_listed_oldest_first_by_subject_and_limit(history: LocalRegistry) -> None:
    history.flag("base@1", reason="x")
    assert [e.operation for e in history.list_events(subject="base@1")] == [
        "register",
        "flag",
    ]
    assert [e.seq for e in history.list_events(limit=2)] == [5, 6]
    assert history.list_events(subject="nobody@1") == []


def test_an_untouched_chain_verifies(history: LocalRegistry) -> None:
    result = history.verify_chain()
    assert (result.ok, result.events, result.first_bad_seq, result.problem) == (True, 5, None, None)
    assert result.head == history.list_events()[-1].hash


def test_an_empty_chain_verifies(reg: LocalRegistry) -> None:
    result = reg.verify_chain()
    assert (result.ok, result.events, result.head) == (True, 0, GENESIS)


# --- tampering ----------------------------------------------------------------------------

Tamper = Callable[[Connection], None]


def _row(conn: Connection, seq: int) -> dict[str, Any]:
    return dict(conn.execute(select(EVENTS).where(EVENTS.c.seq == seq)).mappings().one())


def _edit(**values: Any) -> Tamper:
    def tamper(conn: Connection) -> None:
        conn.execute(update(EVENTS).where(EVENTS.c.seq == 3).values(**values))

    return tamper


def _delete(seq: int) -> Tamper:
    def tamper(conn: Connection) -> None:
        conn.execute(delete(EVENTS).where(EVENTS.c.seq == seq))

    return tamper


def rehash(row: dict[str, Any]) -> str:
    """An event's legacy (unkeyed) hash recomputed from its row, as an attacker would."""
    return event_hash(
        row["prev_hash"],
        row["seq"],
        row["at"],
        row["actor"],
        row["operation"],
        row["subject"],
        row["details"],
    )


def _edit_and_rehash(conn: Connection) -> None:
    row = _row(conn, 3) | {"details": {"reason": "nothing to see"}}
    conn.execute(
        update(EVENTS).where(EVENTS.c.seq == 3).values(details=row["details"], hash=rehash(row))
    )


def _forged(conn: Connection, seq: int, prev_hash: str, *, valid_hash: bool) -> None:
    row = {
        "seq": seq,
        "at": datetime.now(UTC),
        "actor": "mallory",
        "operation": "unflag",
        "subject": "base@1",
        "details": {"reason": "forged"},
        "prev_hash": prev_hash,
    }
    conn.execute(insert(EVENTS).values(**row, hash=rehash(row) if valid_hash else "f" * 64))


def _append_forged(conn: Connection) -> None:
    _forged(conn, 6, _row(conn, 5)["hash"], valid_hash=False)


def _insert_forged_in_the_middle(conn: Connection) -> None:
    # Make room at seq 3 in two steps: seq is unique, checked row by row on PostgreSQL.
    conn.execute(update(EVENTS).where(EVENTS.c.seq >= 3).values(seq=-EVENTS.c.seq))
    conn.execute(update(EVENTS).where(EVENTS.c.seq < 0).values(seq=1 - EVENTS.c.seq))
    _forged(conn, 3, _row(conn, 2)["hash"], valid_hash=True)


def _swap(conn: Connection) -> None:
    conn.execute(update(EVENTS).where(EVENTS.c.seq == 3).values(seq=-3))
    conn.execute(update(EVENTS).where(EVENTS.c.seq == 4).values(seq=3))
    conn.execute(update(EVENTS).where(EVENTS.c.seq == -3).values(seq=4))


EDITED = "its content does not match its hash \\(edited\\)"
UNLINKED = "does not follow the previous event"
UNKEYED = "it is unkeyed but follows keyed events"
TAMPERS: list[tuple[str, Tamper, int, str]] = [
    ("edit details", _edit(details={"kind": "model", "reason": "harmless"}), 3, EDITED),
    ("edit actor", _edit(actor="mallory"), 3, EDITED),
    ("edit operation", _edit(operation="deploy"), 3, EDITED),
    ("edit subject", _edit(subject="other@1"), 3, EDITED),
    ("edit time", _edit(at=datetime(2020, 1, 1, tzinfo=UTC)), 3, EDITED),
    ("edit hash", _edit(hash="0" * 64), 3, EDITED),
    ("edit prev_hash", _edit(prev_hash="0" * 64), 3, UNLINKED),
    # An unkeyed rehash no longer passes for the event itself: it is found there.
    ("edit and rehash", _edit_and_rehash, 3, EDITED),
    ("delete a middle event", _delete(3), 4, "events 3..3 are missing \\(deleted\\)"),
    ("delete the first event", _delete(1), 2, "events 1..1 are missing \\(deleted\\)"),
    ("append a forged event", _append_forged, 6, UNKEYED),
    ("insert a forged event", _insert_forged_in_the_middle, 3, UNKEYED),
    ("swap two events", _swap, 3, UNLINKED),
]


@pytest.mark.parametrize(
    ("tamper", "first_bad", "problem"), [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS]
)
def test_tampering_is_found_at_the_first_bad_event(
    history: LocalRegistry, engine: Engine, tamper: Tamper, first_bad: int, problem: str
) -> None:
    assert history.verify_chain().ok
    with engine.begin() as conn:
        tamper(conn)
    result = history.verify_chain()
    assert (result.ok, result.first_bad_seq) == (False, first_bad)
    assert re.search(problem, result.problem or ""), result.problem


def test_deleting_the_newest_events_shortens_the_chain_and_changes_its_head(
    history: LocalRegistry, engine: Engine
) -> None:
    before = history.verify_chain()
    with engine.begin() as conn:
        _delete(5)(conn)
    after = history.verify_chain()
    assert (after.ok, after.events) == (True, before.events - 1)
    assert after.head != before.head
