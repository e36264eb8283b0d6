"""Issue 10, point 11: rewriting the audit log or the state behind it is found.

Each test plays one attack by someone who can write the database but does not
hold the audit key (or, for the checkpoint, even someone who does), on SQLite
and on PostgreSQL. Every one of them passed ``audit verify`` and ``check`` before
the chain was keyed, sealed the state tables and took checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, delete, select, update
from sqlmodel import Session

from registry.client import LocalRegistry
from registry.errors import Conflict
from registry.tables import Artifact, AuditEvent, Flag
from tests.conftest import fake_manifest
from tests.registry.test_audit import rehash
from tests.registry.test_db_support import (  # noqa: F401  (fixtures: engine and what it needs)
    fast_engine,
    pg_database,
    sqlite_template,
)

EVENTS = AuditEvent.__table__
ARTIFACTS = Artifact.__table__
TEAMS = 25  # enough events that the attacks touch a long tail, few enough to stay fast


@pytest.fixture
def history(reg: LocalRegistry) -> LocalRegistry:
    """A registry of some 50 events: models, two flags, teams, a decision, a flag at the end."""
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"))
    reg.register_model(name="ft", version="1", manifest=fake_manifest("ft"), parents=["base@1"]
    )
    reg.register_model(name="other", version="1", manifest=fake_manifest("other"))
    reg.flag("other@1", reason="advisory 1")
    for i in range(TEAMS):
        reg.create_team(name=f"team{i}")
    reg.decide(ref="ft@1", team="team0", verdict="approve", reason="reviewed")
    reg.flag("base@1", reason="advisory 2")
    assert reg.verify_chain().ok
    assert reg.find_inconsistencies() == []
    return reg


def rows(conn: Connection) -> list[dict[str, Any]]:
    """Every audit event as a dict, oldest first."""
    return [dict(r._mapping) for r in conn.execute(select(EVENTS).order_by(EVENTS.c.seq))]


def rechain_unkeyed(conn: Connection, start: int, *, drop_keys: bool = False) -> None:
    """What an attacker without the key can do: recompute every hash from ``start`` on."""
    prev = None
    for row in rows(conn):
        if row["seq"] >= start:
            row["prev_hash"] = prev or row["prev_hash"]
            row["hash"] = rehash(row)
            values = {"prev_hash": row["prev_hash"], "hash": row["hash"]}
            if drop_keys:
                values["key_id"] = None
            conn.execute(update(EVENTS).where(EVENTS.c.seq == row["seq"]).values(**values))
        prev = row["hash"]


def tamper(engine: Engine, change: Callable[[Connection], None]) -> None:
    """Apply ``change`` in one transaction, straight on the database."""
    with engine.begin() as conn:
        change(conn)


def verification(reg: LocalRegistry, **checkpoint: Any) -> tuple[bool, int | None, str]:
    """``(ok, first bad event, problem)`` of ``verify_chain``."""
    result = reg.verify_chain(**checkpoint)
    return result.ok, result.first_bad_seq, result.problem or ""


# --- 1. edit one event and recompute the later hashes -----------------------------------------


def test_an_edited_event_with_recomputed_hashes_is_found(
    history: LocalRegistry, engine: Engine
) -> None:
    def edit_and_rechain(conn: Connection) -> None:
        conn.execute(update(EVENTS).where(EVENTS.c.seq == 20).values(subject="team:mallory"))
        rechain_unkeyed(conn, 20)

    tamper(engine, edit_and_rechain)
    ok, first_bad, problem = verification(history)
    assert (ok, first_bad) == (False, 20)
    assert problem == "its content does not match its hash (edited)"


def test_an_event_rechained_as_unkeyed_after_keyed_ones_is_found(
    history: LocalRegistry, engine: Engine
) -> None:
    def edit_and_rechain(conn: Connection) -> None:
        conn.execute(update(EVENTS).where(EVENTS.c.seq == 20).values(subject="team:mallory"))
        rechain_unkeyed(conn, 20, drop_keys=True)

    tamper(engine, edit_and_rechain)
    ok, first_bad, problem = verification(history)
    assert (ok, first_bad) == (False, 20)
    assert "unkeyed but follows keyed events" in problem


def test_a_whole_chain_rechained_unkeyed_is_found(history: LocalRegistry, engine: Engine) -> None:
    def edit_and_rechain(conn: Connection) -> None:
        conn.execute(update(EVENTS).where(EVENTS.c.seq == 20).values(subject="team:mallory"))
        rechain_unkeyed(conn, 1, drop_keys=True)

    tamper(engine, edit_and_rechain)
    ok, first_bad, problem = verification(history)
    assert (ok, first_bad) == (False, 1)
    assert problem.startswith(f"none of the {history.call('verify_chain').events} events is keyed")


def test_a_chain_rehashed_under_another_key_is_found(
    history: LocalRegistry, engine: Engine, tmp_path: Any
) -> None:
    from registry.audit_key import AuditKeyFile

    forger = AuditKeyFile(tmp_path / "forger.key").load_or_create()
    tamper(engine, resealed(forger, start=1, subject="team:mallory"))
    ok, first_bad, problem = verification(history)
    assert (ok, first_bad) == (False, 1)
    assert f"it is keyed with key id {forger.key_id}, but" in problem
    assert "point MBOM_AUDIT_KEY_FILE at the registry's key" in problem


# --- 2. delete every flag event and renumber --------------------------------------------------


def test_deleting_the_flag_events_and_renumbering_is_found(
    history: LocalRegistry, engine: Engine
) -> None:
    def delete_flags(conn: Connection) -> None:
        conn.execute(delete(EVENTS).where(EVENTS.c.operation == "flag"))
        for number, row in enumerate(rows(conn), start=1):  # renumber in two steps: unique seq
            conn.execute(update(EVENTS).where(EVENTS.c.seq == row["seq"]).values(seq=-number))
        conn.execute(update(EVENTS).values(seq=-EVENTS.c.seq))
        rechain_unkeyed(conn, 1)

    tamper(engine, delete_flags)
    ok, first_bad, problem = verification(history)
    assert ok is False
    assert first_bad == 1
    assert "does not match its hash" in problem


# --- 3. delete the newest events --------------------------------------------------------------


def newest_deleted(count: int) -> Callable[[Connection], None]:
    def change(conn: Connection) -> None:
        last = max(row["seq"] for row in rows(conn))
        conn.execute(delete(EVENTS).where(EVENTS.c.seq > last - count))

    return change


def test_deleting_the_newest_events_is_found_by_a_checkpoint(
    history: LocalRegistry, engine: Engine
) -> None:
    before = history.verify_chain()
    checkpoint = {"checkpoint_seq": before.last_seq, "checkpoint_head": before.head}
    assert verification(history, **checkpoint) == (True, None, "")
    tamper(engine, newest_deleted(20))
    assert history.verify_chain().ok  # the chain alone cannot tell a shorter history
    ok, first_bad, problem = verification(history, **checkpoint)
    assert (ok, first_bad) == (False, before.last_seq)
    assert problem == (
        f"the chain ends at event {before.last_seq - 20}, but the checkpoint saw event "
        f"{before.last_seq}: the newest 20 events were deleted"
    )


def test_rewriting_the_history_before_a_checkpoint_is_found_even_with_the_key(
    history: LocalRegistry, engine: Engine, audit_key_file: Any
) -> None:
    before = history.verify_chain()
    checkpoint = {"checkpoint_seq": before.last_seq, "checkpoint_head": before.head}
    tamper(engine, resealed(audit_key_file.load(), start=10, subject="team:mallory"))
    assert history.verify_chain().ok  # whoever holds the key can rewrite the chain...
    ok, first_bad, problem = verification(history, **checkpoint)
    assert (ok, first_bad) == (False, before.last_seq)  # ...but not the checkpoint kept elsewhere
    assert problem.startswith(f"event {before.last_seq} is not the one the checkpoint saw")
    assert problem.endswith("the chain was rewritten up to there")


def resealed(key: Any, *, start: int, subject: str) -> Callable[[Connection], None]:
    """Edit event ``start``'s subject and re-seal it and every later event with ``key``."""
    from registry.service.audit import seal

    def change(conn: Connection) -> None:
        prev = None
        for row in rows(conn):
            if row["seq"] < start:
                prev = row["hash"]
                continue
            prev = row["prev_hash"] if prev is None else prev
            event = AuditEvent(**{**row, "key_id": key.key_id, "prev_hash": prev})
            if row["seq"] == start:
                event.subject = subject
            event.hash = seal(event, key)
            conn.execute(
                update(EVENTS)
                .where(EVENTS.c.seq == row["seq"])
                .values(
                    subject=event.subject,
                    prev_hash=event.prev_hash,
                    hash=event.hash,
                    key_id=key.key_id,
                )
            )
            prev = event.hash

    return change


