"""The ``mbom`` console script, run for real in subprocesses.

Each test gets its own registry: a SQLite file under its own ``MBOM_HOME``, or
(for the tests taking ``database_url``) ``MBOM_DATABASE_URL`` pointing at a
fresh SQLite file and then a fresh PostgreSQL database. Commands whose results
do not depend on each other run concurrently (``Cli.many``) to keep the file
fast: each ``mbom`` start costs about a second. Setup that is not under test is
written in-process through the service layer, into the same database.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import safetensors.numpy
from typer.main import get_command
from typer.testing import CliRunner

from lineage import Relation
from registry import signing
from registry.api import create_app
from registry.cli import app
from registry.client import LocalRegistry
from registry.db import make_engine, migrate
from registry.identity import Actor, Role
from registry.manifest import hash_tree
from registry.service.audit import bind_key
from registry.settings import Settings
from tests.conftest import fake_manifest
from tests.registry.live_server import serve_in_subprocess, serve_in_thread

MBOM = next((p for p in [Path(sys.executable).parent / "mbom", Path(shutil.which("mbom") or "")]
             if p.is_file()), Path("mbom"))
TIMEOUT = 120


@dataclass(frozen=True)
class Result:
    """What one ``mbom`` run did."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.out)

    def error_line(self) -> str:
        """The one ``mbom: error:`` line on stderr (asserting there is exactly one)."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, f"{self.args}: expected one stderr line, got:\n{self.err}"
        assert lines[0].startswith("mbom: error: "), lines[0]
        return lines[0]


@dataclass
class Cli:
    """Runs ``mbom`` with one registry's environment."""

    env: dict[str, str]
    cwd: Path
    prefix: tuple[str, ...] = ()

    def __call__(self, *args: str | Path, code: int | None = 0) -> Result:
        """Run ``mbom ARGS``; check the exit code unless ``code`` is None."""
        argv = (*self.prefix, *(str(a) for a in args))
        done = subprocess.run([str(MBOM), *argv], env=self.env, cwd=self.cwd, capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)
        result = Result(argv, done.returncode, done.stdout, done.stderr)
        if code is not None:
            assert result.code == code, f"mbom {' '.join(argv)} -> {result.code}\n{result.err}"
        if result.code == 0:
            assert "Traceback" not in result.err, result.err
        return result

    def many(self, *calls: Sequence[Any]) -> list[Result]:
        """Run independent commands concurrently: each call is ``(args..., expected_code)``."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(self, *call[:-1], code=call[-1]) for call in calls]
            return [future.result() for future in futures]

    def remote(self, server: str, token: str) -> Cli:
        """The same CLI as ``mbom --server SERVER --token TOKEN ...``."""
        return Cli(self.env, self.cwd, ("--server", server, "--token", token))


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without any MBOM_* of the caller, wide enough for tables on one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MBOM_")}
    # The test's audit key (see conftest's audit_key_file), so CLI and test share it.
    key = {k: v for k, v in os.environ.items() if k == "MBOM_AUDIT_KEY_FILE"}
    return {**env, "MBOM_HOME": str(tmp_path / "home"), "COLUMNS": "250", **key, **extra}


def local_registry(url: str) -> LocalRegistry:
    """An in-process registry on the same database (and audit key) the CLI uses."""
    key = {k: v for k, v in os.environ.items() if k == "MBOM_AUDIT_KEY_FILE"}
    settings = Settings.from_env({"MBOM_DATABASE_URL": url, **key})
    engine = bind_key(make_engine(url), settings.audit_key())
    migrate(engine)
    return LocalRegistry(engine, Actor("setup", Role.ADMIN))


@pytest.fixture
def home_url(tmp_path: Path) -> str:
    """The URL of the SQLite registry under the test's MBOM_HOME."""
    return f"sqlite:///{tmp_path / 'home' / 'registry.db'}"


@pytest.fixture
def cli(tmp_path: Path, home_url: str) -> Cli:
    """``mbom`` on a fresh, migrated SQLite registry under MBOM_HOME."""
    local_registry(home_url).engine.dispose()
    return Cli(cli_env(tmp_path), tmp_path)


