"""``mbom audit verify|checkpoint|anchor`` and ``mbom check`` as a user runs them."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from registry.client import LocalRegistry
from registry.db import make_engine, migrate
from registry.identity import Actor, Role
from registry.tables import AuditEvent, Flag
from tests.conftest import fake_manifest
from tests.registry.test_cli import Cli, cli_env, local_registry

EVENTS = AuditEvent.__table__


@pytest.fixture
def home(tmp_path: Path) -> str:
    """The URL of the SQLite registry under the test's MBOM_HOME."""
    return f"sqlite:///{tmp_path / 'home' / 'registry.db'}"


@pytest.fixture
def mbom(tmp_path: Path, home: str) -> Cli:
    """``mbom`` on a fresh, migrated SQLite registry under MBOM_HOME (its key beside it)."""
    local_registry(home).engine.dispose()
    return Cli(cli_env(tmp_path), tmp_path)


@pytest.fixture
def seeded(home: str) -> LocalRegistry:
    """The CLI's registry with six events: three models, a team, a flag, a decision."""
    reg = local_registry(home)
    for name in ("a", "b", "c"):
        reg.register_model(name=name, version="1", manifest=fake_manifest(name))
    reg.create_team(name="fraud")
    reg.flag("a@1", reason="advisory")
    reg.decide(ref="b@1", team="fraud", verdict="approve", reason="ok")
    return reg


@pytest.fixture
def keys(mbom: Cli, tmp_path: Path) -> tuple[Path, Path]:
    """An Ed25519 key pair for signing checkpoints."""
    mbom("keys", "generate", "--out", tmp_path / "auditor")
    return tmp_path / "auditor.key", tmp_path / "auditor.pub"


@pytest.mark.usefixtures("seeded")
def test_the_audit_key_is_created_beside_the_registry_private_and_named(
    mbom: Cli, tmp_path: Path
) -> None:
    key = tmp_path / "home" / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    report = mbom("audit", "verify", "--json").json()
    assert (report["ok"], report["events"], report["keyed_events"]) == (True, 6, 6)
    assert report["key_id"]
    assert report["key_id"] not in key.read_text()
    text = mbom("audit", "verify").out
    assert text.startswith(f"audit chain intact: 6 events, keyed with {report['key_id']}, head ")