def test_deleting_the_newest_events_without_a_checkpoint_is_found_by_check(
    history: LocalRegistry, engine: Engine
) -> None:
    # The newest events flagged base@1: the flag row outlives its deleted event.
    tamper(engine, newest_deleted(20))
    assert history.verify_chain().ok
    problems = history.find_inconsistencies()
    assert any(p.startswith("active flags: 2 now, 1 as the audit log recorded") for p in problems)


# --- 4. change a model's digest or manifest ---------------------------------------------------


def test_a_changed_digest_is_found_by_check(history: LocalRegistry, engine: Engine) -> None:
    forged = fake_manifest("backdoored").digest
    tamper(
        engine,
        lambda conn: conn.execute(
            update(ARTIFACTS).where(ARTIFACTS.c.name == "ft").values(digest=forged)
        ),
    )
    problems = history.find_inconsistencies()
    assert f"ft@1: stored digest {forged} != {fake_manifest('ft').digest} computed from" in (
        " ".join(problems)
    )


def test_a_swapped_manifest_and_digest_is_found_by_check(
    history: LocalRegistry, engine: Engine
) -> None:
    forged = fake_manifest("backdoored")
    rows_ = [[e.path, e.size, e.sha256] for e in forged.entries]
    tamper(
        engine,
        lambda conn: conn.execute(
            update(ARTIFACTS)
            .where(ARTIFACTS.c.name == "ft")
            .values(digest=forged.digest, manifest=rows_)
        ),
    )
    problems = history.find_inconsistencies()
    assert problems == [
        f"ft@1: stored digest {forged.digest} != {fake_manifest('ft').digest} recorded by "
        "audit event 2: the artifact was changed outside mbom"
    ]


