"""A stored version is ``pending`` while the registry admits it, and unusable until then.

Admission holds the version's name (a ``pending_admission`` row) while its
scans run; the version is recorded only when they end. Meanwhile it is listed
(``mbom admissions``) and every use of it (pull, deploy, parent, decision,
another registration) is refused with ``admission-pending``. A process killed
mid-admission leaves the row behind; once its lease runs out the next
registration of the version takes the admission over and finishes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from registry import demo_training as dt
from registry.client import LocalRegistry
from registry.db import unit_of_work
from registry.errors import MbomError, NotFound, PolicyViolation
from registry.identity import Actor, Role
from registry.manifest import hash_tree
from registry.service import pending
from registry.vocabulary import DecisionVerdict, Kind
from tests.registry.live_server import mbom_serve
from tests.registry.test_artifact_store import clean_model
from tests.registry.test_cli import MBOM, cli_env


def _refusal(attempt: Callable[[], object]) -> str:
    """The error ``attempt`` raised ('' if it succeeded): which rule answered, in words."""
    try:
        attempt()
    except MbomError as error:
        return f"{type(error).__name__}: {error.diagnostics()}"
    return ""


def test_a_version_is_listed_but_unusable_while_it_is_admitted(
    reg: LocalRegistry, tmp_path: Path
) -> None:
    reg.create_team(name="ml")
    reg.admit_model(manifest=reg.store_files(clean_model(tmp_path / "b")), name="base", version="1")
    reader = LocalRegistry(reg.engine, Actor("dana", Role.READER, team="ml"), store=reg.store)
    seen: dict[str, object] = {}

    def probe(step: str) -> None:
        if step != "static scan":
            return
        seen["pending"] = [(p.ref, p.step, p.user, p.stalled) for p in reg.list_pending()]
        seen["pull"] = _refusal(lambda: reader.start_pull("m@1", team="ml"))
        seen["deploy"] = _refusal(lambda: reg.deploy("m@1", environment="prod", team="ml"))
        seen["show"] = _refusal(lambda: reg.show("m@1"))
        seen["approve"] = _refusal(
            lambda: reg.decide(ref="m@1", team="ml", verdict=DecisionVerdict.APPROVE, reason="ok")
        )
        seen["child"] = _refusal(
            lambda: reg.register_model(
                name="child", version="1", manifest=hash_tree(clean_model(tmp_path / "c", 3)),
                parents=["m@1"],
            )
        )
        seen["same name, metadata-only"] = _refusal(
            lambda: reg.register_model(
                name="m", version="1", manifest=hash_tree(clean_model(tmp_path / "o", 4))
            )
        )
        seen["same name, stored"] = _refusal(
            lambda: reg.admit_model(
                manifest=reg.store_files(clean_model(tmp_path / "s", 5)), name="m", version="1"
            )
        )

    model = reg.admit_model(
        manifest=reg.store_files(clean_model(tmp_path / "m", 1)),
        name="m",
        version="1",
        parents=["base@1"],
        on_step=probe,
    )
    assert seen.pop("pending") == [("m@1", "static scan", reg.actor.user, False)]
    for use, refusal in seen.items():
        assert str(refusal).startswith("AdmissionPending: m@1 is pending admission"), use
    assert "not registered yet" in str(seen["pull"])
    # Once admitted: registered, nothing pending, and pullable.
    assert (model.ref, model.stored, reg.list_pending()) == ("m@1", True, [])
    assert reader.start_pull("m@1", team="ml").ref == "m@1"
    assert [a.ref for a in reg.list_artifacts()] == ["base@1", "m@1"]


def test_a_refused_or_interrupted_admission_releases_the_name(
    reg: LocalRegistry, tmp_path: Path
) -> None:
    reg.create_team(name="ml")
    reg.admit_model(manifest=reg.store_files(clean_model(tmp_path / "b")), name="base", version="1")
    reg.decide(ref="base@1", team="ml", verdict=DecisionVerdict.BLOCK, reason="bad licence")
    files = reg.store_files(clean_model(tmp_path / "m", 1))
    # Refused before any scan (an unknown parent): nothing is pending.
    with pytest.raises(NotFound):
        reg.admit_model(manifest=files, name="m", version="1", parents=["nope@1"])
    # Refused after the scans (the team blocked the parent): the name is free again.
    with pytest.raises(PolicyViolation):
        reg.admit_model(manifest=files, name="m", version="1", parents=["base@1"], team="ml")
    assert (reg.list_pending(), [a.ref for a in reg.list_artifacts()]) == ([], ["base@1"])

    # Interrupted (Ctrl-C in the embedded CLI) while scanning: released as well.
    def interrupt(_step: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reg.admit_model(manifest=files, name="m", version="1", on_step=interrupt)
    assert reg.list_pending() == []
    assert reg.admit_model(manifest=files, name="m", version="1").ref == "m@1"


def _die_holding(engine: Engine, name: str, version: str, digest: str = "sha256:" + "0" * 64,
                 *, lease: float = 0.05) -> None:
    """What a process killed mid-admission leaves: a pending row nobody renews."""
    with unit_of_work(engine) as session:
        pending.begin(session, actor=Actor("ghost", Role.PUBLISHER), kind=Kind.MODEL, name=name,
                      version=version, digest=digest, team=None, lease=lease)


def test_a_stalled_admission_is_taken_over_by_the_next_registration(
    reg: LocalRegistry, engine: Engine, tmp_path: Path
) -> None:
    files = reg.store_files(clean_model(tmp_path / "m", 1))
    _die_holding(engine, "m", "1", lease=30)
    # While its lease runs, the dead process still holds the name.
    refused = _refusal(lambda: reg.admit_model(manifest=files, name="m", version="1"))
    assert refused.startswith("AdmissionPending: m@1 is pending admission (queued"), refused
    _die_holding(engine, "n", "1")
    time.sleep(0.1)
    [stalled] = [p for p in reg.list_pending() if p.ref == "n@1"]
    assert (stalled.stalled, stalled.user, stalled.attempt) == (True, "ghost", 1)
    refused = _refusal(lambda: reg.show("n@1"))
    assert "stalled" in refused, refused
    assert "register it again to resume" in refused, refused
    attempts: list[int] = []

    def watch(_step: str) -> None:
        attempts.extend(p.attempt for p in reg.list_pending() if p.ref == "n@1")

    assert reg.admit_model(manifest=files, name="n", version="1", on_step=watch,
                           allow_duplicate_content=True).ref == "n@1"
    assert attempts[0] == 2  # the same row, taken over
    assert [p.ref for p in reg.list_pending()] == ["m@1"]
    # A metadata-only registration supersedes a stalled admission too.
    _die_holding(engine, "o", "1")
    time.sleep(0.1)
    manifest = hash_tree(clean_model(tmp_path / "o", 2))
    assert reg.register_model(name="o", version="1", manifest=manifest).ref == "o@1"
    assert [p.ref for p in reg.list_pending()] == ["m@1"]


def test_the_lease_is_renewed_while_admission_runs(reg: LocalRegistry, tmp_path: Path) -> None:
    """A scan longer than the lease keeps its hold: the heartbeat renews it."""
    leased = LocalRegistry(reg.engine, reg.actor, store=reg.store, admission_lease=1.0)
    files = leased.store_files(clean_model(tmp_path / "m", 1))
    states: list[tuple[bool, str]] = []

    def slow(_step: str) -> None:
        time.sleep(2.5)  # two and a half leases
        states.extend((p.stalled, _refusal(lambda: reg.register_model(
            name="m", version="1", manifest=files))) for p in reg.list_pending())

    assert leased.admit_model(manifest=files, name="m", version="1", on_step=slow).ref == "m@1"
    assert states
    assert all(not stalled for stalled, _ in states)
    assert all(refusal.startswith("AdmissionPending") for _, refusal in states)


@pytest.fixture(scope="module")
def scannable(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny digit classifier and a reference: admission runs a sandboxed behavioral scan."""
    root = tmp_path_factory.mktemp("scannable")
    model = dt.train_base(width=8, seed=4, epochs=3)
    return {
        "model": dt.save_model_dir(model, root / "model", name="ok", base_model=None, datasets=[]),
        "reference": dt.save_reference(root / "reference.npz", n=60),
    }