@pytest.fixture
def db_cli(tmp_path: Path, database_url: str) -> Cli:
    """``mbom`` with MBOM_DATABASE_URL on this test's database (SQLite, then PostgreSQL)."""
    local_registry(database_url).engine.dispose()
    return Cli(cli_env(tmp_path, MBOM_DATABASE_URL=database_url), tmp_path)


def refs(items: list[dict[str, Any]]) -> list[str]:
    """The sorted refs of JSON artifacts, entries or deployments."""
    return sorted(item["ref"] for item in items)


# --- help -----------------------------------------------------------------------------------------


def command_paths() -> list[list[str]]:
    """Every command and group of the app, as argument lists."""

    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    return list(walk(get_command(app), []))


def test_help_works_for_every_command(tmp_path: Path) -> None:
    paths = command_paths()
    assert ["dataset", "register"] in paths
    assert ["audit", "verify"] in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output, path
    # The installed console script, for real (each start costs a second: two suffice).
    top, register = Cli(cli_env(tmp_path), tmp_path).many(["--help", 0],
                                                          ["register", "--help", 0])
    for command in ("register", "descendants", "tokens", "audit"):
        assert command in top.out
    for option in ("--parent", "--relation", "--dataset", "--sign-key", "--override"):
        assert option in register.out
    assert not (tmp_path / "home").exists(), "--help must not open a registry"


# --- register, sign, datasets, identify, verify --------------------------------------------------


def register_signed(url: str, path: Path, key: Path, **fields: Any) -> None:
    """Register ``path`` in-process, signed with ``key`` (what the CLI does, minus the start-up)."""
    reg = local_registry(url)
    manifest = hash_tree(path)
    signature = signing.sign_digest(signing.load_private_key(key), manifest.digest)
    reg.register_model(manifest=manifest, signature=signature, **fields)
    reg.engine.dispose()


def tensors(value: float) -> bytes:
    """A real, valid safetensors file (the admission scan checks its header)."""
    return safetensors.numpy.save({"weight": np.full((2, 3), value, dtype=np.float32)})


