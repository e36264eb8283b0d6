"""Known-malicious content stays malicious under any name, on every registration path.

A quarantined model's files (its digest) and the files that carried a malicious
static-scan finding register quarantined again — compromised, blocked, the
reason naming the original — however they arrive: ``register`` with
``--skip-scan --allow-duplicate-content`` (in-process, over the API, the
executable), Hugging Face import, CycloneDX import. Files a compromised model
shares with clean ones (a ``config.json``) taint nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from registry.api import create_app
from registry.bom import export_cyclonedx, import_cyclonedx
from registry.client import LocalRegistry, RemoteRegistry
from registry.db import unit_of_work
from registry.errors import DuplicateContent, PolicyViolation
from registry.hf import locate_snapshot, plan_import
from registry.identity import Actor, Role
from registry.manifest import Manifest, hash_tree
from registry.settings import Settings
from scanning.report import FileResult, Finding, ScanReport, Severity
from tests.conftest import fake_manifest
from tests.registry.live_server import serve_in_thread
from tests.registry.test_admission import register, write_model
from tests.registry.test_cli import Cli, cli_env, local_registry
from tests.registry.test_hf_import import HfCache, card

BOB = Actor("bob", Role.PUBLISHER)


@pytest.fixture
def evil(reg: LocalRegistry, tmp_path: Path) -> Path:
    """``evil@1``: a pickle calling os.system and a config.json, quarantined by its scan."""
    path = write_model(tmp_path / "evil", "malicious")
    assert register(reg, path, "evil").status == "compromised"  # type: ignore[attr-defined]
    return path


def publisher(reg: LocalRegistry) -> LocalRegistry:
    """The same registry as a publisher (no team)."""
    return LocalRegistry(reg.engine, BOB)


def flag_reason(reg: LocalRegistry, ref: str) -> str:
    """The reason of the active flag of ``ref``."""
    flags = reg.status_report(ref).flags
    assert len(flags) == 1, flags
    reason: str = flags[0].reason
    return reason


def test_the_same_files_under_another_name_register_quarantined(
    reg: LocalRegistry, evil: Path
) -> None:
    manifest = hash_tree(evil)
    with pytest.raises(DuplicateContent, match="evil@1"):
        publisher(reg).register_model(name="innocent", version="1", manifest=manifest)
    copy = publisher(reg).register_model(
        name="innocent",
        version="1",
        manifest=manifest,
        allow_duplicate_content=True,  # and no scan: --skip-scan
    )
    assert (copy.finding, copy.status) == ("compromised", "compromised")
    reason = flag_reason(reg, "innocent@1")
    assert reason == (
        f"known malicious content: its files are those of quarantined evil@1 ({manifest.digest})"
    )
    assert [(d.subject, d.verdict) for d in reg.list_decisions()][-1] == (
        "innocent@1",
        "block",
    )
    reg.create_team(name="fraud")
    with pytest.raises(PolicyViolation, match="innocent@1"):
        publisher(reg).deploy("innocent@1", environment="prod", team="fraud")
    events = [e for e in reg.list_events() if e.subject == "innocent@1"]
    assert [e.operation for e in events] == ["register", "flag.known_content"]


def test_the_malicious_file_repackaged_registers_quarantined(
    reg: LocalRegistry, evil: Path, tmp_path: Path
) -> None:
    repacked = tmp_path / "repacked"
    repacked.mkdir()
    shutil.copy(evil / "pytorch_model.bin", repacked / "weights.bin")  # renamed, too
    (repacked / "README.md").write_text("nothing to see")
    model = publisher(reg).register_model(
        name="repacked", version="2", manifest=hash_tree(repacked)
    )
    assert model.status == "compromised"
    reason = flag_reason(reg, "repacked@2")
    assert reason.startswith("known malicious content: weights.bin (sha256:")
    assert "the static scan of quarantined evil@1 found posix.system (pickle.global)" in reason


def test_files_a_quarantined_model_shares_with_clean_ones_taint_nothing(
    reg: LocalRegistry, evil: Path, tmp_path: Path
) -> None:
    clean = write_model(tmp_path / "clean", "clean")  # the same config.json as evil
    assert (clean / "config.json").read_bytes() == (evil / "config.json").read_bytes()
    model = register(publisher(reg), clean, "clean")
    assert model.status == "clean"  # type: ignore[attr-defined]


def test_unflagging_the_original_ends_the_match(reg: LocalRegistry, evil: Path) -> None:
    reg.unflag("evil@1", reason="false positive: a test fixture")
    copy = publisher(reg).register_model(
        name="innocent",
        version="1",
        manifest=hash_tree(evil),
        allow_duplicate_content=True,
    )
    assert copy.status == "clean"


def test_content_flagged_by_a_person_and_datasets_stay_flagged(reg: LocalRegistry) -> None:
    reg.register_model(name="hub/base", version="1", manifest=fake_manifest("w", "c"))
    reg.flag("hub/base@1", reason="advisory 7: backdoored weights")
    copy = publisher(reg).register_model(
        name="mirror/base",
        version="1",
        manifest=fake_manifest("w", "c"),
        allow_duplicate_content=True,
    )
    assert copy.status == "compromised"
    assert "quarantined hub/base@1" in flag_reason(reg, "mirror/base@1")
    partial = publisher(reg).register_model(
        name="part", version="1", manifest=fake_manifest("w", "other")
    )
    assert partial.status == "clean"  # a flag by a person names no file: the digest decides
    digest = "sha256:" + "ab" * 32
    reg.register_dataset(name="poisoned", version="1", digest=digest)
    reg.flag("poisoned@1", reason="label flipping")
    again = publisher(reg).register_dataset(name="renamed", version="1", digest=digest)
    assert again.status == "compromised"
    assert "quarantined poisoned@1" in flag_reason(reg, "renamed@1")


def _renamed(document: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    text = json.dumps(document).replace(f"model:{old}", f"model:{new}")
    renamed: dict[str, Any] = json.loads(text.replace(f'"name": "{old}"', f'"name": "{new}"'))
    return renamed


@pytest.mark.usefixtures("evil")
def test_bom_import_with_files_registers_known_content_quarantined(
    reg: LocalRegistry, engine: Engine
) -> None:
    with unit_of_work(engine) as session:
        document = export_cyclonedx(session, "evil@1")
    same = _renamed(document, "evil@1", "bom-copy@1")
    component = same["metadata"]["component"]
    component["name"] = "bom-copy"
    files = [f for f in component["components"] if f["name"] == "pytorch_model.bin"]
    repacked = json.loads(json.dumps(same).replace("bom-copy", "bom-repack"))
    repacked["metadata"]["component"]["components"] = files  # only the malicious file
    del repacked["metadata"]["component"]["hashes"]  # the digest of the fewer files differs
    for doc in (same, repacked):
        with unit_of_work(engine) as session:
            import_cyclonedx(session, doc, actor=BOB)
    assert "quarantined evil@1" in flag_reason(reg, "bom-copy@1")
    assert flag_reason(reg, "bom-repack@1").startswith(
        "known malicious content: pytorch_model.bin (sha256:"
    )
    assert {a.ref: a.status for a in reg.list_artifacts()} == {
        "evil@1": "compromised",
        "bom-copy@1": "compromised",
        "bom-repack@1": "compromised",
    }


def test_hf_import_without_a_scan_registers_known_content_quarantined(
    reg: LocalRegistry, evil: Path, tmp_path: Path
) -> None:
    (tmp_path / "hf-cache").mkdir()
    cache = HfCache(tmp_path / "hf-cache")
    cache.add(
        "someone/evil-mirror",
        {
            "pytorch_model.bin": (evil / "pytorch_model.bin").read_bytes(),
            "README.md": card(),
        },
    )
    snapshot = locate_snapshot("someone/evil-mirror", cache_dir=cache.root)
    plan = plan_import(snapshot)
    manifest = hash_tree(snapshot.path, allowed_roots=snapshot.allowed_roots)
    result = publisher(reg).import_hf(plan, manifest=manifest)  # --skip-scan
    assert result.model.status == "compromised"
    assert "quarantined evil@1" in flag_reason(reg, result.model.ref)


@pytest.fixture
def remote(engine: Engine, database_url: str) -> Iterator[RemoteRegistry]:
    """A publisher (no team) talking to ``mbom serve`` over real HTTP."""
    bootstrap = LocalRegistry(engine, Actor("bootstrap", Role.ADMIN))
    token = bootstrap.create_token(user="bob", role=Role.PUBLISHER).token
    app = create_app(Settings(database_url=database_url), engine=engine)
    with serve_in_thread(app) as base_url, RemoteRegistry(base_url, token) as client:
        yield client


def test_the_api_registers_known_content_quarantined(
    reg: LocalRegistry, evil: Path, remote: RemoteRegistry
) -> None:
    manifest: Manifest = hash_tree(evil)
    copy = remote.register_model(
        name="innocent",
        version="1",
        manifest=manifest,
        allow_duplicate_content=True,
    )
    assert (copy.finding, copy.status) == ("compromised", "compromised")
    assert "quarantined evil@1" in flag_reason(reg, "innocent@1")


@pytest.fixture
def db_cli(tmp_path: Path, database_url: str) -> Cli:
    """``mbom`` with MBOM_DATABASE_URL on this test's database (SQLite, then PostgreSQL)."""
    local_registry(database_url).engine.dispose()
    return Cli(cli_env(tmp_path, MBOM_DATABASE_URL=database_url), tmp_path)