def test_a_server_killed_mid_admission_leaves_a_stalled_version_that_a_retry_admits(
    engine: Engine, database_url: str, scannable: dict[str, Path], tmp_path: Path
) -> None:
    """kill -9 of ``mbom serve`` during the behavioral scan: the version stays pending
    (listed, unusable), then stalled; registering it again finishes its admission."""
    setup = LocalRegistry(engine, Actor("setup", Role.ADMIN))
    token = setup.create_token(user="ci", role=Role.PUBLISHER).token
    env = cli_env(tmp_path, MBOM_DATABASE_URL=database_url, MBOM_STORE_URL=str(tmp_path / "st"),
                  MBOM_ADMISSION_LEASE="2")
    register = ["register", str(scannable["model"]), "--name", "acme/m", "--version", "1",
                "--reference", str(scannable["reference"]), "--json"]
    headers = {"Authorization": f"Bearer {token}"}

    with mbom_serve(MBOM, env, tmp_path / "serve-1.log") as server:
        first = subprocess.Popen(
            [str(MBOM), "--server", server.base_url, "--token", token, *register],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 120
        seen: list[dict[str, object]] = []
        while time.monotonic() < deadline and first.poll() is None:
            seen = httpx.get(f"{server.base_url}/api/v1/admissions", headers=headers).json()
            if seen and seen[0]["step"] == "behavioral scan":
                break
            time.sleep(0.05)
        assert seen, first.poll()
        assert seen[0]["step"] == "behavioral scan", seen
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=15)
        _, err = first.communicate(timeout=60)
    assert first.returncode != 0
    assert len(err.strip().splitlines()) == 1, err

    with mbom_serve(MBOM, env, tmp_path / "serve-2.log") as server:
        api = httpx.Client(base_url=f"{server.base_url}/api/v1", headers=headers)
        [row] = api.get("/admissions").json()
        assert (row["ref"], row["user"], row["attempt"]) == ("acme/m@1", "ci", 1)
        time.sleep(2.2)  # the dead server's lease runs out
        assert api.get("/admissions").json()[0]["stalled"] is True
        refused = api.post("/models/acme/m@1/pulls", json={})
        assert (refused.status_code, refused.json()["code"]) == (409, "admission-pending")
        assert "register it again to resume" in refused.json()["detail"]
        assert api.get("/models").json() == []
        retry = subprocess.run(
            [str(MBOM), "--server", server.base_url, "--token", token, *register],
            env=env, capture_output=True, text=True, timeout=180, check=False,
        )
        assert retry.returncode == 0, retry.stderr
        admitted = json.loads(retry.stdout)
        assert (admitted["ref"], admitted["stored"]) == ("acme/m@1", True)
        assert api.get("/admissions").json() == []
        assert admitted["finding"] == "clean"  # the registry's own scans, not a client's
        assert api.get("/models/acme/m@1/profile").status_code == 200
        api.close()
    setup.engine.dispose()