def test_signed_registration_identify_and_verify(
    cli: Cli, make_model: Callable[..., Path], home_url: str, tmp_path: Path
) -> None:
    ft_files: dict[str, bytes | str] = {"model.safetensors": tensors(1.0),
                                        "config.json": '{"ft": 1}', "tokenizer/vocab.txt": "a b"}
    ft = make_model("ft", ft_files)
    plain = make_model("plain", {"w.bin": "unsigned weights"})
    corpus = make_model("corpus", {"train.jsonl": '{"x": 1}\n'})
    keys = tmp_path / "keys"
    keys.mkdir()
    mallory_key, _ = signing.write_keypair(keys / "mallory")
    digest = "sha256:" + "e" * 64
    reg = local_registry(home_url)
    reg.create_team(name="fraud")
    reg.engine.dispose()

    generated, data, evals = cli.many(
        ["keys", "generate", "--out", keys / "alice", "--json", 0],
        ["dataset", "register", corpus, "--name", "corpus", "--version", "1",
         "--source", "s3://bucket/corpus", "--json", 0],
        ["dataset", "register", "--digest", digest, "--name", "evalset", "--version", "2",
         "--json", 0],
    )
    alice_key = Path(generated.json()["private_key"])
    assert (alice_key, Path(generated.json()["public_key"])) == (
        keys / "alice.key", keys / "alice.pub")
    assert alice_key.stat().st_mode & 0o077 == 0, "the private key is for its owner only"
    assert (data.json()["kind"], data.json()["source"]) == ("dataset", "s3://bucket/corpus")
    assert evals.json()["digest"] == digest
    enrolled = cli("keys", "enroll", keys / "alice.pub", "--publisher", "alice", "--json")
    assert enrolled.json()["fingerprint"] == generated.json()["fingerprint"]
    assert enrolled.json()["publisher"] == "alice"
    register_signed(home_url, make_model("base"), alice_key, name="acme/base", version="1",
                    publisher="alice")
    reg = local_registry(home_url)
    reg.register_model(name="plain", version="1", manifest=hash_tree(plain))
    reg.engine.dispose()

    signed = ["--publisher", "alice", "--sign-key", alice_key]
    child, forged = cli.many(
        ["register", ft, "--name", "acme/ft", "--version", "1", "--parent", "acme/base@1",
         "--relation", "finetune", "--dataset", "corpus@1:fine_tuned_on",
         "--dataset", "evalset@2:evaluated_on", "--team", "fraud", "--format", "safetensors",
         "--source", "hf://acme/ft@main", *signed, "--json", 0],
        ["register", make_model("forged"), "--name", "forged", "--version", "1",
         "--publisher", "alice", "--sign-key", mallory_key, 1],
    )
    registered = child.json()
    assert (registered["ref"], registered["team"], registered["signed"]) == (
        "acme/ft@1", "fraud", True)
    assert (registered["source"], registered["file_count"]) == ("hf://acme/ft@main", 3)
    assert {(p["ref"], p["kind"], p["relation"]) for p in registered["parents"]} == {
        ("acme/base@1", "model", "finetune"), ("corpus@1", "dataset", "fine_tuned_on"),
        ("evalset@2", "dataset", "evaluated_on")}
    assert "does not verify" in forged.error_line()

    ok, found, unknown, plain_check, unsigned_ok, datasets, shown = cli.many(
        ["verify", ft, "--json", 0],
        ["identify", ft, "--json", 0],
        ["identify", make_model("stranger"), 1],
        ["verify", plain, 1],
        ["verify", plain, "--allow-unsigned", 0],
        ["dataset", "list", "--json", 0],
        ["dataset", "show", "corpus@1", "--json", 0],
    )
    report = ok.json()
    assert (report["ok"], report["ref"], report["status"], report["problems"]) == (
        True, "acme/ft@1", "clean", [])
    assert report["signature"] == {"state": "valid", "publisher": "alice",
                                   "fingerprint": enrolled.json()["fingerprint"]}
    assert {f["path"]: f["state"] for f in report["files"]} == dict.fromkeys(
        ["config.json", "model.safetensors", "tokenizer/vocab.txt"], "match")
    assert report["expected_digest"] == report["actual_digest"] == registered["digest"]
    assert found.json()["digest"] == registered["digest"]
    assert refs(found.json()["matches"]) == ["acme/ft@1"]
    assert "no registered version" in unknown.err
    assert "1/1 files match" in plain_check.out
    assert "verification FAILED: signature unsigned" in plain_check.out
    assert "or pass --allow-unsigned to accept unsigned models" in plain_check.out
    assert "verification OK" in unsigned_ok.out
    assert refs(datasets.json()) == ["corpus@1", "evalset@2"]
    assert shown.json()["digest"] == data.json()["digest"]

    # Same files, valid signature, but the lineage turns infected: verification fails.
    pristine = tmp_path / "ft-copy"
    shutil.copytree(ft, pristine)
    (ft / "model.safetensors").write_bytes(tensors(2.0))
    (ft / "config.json").unlink()
    (ft / "extra.py").write_text("import os")
    reg = local_registry(home_url)
    reg.flag("acme/base@1", reason="trojan found")
    reg.engine.dispose()
    tampered, infected = cli.many(
        ["verify", ft, "acme/ft@1", "--json", 1],
        ["verify", pristine, "--json", 1],
    )
    assert tampered.json()["ok"] is False
    assert {f["path"]: f["state"] for f in tampered.json()["files"]} == {
        "config.json": "missing", "extra.py": "extra", "model.safetensors": "mismatch",
        "tokenizer/vocab.txt": "match"}
    assert tampered.json()["problems"][:3] == [
        "missing: config.json", "extra: extra.py", "mismatch: model.safetensors"]
    assert infected.json()["signature"]["state"] == "valid"
    assert {f["state"] for f in infected.json()["files"]} == {"match"}
    assert infected.json()["problems"] == ["lineage status is infected"]


# --- flag, propagate, query the graph, deploy ---------------------------------------------------