def test_a_signed_checkpoint_finds_the_newest_events_deleted(
    mbom: Cli, seeded: LocalRegistry, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = keys
    checkpoint = tmp_path / "cp.json"
    written = mbom("audit", "checkpoint", "-o", checkpoint, "--sign-key", private, "--json").json()
    assert written["statement"]["seq"] == 6
    assert written["path"] == str(checkpoint)
    held = mbom("audit", "verify", "--checkpoint", checkpoint, "--public-key", public, "--json")
    assert (held.json()["ok"], held.json()["checkpoint_seq"]) == (True, 6)
    assert held.json()["checkpoint_signer"].startswith("sha256:")

    with seeded.engine.begin() as conn:
        conn.execute(delete(EVENTS).where(EVENTS.c.seq > 4))
    mbom("audit", "verify")  # a shorter chain is still a valid chain...
    broken = mbom("audit", "verify", "--checkpoint", checkpoint, "--public-key", public, code=1)
    assert broken.err.strip() == (  # ...but not the one the checkpoint saw
        "audit chain broken at event 6: the chain ends at event 4, but the checkpoint saw "
        "event 6: the newest 2 events were deleted"
    )
    report = mbom("audit", "verify", "--checkpoint", checkpoint, "--json", code=1).json()
    assert (report["ok"], report["first_bad_seq"]) == (False, 6)


@pytest.mark.usefixtures("seeded")
def test_a_checkpoint_on_stdout_is_unsigned_and_still_checked(mbom: Cli, tmp_path: Path) -> None:
    document = mbom("audit", "checkpoint").json()
    assert (document["type"], document["signature"]) == ("mbom-audit-checkpoint/v1", None)
    path = tmp_path / "unsigned.json"
    path.write_text(json.dumps(document))
    assert "(unsigned) still holds" in mbom("audit", "verify", "--checkpoint", path).out


@pytest.mark.usefixtures("seeded")
def test_a_forged_or_foreign_checkpoint_is_refused(
    mbom: Cli, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    private, public = keys
    checkpoint = tmp_path / "cp.json"
    mbom("audit", "checkpoint", "-o", checkpoint, "--sign-key", private)
    document = json.loads(checkpoint.read_text())
    document["statement"]["seq"] = 4  # pretend the chain was shorter when it was taken
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    refused = mbom("audit", "verify", "--checkpoint", forged, code=1)
    assert "the checkpoint's signature does not verify" in refused.error_line()

    mbom("keys", "generate", "--out", tmp_path / "stranger")
    stranger = tmp_path / "stranger.pub"
    foreign = mbom("audit", "verify", "--checkpoint", checkpoint, "--public-key", stranger, code=1)
    assert "does not verify with the given public key" in foreign.error_line()

    (tmp_path / "junk.json").write_text("{}")
    junk = mbom("audit", "verify", "--checkpoint", tmp_path / "junk.json", code=2)
    assert "is not an mbom audit checkpoint" in junk.error_line()


def test_a_broken_chain_is_not_checkpointed(
    mbom: Cli, seeded: LocalRegistry, tmp_path: Path
) -> None:
    with seeded.engine.begin() as conn:
        conn.execute(update(EVENTS).where(EVENTS.c.seq == 2).values(actor="mallory"))
    refused = mbom("audit", "checkpoint", "-o", tmp_path / "cp.json", code=1)
    assert "refusing to checkpoint a broken chain (event 2" in refused.error_line()
    assert not (tmp_path / "cp.json").exists()


@pytest.mark.usefixtures("seeded")
def test_a_missing_or_wrong_audit_key_is_named(mbom: Cli, tmp_path: Path) -> None:
    key = tmp_path / "home" / "audit.key"
    key_id = mbom("audit", "verify", "--json").json()["key_id"]
    key.rename(tmp_path / "away.key")
    missing = mbom("audit", "verify", code=1).err
    assert f"it is keyed (key id {key_id}) but the audit key file {key} does not exist" in missing
    refused = mbom("team", "create", "ops", code=1).error_line()
    assert f"the audit key {key} does not exist, but the audit log is keyed" in refused
    assert not key.exists()  # never silently replaced by a new key

    other = tmp_path / "other.key"
    other.write_text("ab" * 32)
    wrong = Cli(cli_env(tmp_path, MBOM_AUDIT_KEY_FILE=str(other)), tmp_path)
    assert f"it is keyed with key id {key_id}, but {other}" in wrong("audit", "verify", code=1).err
    assert "every process writing this registry needs the same key" in (
        wrong("team", "create", "ops", code=1).error_line()
    )


def test_a_registry_from_before_audit_keys_is_anchored_once(mbom: Cli, home: str) -> None:
    legacy = make_engine(home)  # no key bound: writes unkeyed events, as mbom did before
    migrate(legacy)
    old = LocalRegistry(legacy, Actor("setup", Role.ADMIN))
    for name in ("a", "b"):
        old.register_model(name=name, version="1", manifest=fake_manifest(name))
    legacy.dispose()

    unsealed = mbom("audit", "verify", code=1).err
    assert "none of the 2 events is keyed" in unsealed
    assert "`mbom audit anchor`" in unsealed
    assert "mbom audit anchor" in mbom("team", "create", "ops", code=1).error_line()

    anchored = mbom("audit", "anchor", "--json").json()
    assert (anchored["ok"], anchored["legacy_events"], anchored["keyed_events"]) == (True, 2, 1)
    mbom("team", "create", "ops")
    intact = mbom("audit", "verify").out
    assert "events 1..2 predate the audit key (plain SHA-256); event 3 seals them" in intact
    assert (
        mbom("audit", "anchor", code=1)
        .error_line()
        .endswith("the audit log has no unkeyed events to anchor (`mbom audit verify` checks it)")
    )


def test_check_finds_a_flag_deactivated_behind_mbom(mbom: Cli, seeded: LocalRegistry) -> None:
    assert mbom("check", "--json").json() == {"ok": True, "problems": []}
    with seeded.engine.begin() as conn:
        conn.execute(update(Flag.__table__).values(active=False))
    report = mbom("check", "--json", code=1).json()
    assert report["ok"] is False
    assert any("the flags table was changed outside mbom" in p for p in report["problems"])


def test_checkpoint_verify_and_anchor_through_a_server(
    mbom: Cli, seeded: LocalRegistry, home: str, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    from registry.api import create_app
    from registry.settings import Settings
    from tests.registry.live_server import serve_in_thread

    private, public = keys
    token = seeded.create_token(user="ci", role=Role.ADMIN).token
    assert token
    checkpoint = tmp_path / "cp.json"
    with serve_in_thread(create_app(Settings(database_url=home), engine=seeded.engine)) as server:
        remote = mbom.remote(server, token)
        remote("audit", "checkpoint", "-o", checkpoint, "--sign-key", private)
        held = remote("audit", "verify", "--checkpoint", checkpoint, "--public-key", public)
        assert "still holds" in held.out
        with seeded.engine.begin() as conn:
            conn.execute(delete(EVENTS).where(EVENTS.c.seq > 5))
        broken = remote("audit", "verify", "--checkpoint", checkpoint, "--json", code=1).json()
        assert (broken["ok"], broken["first_bad_seq"]) == (False, 7)
        refused = remote("audit", "anchor", code=1).error_line()
        assert "the audit log has no unkeyed events to anchor" in refused
