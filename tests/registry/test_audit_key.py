"""The audit key file and the checkpoint format, on their own."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from registry import signing
from registry.audit_checkpoint import Checkpoint, read_checkpoint, sign_checkpoint
from registry.audit_key import AuditKeyFile
from registry.errors import AuditKeyError, InvalidInput, SignatureError
from registry.settings import Settings


def test_a_key_is_created_once_private_and_then_reused(tmp_path: Path) -> None:
    key_file = AuditKeyFile(tmp_path / "nested" / "audit.key")
    assert key_file.load() is None
    created = key_file.load_or_create()
    assert stat.S_IMODE(key_file.path.stat().st_mode) == 0o600
    assert key_file.load_or_create() == created
    assert len(created.key_id) == 16
    assert created.key_id not in key_file.path.read_text()
    assert "secret" not in repr(created)


def test_an_operator_supplied_secret_works_and_a_short_one_is_refused(tmp_path: Path) -> None:
    mounted = tmp_path / "mounted.key"
    mounted.write_bytes(b"a shared secret of a server fleet, 48 bytes long")
    assert AuditKeyFile(mounted).load() is not None
    short = tmp_path / "short.key"
    short.write_text("0123abcd")
    with pytest.raises(AuditKeyError, match="holds 4 bytes; at least 32 are needed"):
        AuditKeyFile(short).load()


def test_settings_put_the_key_beside_the_registry_or_where_told(tmp_path: Path) -> None:
    home = Settings.from_env({"MBOM_HOME": str(tmp_path)})
    assert home.audit_key().path == tmp_path / "audit.key"
    told = Settings.from_env({"MBOM_HOME": str(tmp_path), "MBOM_AUDIT_KEY_FILE": "/run/k"})
    assert told.audit_key().path == Path("/run/k")
    server = Settings.from_env(
        {"MBOM_HOME": str(tmp_path), "MBOM_DATABASE_URL": "postgresql+psycopg://u@h/db"}
    )
    assert server.audit_key().path == tmp_path / "audit.key"


def test_a_checkpoint_round_trips_and_any_change_breaks_its_signature(tmp_path: Path) -> None:
    private, public = signing.write_keypair(tmp_path / "auditor")
    statement = Checkpoint(seq=60, head="ab" * 32, events=60, key_id="0" * 16, at="2026-12-02")
    path = tmp_path / "cp.json"
    path.write_text(json.dumps(sign_checkpoint(statement, private).to_json()))
    signed = read_checkpoint(path)
    assert signed.checkpoint == statement
    assert signed.signer(public.read_text()) == signing.key_fingerprint(public.read_bytes())

    document = json.loads(path.read_text())
    document["statement"]["head"] = "cd" * 32
    path.write_text(json.dumps(document))
    with pytest.raises(SignatureError, match="signature does not verify"):
        read_checkpoint(path).signer()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read the checkpoint"),
        ('{"type": "other"}', "is not an mbom audit checkpoint"),
        ('{"type": "mbom-audit-checkpoint/v1", "statement": {"seq": 0}}', "is malformed"),
    ],
)
def test_a_malformed_checkpoint_is_bad_input(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "cp.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        read_checkpoint(path)