def build_cascade(url: str) -> None:
    """acme/base -> acme/ft -> acme/app (fraud, prod); acme/base -> search/app (search,
    staging); data -> acme/ft; other (fraud, prod) unrelated."""
    reg = local_registry(url)
    reg.create_team(name="fraud")
    reg.create_team(name="search")
    reg.register_dataset(name="data", version="1", digest="sha256:" + "d" * 64)
    reg.register_model(name="acme/base", version="1", manifest=fake_manifest("base"))
    reg.register_model(name="acme/ft", version="1", manifest=fake_manifest("ft"),
             parents=["acme/base@1"], datasets=[("data@1", Relation.FINE_TUNED_ON)])
    reg.register_model(name="acme/app", version="1", manifest=fake_manifest("app"),
             parents=["acme/ft@1"], team="fraud")
    reg.register_model(name="search/app", version="1", manifest=fake_manifest("sa"),
             parents=["acme/base@1"], team="search")
    reg.register_model(name="other", version="1", manifest=fake_manifest("other"))
    reg.deploy("acme/app@1", environment="prod", team="fraud")
    reg.deploy("search/app@1", environment="staging", team="search")
    reg.deploy("other@1", environment="prod", team="fraud")
    reg.engine.dispose()


APP_PATH = ["acme/base@1", "acme/ft@1", "acme/app@1"]
HIT = [("acme/app@1", "prod", "fraud", "infected", APP_PATH),
       ("search/app@1", "staging", "search", "infected", ["acme/base@1", "search/app@1"])]