# --- 5. deactivate a flag and recompute the statuses ------------------------------------------


def test_a_flag_deactivated_behind_mbom_is_found_by_check(
    history: LocalRegistry, engine: Engine
) -> None:
    from registry.service.status import recompute

    with Session(engine) as session:
        flag = session.exec(select(Flag).where(Flag.reason == "advisory 2")).scalars().one()
        flag.active = False
        base = session.get(Artifact, flag.artifact_id)
        assert base is not None
        base.finding = "clean"
        session.flush()
        recompute(session, [flag.artifact_id])  # the statuses now agree with the flags
        session.commit()
    assert history.verify_chain().ok
    problems = history.find_inconsistencies()
    assert len(problems) == 1
    assert problems[0].startswith("active flags: 1 now, 2 as the audit log recorded at event")
    assert problems[0].endswith("the flags table was changed outside mbom")


# --- found by the attacker's review ----------------------------------------------------------


def test_a_chain_rewritten_unkeyed_cannot_be_anchored_with_the_existing_key(
    history: LocalRegistry, engine: Engine
) -> None:
    """The anchor seals a registry's pre-key history once; on a registry that had a key, an
    unkeyed chain is a rewrite, and anchoring it with the real key would launder it."""
    tamper(engine, lambda conn: rechain_unkeyed(conn, 1, drop_keys=True))
    with pytest.raises(Conflict, match="exists already, so this registry's log was keyed"):
        history.anchor_chain()
    assert not history.verify_chain().ok


def test_a_wiped_audit_log_is_found_by_check(history: LocalRegistry, engine: Engine) -> None:
    tamper(engine, lambda conn: conn.execute(delete(EVENTS)))
    assert history.verify_chain().events == 0
    problems = history.find_inconsistencies()
    assert any("the audit log is empty but the registry holds 3 artifacts" in p for p in problems)