def test_cli_skip_scan_allow_duplicate_content_is_quarantined_exit_1(
    db_cli: Cli, tmp_path: Path
) -> None:
    evil = write_model(tmp_path / "evil", "malicious")
    db_cli("register", evil, "--name", "evil", "--version", "1", code=1)
    again = db_cli(
        "register",
        evil,
        "--name",
        "evil-again",
        "--version",
        "1",
        "--metadata-only",  # held elsewhere and not scanned here: known content still counts
        "--skip-scan",
        "--allow-duplicate-content",
        code=1,
    )
    assert again.error_line() == (
        "mbom: error: evil-again@1 is quarantined: its content is known to be malicious or it "
        "was flagged (mbom status evil-again@1) (it is recorded as compromised and blocked for "
        "every team)"
    )
    status = db_cli("status", "evil-again@1", "--json").json()
    assert status["status"] == "compromised"
    assert "quarantined evil@1" in status["flags"][0]["reason"]


def test_a_flag_reaches_the_same_files_registered_earlier_under_another_name(
    reg: LocalRegistry,
) -> None:
    reg.register_model(name="hub/base", version="1", manifest=fake_manifest("w"))
    publisher(reg).register_model(
        name="mirror/base",
        version="1",
        manifest=fake_manifest("w"),
        allow_duplicate_content=True,
    )
    publisher(reg).register_model(
        name="mirror/ft",
        version="1",
        manifest=fake_manifest("ft"),
        parents=["mirror/base@1"],
    )
    reg.flag("hub/base@1", reason="advisory 9")
    assert reg.show("mirror/base@1").status == "compromised"
    assert reg.show("mirror/ft@1").status == "infected"
    assert flag_reason(reg, "mirror/base@1") == (
        "known malicious content: its files are those of quarantined hub/base@1 "
        f"({fake_manifest('w').digest})"
    )
    # The copy carries its own flag: unflagging the original does not clear it.
    reg.unflag("hub/base@1", reason="false positive")
    assert reg.show("mirror/base@1").status == "compromised"


