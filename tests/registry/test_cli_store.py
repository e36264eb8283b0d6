"""``mbom register`` into the store, ``mbom pull``, ``mbom store``: the console script, for real."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from registry.identity import Role
from registry.store import open_store
from tests.registry.live_server import serve_in_subprocess
from tests.registry.test_cli import MBOM, Cli, cli_env, local_registry


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """``mbom`` on a fresh, migrated SQLite registry under MBOM_HOME (its store beside it)."""
    local_registry(f"sqlite:///{tmp_path / 'home' / 'registry.db'}").engine.dispose()
    return Cli(cli_env(tmp_path), tmp_path)


def model(make_model: Callable[..., Path], name: str, value: float = 1.0) -> Path:
    weights = safetensors.numpy.save({"w": np.full((3, 3), value, dtype=np.float32)})
    return make_model(name, {"model.safetensors": weights, "cfg/config.json": '{"v": 1}'})


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_register_stores_pull_verifies_and_the_store_is_looked_after(
    cli: Cli, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    base = model(make_model, "base")
    registered = cli("register", base, "--name", "acme/base", "--version", "1", "--json").json()
    assert (registered["stored"], registered["finding"]) == (True, "clean")
    pulled = cli("pull", "acme/base@1", tmp_path / "copy", "--json").json()
    assert pulled["digest"] == registered["digest"]
    assert files_of(tmp_path / "copy") == files_of(base)
    again = cli("pull", "acme/base@1", tmp_path / "copy", code=2)
    assert "not an empty directory" in again.error_line()
    status = cli("status", "acme/base@1", "--json").json()
    assert (status["stored"], status["pulls"]) == (True, 1)
    assert "stored   yes" in cli("status", "acme/base@1").out
    assert cli("store", "verify", "--json").json()["problems"] == []
    # A blob changed behind the registry's back: verify names the version, pull refuses.
    store = open_store(str(tmp_path / "home" / "store"))
    digest = "sha256:" + hashlib.sha256((base / "model.safetensors").read_bytes()).hexdigest()
    blob = store.local_path(digest)
    assert blob is not None
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    broken = cli("store", "verify", "--json", code=1).json()
    problems = [(p["state"], p["versions"]) for p in broken["problems"]]
    assert problems == [("corrupt", ["acme/base@1"])]
    refused = cli("pull", "acme/base@1", tmp_path / "second", code=1)
    assert "corrupt" in refused.error_line()
    assert not (tmp_path / "second" / "model.safetensors").exists()
    gc = cli("store", "gc", "--dry-run", "--grace-hours", "0", "--json").json()
    assert gc["removed"] == []  # every blob is used by acme/base@1


def test_metadata_only_is_recorded_but_never_clean_nor_pullable(
    cli: Cli, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    path = model(make_model, "elsewhere", 2.0)
    shown = cli(
        "register", path, "--name", "ext", "--version", "1", "--metadata-only", "--json"
    ).json()
    assert (shown["stored"], shown["finding"]) == (False, "unscanned")
    status = cli("status", "ext@1").out
    assert "metadata-only" in status
    assert "client" in status  # the scan is shown as the client's
    refused = cli("pull", "ext@1", tmp_path / "out", code=1)
    assert "metadata-only" in refused.error_line()
    cli("team", "create", "strict", "--require-registry-scan")
    teams = cli("team", "list", "--json").json()
    assert {t["name"]: t["require_registry_scan"] for t in teams} == {"strict": True}
    child = model(make_model, "child", 3.0)
    blocked = cli(
        "register", child, "--name", "c", "--version", "1", "--parent", "ext@1",
        "--team", "strict", code=1,
    )
    assert "metadata-only" in blocked.error_line()


def test_through_a_server_files_are_uploaded_scanned_there_and_pulled(
    make_model: Callable[..., Path], tmp_path: Path
) -> None:
    env = cli_env(tmp_path)
    setup = local_registry(f"sqlite:///{tmp_path / 'home' / 'registry.db'}")
    token = setup.create_token(user="ci", role=Role.ADMIN).token
    setup.engine.dispose()
    with serve_in_subprocess(MBOM, env, tmp_path / "serve.log") as server:
        remote = Cli(env, tmp_path).remote(server, token)
        base = model(make_model, "base")
        registered = remote("register", base, "--name", "acme/base", "--version", "1", "--json")
        assert registered.json()["stored"] is True
        remote("pull", "acme/base@1", tmp_path / "copy")
        assert files_of(tmp_path / "copy") == files_of(base)
        refused = remote("store", "verify", code=1)
        assert "registry's host" in refused.error_line()
        pulls = remote("descendants", "acme/base@1", "--deployed", "--summary", "--json").json()
        assert (pulls["pulls"], pulls["pulled_by"][0]["user"]) == (1, "ci")
    # The server holds the files in its own store (this test's MBOM_STORE_URL).
    held = open_store(os.environ["MBOM_STORE_URL"])
    assert len(list(held.digests())) == 2