def deployment_rows(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Deployments as sorted (ref, environment, team, status, path) rows."""
    return sorted((d["ref"], d["environment"], d["team"], d["status"], d["path"]) for d in items)


def test_flag_cascade_and_graph_queries(cli: Cli, home_url: str) -> None:
    build_cascade(home_url)
    change = cli("flag", "acme/base@1", "--reason", "backdoor in layer 3", "--json").json()
    assert change["status"] == "compromised"
    assert {c["ref"]: (c["status"], c["path"]) for c in change["changed"]} == {
        "acme/ft@1": ("infected", ["acme/base@1", "acme/ft@1"]),
        "acme/app@1": ("infected", APP_PATH),
        "search/app@1": ("infected", ["acme/base@1", "search/app@1"]),
    }
    assert deployment_rows(change["deployments"]) == HIT

    hit_text, fraud, near, up, status, deployed, refused = cli.many(
        ["descendants", "acme/base@1", "--deployed", 0],
        ["descendants", "acme/base@1", "--team", "fraud", "--json", 0],
        ["descendants", "acme/base@1", "--depth", "1", "--json", 0],
        ["ancestors", "acme/app@1", "--json", 0],
        ["status", "acme/app@1", "--json", 0],
        ["deployments", "--team", "fraud", "--json", 0],
        ["deploy", "acme/ft@1", "--env", "prod", "--team", "fraud", 1],
    )
    assert "2 deployments descend from acme/base@1" in hit_text.out
    assert " -> ".join(APP_PATH) in hit_text.out
    assert [(e["ref"], e["depth"], e["path"], e["team"]) for e in fraud.json()] == [
        ("acme/app@1", 2, APP_PATH, "fraud")]
    assert sorted((e["ref"], e["depth"]) for e in near.json()) == [
        ("acme/ft@1", 1), ("search/app@1", 1)]
    assert {(e["ref"], e["kind"], e["depth"]) for e in up.json()} == {
        ("acme/ft@1", "model", 1), ("acme/base@1", "model", 2), ("data@1", "dataset", 2)}
    report = status.json()
    assert (report["finding"], report["status"]) == ("unscanned", "infected")
    assert [(s["source"], s["path"], s["reasons"]) for s in report["sources"]] == [
        ("acme/base@1", APP_PATH, ["backdoor in layer 3"])]
    assert refs(deployed.json()) == ["acme/app@1", "other@1"]
    assert "acme/ft@1 is infected" in refused.error_line()

    summary, summary_text, nearest_only, lone = cli.many(
        ["descendants", "acme/base@1", "--deployed", "--summary", "--json", 0],
        ["descendants", "acme/base@1", "--deployed", "--summary", "--limit", "1", 0],
        ["descendants", "acme/base@1", "--summary", 2],
        ["descendants", "acme/base@1", "--deployed", "--summary", "--limit", "0", "--json", 0],
    )
    radius = summary.json()
    assert (radius["ref"], radius["deployments"], radius["versions"]) == ("acme/base@1", 2, 2)
    assert sorted((g["team"], g["environment"], g["status"], g["deployments"])
                  for g in radius["groups"]) == [
        ("fraud", "prod", "infected", 1), ("search", "staging", "infected", 1)]
    assert deployment_rows(radius["nearest"]) == HIT
    assert "2 deployments of 2 versions descend from acme/base@1" in summary_text.out
    assert "the nearest 1" in summary_text.out
    assert "search/app@1" in summary_text.out
    assert "--summary goes with --deployed" in nearest_only.error_line()
    assert (lone.json()["deployments"], lone.json()["nearest"]) == (2, [])

    cleared, undeployed = cli.many(
        ["clear", "search/app@1", "--reason", "retrained from clean data", "--json", 0],
        ["undeploy", "other@1", "--env", "prod", "--team", "fraud", "--json", 0],
    )
    assert cleared.json()["status"] == "cleared"
    assert (undeployed.json()["ref"], undeployed.json()["active"]) == ("other@1", False)
    unflagged = cli("unflag", "acme/base@1", "--reason", "false positive", "--json").json()
    assert unflagged["status"] == "clean"
    assert refs(unflagged["changed"]) == ["acme/app@1", "acme/ft@1", "search/app@1"]
    reg = local_registry(home_url)
    assert {m.status for m in reg.list_artifacts(kind="model")} == {"clean"}
    assert refs([d.model_dump() for d in reg.list_deployments()]) == [
        "acme/app@1", "search/app@1"]
    assert reg.find_inconsistencies() == []
    reg.engine.dispose()


@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_the_cascade_on_postgresql(db_cli: Cli, database_url: str,
                                   make_model: Callable[..., Path]) -> None:
    cli = db_cli
    build_cascade(database_url)
    flagged = cli("flag", "acme/base@1", "--reason", "advisory", "--json").json()
    assert deployment_rows(flagged["deployments"]) == HIT
    hit, refused, status = cli.many(
        ["descendants", "acme/base@1", "--deployed", "--json", 0],
        ["register", make_model("late"), "--name", "late", "--version", "1",
         "--parent", "acme/ft@1", 1],
        ["status", "acme/app@1", "--json", 0],
    )
    assert deployment_rows(hit.json()) == HIT
    assert [s["path"] for s in status.json()["sources"]] == [APP_PATH]
    assert "parent acme/ft@1 is infected" in refused.error_line()
    reg = local_registry(database_url)
    assert [a.ref for a in reg.list_artifacts() if a.ref == "late@1"] == []
    assert reg.verify_chain().ok
    reg.engine.dispose()


# --- team policy --------------------------------------------------------------------------------


def test_team_policy_refuses_then_override_and_decisions(
    cli: Cli, home_url: str, make_model: Callable[..., Path]
) -> None:
    reg = local_registry(home_url)
    for version in ("1", "2", "3"):
        reg.register_model(name="base", version=version, manifest=fake_manifest(version))
    events_before = reg.list_events()
    child = make_model("child")
    created = cli("team", "create", "secure", "--require-approval", "--json").json()
    assert created["require_approval"] is True

    refused = cli("register", child, "--name", "child", "--version", "1", "--parent", "base@1",
                  "--team", "secure", code=1)
    assert "not approved for team secure" in refused.error_line()
    assert [a.ref for a in reg.list_artifacts()] == ["base@1", "base@2", "base@3"]
    assert len(reg.list_events()) == len(events_before) + 1, "only the team was recorded"

    overridden, _, _ = cli.many(
        ["register", child, "--name", "child", "--version", "1", "--parent", "base@1",
         "--team", "secure", "--override", "incident 42: ship the hotfix", "--json", 0],
        ["approve", "base@2", "--team", "secure", "--reason", "reviewed", "--json", 0],
        ["block", "base@3", "--team", "secure", "--reason", "CVE-2026-1", "--json", 0],
    )
    assert overridden.json()["ref"] == "child@1"
    approved, blocked, decisions, audit = cli.many(
        ["register", make_model("c2"), "--name", "child", "--version", "2", "--parent", "base@2",
         "--team", "secure", "--json", 0],
        ["register", make_model("c3"), "--name", "child", "--version", "3", "--parent", "base@3",
         "--team", "secure", 1],
        ["decisions", "--team", "secure", "--json", 0],
        ["audit", "--subject", "child@1", "--json", 0],
    )
    assert approved.json()["parents"][0]["ref"] == "base@2"
    assert "blocked for team secure: CVE-2026-1" in blocked.error_line()
    assert sorted((d["subject"], d["verdict"], d["team"]) for d in decisions.json()) == [
        ("base@2", "approve", "secure"), ("base@3", "block", "secure")]
    events = {e["operation"]: e for e in audit.json()}
    assert set(events) == {"policy.override", "register"}
    override = events["policy.override"]
    assert override["details"]["reason"] == "incident 42: ship the hotfix"
    assert override["details"]["overridden"] == ["parent base@1 is not approved for team secure"]
    assert override["actor"] == Actor.local().user, "the local CLI acts as the OS user"
    reg.engine.dispose()


# --- refusals -----------------------------------------------------------------------------------


def test_refused_operations_exit_nonzero_with_one_line_and_write_nothing(
    cli: Cli, home_url: str, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    reg = local_registry(home_url)
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"))
    reg.register_model(name="ft", version="1", manifest=fake_manifest("ft"),
             parents=["base@1"])
    reg.register_dataset(name="d", version="1", digest="sha256:" + "1" * 64)
    events_before = reg.list_events()
    fresh = make_model("fresh")
    escaping = make_model("escaping")
    (tmp_path / "secret.txt").write_text("outside")
    (escaping / "link.bin").symlink_to(tmp_path / "secret.txt")
    fifo_dir = make_model("fifo")
    os.mkfifo(fifo_dir / "pipe")
    same_as_base = tmp_path / "same"
    same_as_base.mkdir()
    (same_as_base / "file0.bin").write_text("base")  # the bytes fake_manifest("base") describes
    before = cli("models", "--json")

    refusals: list[tuple[list[Any], int, str]] = [
        (["register", fresh, "--name", "base", "--version", "1"], 1, "already registered"),
        (["register", fresh, "--name", "x", "--version", "1", "--parent", "ghost@1"], 1,
         "ghost@1 is not registered"),
        (["register", fresh, "--name", "x", "--version", "1", "--parent", "x@1"], 1, "cyclic"),
        (["register", escaping, "--name", "x", "--version", "1"], 1, "outside"),
        (["register", fifo_dir, "--name", "x", "--version", "1"], 1, "fifo"),
        (["register", same_as_base, "--name", "x", "--version", "1"], 1,
         "already registered as base@1"),
        (["register", fresh, "--name", "x", "--version", "1", "--parent", "no-version"], 2,
         "is not a reference"),
        (["link", "base@1", "--parent", "ft@1"], 1, "cyclic"),
    ]
    results = cli.many(*[[*args, code] for args, code, _ in refusals])
    for (args, _, message), result in zip(refusals, results, strict=True):
        assert message in result.error_line(), (args, result.err)
        assert result.out == "", (args, result.out)

    assert cli("models", "--json").json() == before.json()
    assert reg.list_events() == events_before
    linked, duplicate = cli.many(
        ["link", "ft@1", "--dataset", "d@1:trained_on", "--json", 0],
        ["register", same_as_base, "--name", "copy", "--version", "1",
         "--allow-duplicate-content", "--json", 0],
    )
    assert ("d@1", "trained_on") in {(p["ref"], p["relation"]) for p in linked.json()["parents"]}
    assert duplicate.json()["digest"] == before.json()[0]["digest"]
    reg.engine.dispose()


# --- audit ----------------------------------------------------------------------------------------


def test_audit_verify_names_the_first_edited_or_deleted_event(
    cli: Cli, home_url: str, tmp_path: Path
) -> None:
    reg = local_registry(home_url)
    reg.create_team(name="fraud")
    for name in ("a", "b", "c"):
        reg.register_model(name=name, version="1", manifest=fake_manifest(name))
    reg.flag("a@1", reason="bad")
    newest = reg.list_events()[-1]
    reg.engine.dispose()
    intact = cli("audit", "verify", "--json").json()
    assert (intact["ok"], intact["events"], intact["first_bad_seq"]) == (True, 5, None)
    assert (newest.seq, newest.operation, intact["head"]) == (5, "flag", newest.hash)

    edited, deleted = tmp_path / "edited", tmp_path / "deleted"
    source = sqlite3.connect(tmp_path / "home" / "registry.db")
    for target, change in [
        (edited, ("UPDATE audit_event SET details = ? WHERE seq = 3", ('{"kind": "dataset"}',))),
        (deleted, ("DELETE FROM audit_event WHERE seq = 2", ())),
    ]:
        target.mkdir()
        copy = sqlite3.connect(target / "registry.db")
        source.backup(copy)
        copy.execute(*change)
        copy.commit()
        copy.close()
        shutil.copyfile(tmp_path / "home" / "audit.key", target / "audit.key")
    source.close()

    edited_cli = Cli(cli_env(edited, MBOM_HOME=str(edited)), tmp_path)
    deleted_cli = Cli(cli_env(deleted, MBOM_HOME=str(deleted)), tmp_path)
    with ThreadPoolExecutor(max_workers=2) as pool:
        on_edit = pool.submit(edited_cli, "audit", "verify", code=1)
        on_delete = pool.submit(deleted_cli, "audit", "verify", "--json", code=1)
    lines = on_edit.result().err.strip().splitlines()
    assert lines == ["audit chain broken at event 3: its content does not match its hash (edited)"]
    report = on_delete.result().json()
    assert (report["ok"], report["first_bad_seq"]) == (False, 3)
    assert "missing" in report["problem"]


# --- tokens and the remote mode -------------------------------------------------------------------


def test_tokens_and_remote_mode_against_mbom_serve(
    cli: Cli, home_url: str, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    build_cascade(home_url)
    admin, reader = cli.many(
        ["tokens", "create", "--user", "ci", "--role", "admin", "--json", 0],
        ["tokens", "create", "--user", "rita", "--role", "reader", "--json", 0],
    )
    assert admin.json()["token"].startswith("mbom_")
    assert (admin.json()["user"], admin.json()["role"]) == ("ci", "admin")
    with serve_in_subprocess(MBOM, cli.env, tmp_path / "serve.log") as server:
        remote = cli.remote(server, admin.json()["token"])
        registered, listed = remote.many(
            ["register", make_model("new"), "--name", "acme/new", "--version", "1",
             "--parent", "acme/base@1", "--json", 0],
            ["tokens", "list", "--json", 0],
        )
        assert registered.json()["created_by"] == "ci"
        assert sorted((t["user"], t["token"]) for t in listed.json()) == [
            ("ci", None), ("rita", None)]

        flagged = remote("flag", "acme/base@1", "--reason", "advisory 7", "--json").json()
        assert "acme/new@1" in refs(flagged["changed"])
        hit, again, revoked = remote.many(
            ["descendants", "acme/base@1", "--deployed", "--json", 0],
            ["flag", "acme/base@1", "--reason", "again", 1],
            ["tokens", "revoke", str(reader.json()["id"]), "--json", 0],
        )
        assert deployment_rows(hit.json()) == HIT
        radius = remote("descendants", "acme/base@1", "--deployed", "--summary", "--team",
                        "search", "--json").json()
        assert (radius["deployments"], refs(radius["nearest"])) == (1, ["search/app@1"])
        assert "flagged already" in again.error_line()
        assert revoked.json()["revoked"] is True
        by_env = Cli({**cli.env, "MBOM_SERVER": server, "MBOM_TOKEN": reader.json()["token"]},
                     cli.cwd)
        refused = by_env("models", code=1)
        assert "unknown or revoked" in refused.error_line()
    reg = local_registry(home_url)
    assert [e.actor for e in reg.list_events() if e.operation == "flag"] == ["ci"]
    reg.engine.dispose()


# --- known bugs -----------------------------------------------------------------------------------


def test_usage_errors_exit_2_without_a_traceback(cli: Cli) -> None:
    results = cli.many(["register", "--name", "x", None],
                       ["descendants", "a@1", "--depth", "0", None])
    for result in results:
        assert result.code == 2, (result.args, result.err)
        assert "Traceback" not in result.err, result.args


def test_brackets_in_an_error_message_do_not_crash(cli: Cli) -> None:
    assert "a[/x]@1" in cli("show", "a[/x]@1", code=1).error_line()


def test_an_unknown_status_filter_is_a_usage_error(cli: Cli) -> None:
    # --status takes a Status: typer refuses another word and lists the statuses.
    err = cli("models", "--status", "bogus", code=2).err
    assert "'bogus' is not one of 'clean', 'compromised'" in err, err


def test_remote_refs_with_url_special_characters(cli: Cli, home_url: str) -> None:
    reg = local_registry(home_url)
    reg.register_model(name="odd#name", version="1", manifest=fake_manifest("odd"))
    token = reg.create_token(user="ci", role=Role.ADMIN).token
    with serve_in_thread(create_app(Settings(database_url=home_url), engine=reg.engine)) as server:
        direct = httpx.get(f"{server}/api/v1/artifacts/odd%23name@1",
                           headers={"Authorization": f"Bearer {token}"})
        assert direct.status_code == 200, "the server itself decodes the name"
        shown = cli.remote(server, token)("show", "odd#name@1", "--json", code=None)
    reg.engine.dispose()
    assert shown.code == 0, shown.err


def exported_lineage(cli: Cli, make_model: Callable[..., Path], tmp_path: Path) -> Path:
    """acme/base@1 -> acme/ft@1 registered, and ft's CycloneDX BOM exported to a file."""
    cli("register", make_model("base"), "--name", "acme/base", "--version", "1")
    cli("register", make_model("ft"), "--name", "acme/ft", "--version", "1",
           "--parent", "acme/base@1")
    document = tmp_path / "ft.cdx.json"
    cli("bom", "export", "acme/ft@1", "-o", document)
    return document


def test_bom_export_then_import_into_another_registry(
    cli: Cli, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    document = exported_lineage(cli, make_model, tmp_path)
    spdx = json.loads(cli("bom", "export", "acme/ft@1", "--format", "spdx3").out)
    assert "@graph" in spdx
    other = Cli({**cli.env, "MBOM_HOME": str(tmp_path / "other")}, cli.cwd)
    assert json.loads(other("bom", "import", document, "--json").out) == {
        "registered": ["acme/base@1", "acme/ft@1"],
        "flagged": [],
        "warnings": [],
    }
    ancestors = json.loads(other("ancestors", "acme/ft@1", "--json").out)
    assert [a["ref"] for a in ancestors] == ["acme/base@1"]
    (tmp_path / "bad.json").write_text("{not json")
    result = other("bom", "import", tmp_path / "bad.json", code=2)
    assert len(result.err.strip().splitlines()) == 1


def test_bom_import_acts_for_the_team_named(
    cli: Cli, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    document = exported_lineage(cli, make_model, tmp_path)
    other = Cli({**cli.env, "MBOM_HOME": str(tmp_path / "other")}, cli.cwd)
    assert "team nowhere is not registered" in other(
        "bom", "import", document, "--team", "nowhere", code=1).error_line()
    other("team", "create", "vision")
    other("bom", "import", document, "--team", "vision")
    assert json.loads(other("show", "acme/ft@1", "--json").out)["team"] == "vision"


def test_version_json_errors_and_a_missing_registry(tmp_path: Path) -> None:
    """mbom --version; a read on a registry that does not exist is refused (nothing is
    created); with --json the error is one JSON object on stderr."""
    fresh = Cli(cli_env(tmp_path, MBOM_HOME=str(tmp_path / "typo")), tmp_path)
    assert re.fullmatch(r"mbom \d+\.\d+\.\S+\n", fresh("--version").out)
    missing = fresh("models", code=1)
    assert "there is no registry at" in missing.error_line()
    assert str(tmp_path / "typo") in missing.error_line()
    as_json = fresh("status", "x@1", "--json", code=1)
    error = json.loads(as_json.err)
    assert (error["code"], error["title"]) == ("configuration", "ConfigurationError")
    assert error["message"].startswith("there is no registry at")
    assert not (tmp_path / "typo").exists()
    # The first write creates it; reads work from then on, and errors stay JSON.
    fresh("team", "create", "a")
    assert fresh("models", "--json").json() == []
    unknown = json.loads(fresh("status", "x@1", "--json", code=1).err)
    assert (unknown["code"], unknown["hint"]) == ("not-found", "list them with mbom models")