def _forged_malicious(manifest: Manifest) -> ScanReport:
    """A client's own scan report calling the first file of ``manifest`` malicious."""
    entry = manifest.entries[0]
    return ScanReport(
        findings=(
            Finding(
                file=entry.path,
                kind="pickle.global",
                detail="os.system",
                severity=Severity.MALICIOUS,
                why="forged by the client",
            ),
        ),
        files=(FileResult(path=entry.path, format="pickle", size=entry.size),),
    )


def test_a_clients_forged_verdict_on_a_copy_flags_only_the_copy(
    reg: LocalRegistry, remote: RemoteRegistry
) -> None:
    """Review finding: registering a copy of another team's model with a forged malicious
    report flagged the original (and so everything built on it); and a forged finding on a
    shared file quarantined every later registration holding it."""
    victim = fake_manifest("weights of the victim")
    reg.register_model(name="teamb/model", version="1", manifest=victim)
    copy = remote.register_model(
        name="squat/copy",
        version="1",
        manifest=victim,
        allow_duplicate_content=True,
        scan=_forged_malicious(victim),
    )
    assert copy.status == "compromised"  # the client's own report decides its own model
    assert reg.show("teamb/model@1").status == "clean"
    later = reg.register_model(
        name="teamc/model",
        version="1",
        manifest=victim,
        allow_duplicate_content=True,
    )
    assert later.status == "clean"
