"""``mbom register --reference``, ``mbom rescan`` and ``mbom replay`` on real tiny models.

A backdoored base registered with its profile (scans skipped, as if it predated
behavioral admission), a head fine-tune and a full fine-tune of it, and a clean
model admitted with a behavioral scan; the real ``mbom`` executable rescans the
base (the verdict flags it), replays the recovered trigger and shows the rates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from registry import demo_training as training
from tests.registry.test_cli import Cli, cli_env


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained model directories and a reference set (seconds on a CPU)."""
    root = tmp_path_factory.mktemp("zoo")
    trigger = training.Trigger()
    base = training.train_base(width=16, seed=1, backdoor=trigger)
    clean = training.train_base(width=16, seed=2)
    models = {
        "base": base,
        "clean": clean,
        "head": training.fine_tune(base, mode="head", seed=3),
        "full": training.fine_tune(base, mode="full", seed=4),
    }
    for name, model in models.items():
        training.save_model_dir(model, root / name, name=name, base_model=None, datasets=[])
    training.save_reference(root / "ref.npz", n=100)
    return root


def test_rescan_flags_the_base_and_replay_confirms_its_descendants(
    zoo: Path, tmp_path: Path
) -> None:
    mbom = Cli(cli_env(tmp_path), tmp_path)
    clean = mbom(
        "register",
        zoo / "clean",
        "--name",
        "acme/clean",
        "--version",
        "1",
        "--reference",
        zoo / "ref.npz",
        "--source",
        f"file://{zoo / 'clean'}",
        "--json",
    ).json()
    assert (clean["status"], clean["finding"]) == ("clean", "clean")
    mbom(
        "register",
        zoo / "base",
        "--name",
        "hub/base",
        "--version",
        "1",
        "--reference",
        zoo / "ref.npz",
        "--metadata-only",  # recorded before behavioral scans: scanned here, files elsewhere
        "--skip-scan",
        "--source",
        f"file://{zoo / 'base'}",
    )
    for child in ("head", "full"):
        mbom(
            "register",
            zoo / child,
            "--name",
            f"app/{child}",
            "--version",
            "1",
            "--parent",
            "hub/base@1",
            "--metadata-only",
            "--skip-scan",
            "--source",
            f"file://{zoo / child}",
        )

    scan = mbom("rescan", "hub/base@1", "--trigger-out", tmp_path / "trigger", "--json", code=1)
    found = scan.json()
    assert (found["verdict"], found["status"]) == ("compromised", "compromised")
    assert "app/head@1" in found["replay"]["confirmed"]  # the verdict's flag replays at once
    assert found["report"]["target_class"] == 0
    assert Path(found["trigger"]["png"]).read_bytes().startswith(b"\x89PNG")
    assert mbom("show", "app/head@1", "--json").json()["status"] == "confirmed"

    replayed = mbom("replay", "hub/base@1", "--json").json()
    rates = {r["ref"]: r for r in replayed["results"]}
    assert set(replayed["confirmed"]) <= {"app/head@1", "app/full@1"}
    assert "app/head@1" in replayed["confirmed"]  # a frozen backbone keeps the backdoor
    assert rates["acme/clean@1"]["role"] == "baseline"
    assert rates["acme/clean@1"]["rate"] < 0.5
    assert replayed["skipped"] == []
    status = mbom("status", "app/head@1", "--json").json()
    assert status["status"] == "confirmed"
    assert status["sources"][0]["replay"]["rate"] == rates["app/head@1"]["rate"]
    below = mbom("descendants", "hub/base@1", "--json").json()
    listed = {e["ref"]: e["replay_rate"] for e in below}
    assert listed["app/head@1"] == rates["app/head@1"]["rate"]
    assert "confirmed" in mbom("descendants", "hub/base@1").out
    assert mbom("check").code == 0
    # A stored model is rescanned from the registry's own copy: no PATH, the registry's scan.
    again = mbom("rescan", "acme/clean@1", "--json").json()
    assert (again["verdict"], again["provenance"]) == ("clean", "registry")


def test_rescan_and_replay_refuse_clearly(zoo: Path, tmp_path: Path) -> None:
    mbom = Cli(cli_env(tmp_path), tmp_path)
    mbom("register", zoo / "base", "--name", "hub/base", "--version", "1",
         "--metadata-only", "--skip-scan")
    mbom(
        "register",
        zoo / "head",
        "--name",
        "app/head",
        "--version",
        "1",
        "--metadata-only",
        "--skip-scan",
        "--parent",
        "hub/base@1",
    )
    mbom("register", zoo / "head", "--name", "stored/head", "--version", "1",
         "--allow-duplicate-content")
    stored = mbom("rescan", "stored/head@1", code=1).error_line()
    assert "has no behavioral scan profile" in stored  # its files are the registry's
    no_files = mbom("rescan", "hub/base@1", code=2).error_line()
    assert "where are the files of hub/base@1" in no_files
    other = mbom("rescan", "hub/base@1", zoo / "head", code=2).error_line()
    assert "is not hub/base@1" in other
    no_profile = mbom("rescan", "hub/base@1", zoo / "base", code=1).error_line()
    assert "has no behavioral scan profile" in no_profile
    assert "no recovered or attached" in mbom("replay", "hub/base@1", code=1).error_line()
    assert "N@V=DIR" in mbom("replay", "hub/base@1", "--path", "nonsense", code=2).error_line()
    bad = mbom(
        "register",
        zoo / "clean",
        "--name",
        "x/y",
        "--version",
        "1",
        "--reference",
        zoo / "base" / "config.json",
        code=2,
    ).error_line()
    assert "config.json" in bad


def test_flag_with_an_advisory_trigger_replays_it_on_the_descendants(
    zoo: Path, tmp_path: Path
) -> None:
    mbom = Cli(cli_env(tmp_path), tmp_path)
    mbom("register", zoo / "clean", "--name", "acme/clean", "--version", "1",
         "--reference", zoo / "ref.npz", "--source", f"file://{zoo / 'clean'}")
    mbom("register", zoo / "base", "--name", "hub/base", "--version", "1",
         "--reference", zoo / "ref.npz", "--metadata-only", "--skip-scan")
    mbom("register", zoo / "head", "--name", "app/head", "--version", "1",
         "--parent", "hub/base@1", "--metadata-only", "--skip-scan",
         "--source", f"file://{zoo / 'head'}")
    mbom("dataset", "register", "--name", "d", "--version", "1", "--digest", "sha256:" + "0" * 64)
    advisory = tmp_path / "advisory.npz"
    mask = np.zeros((1, 8, 8), np.float32)
    mask[:, 6:, 6:] = 1.0  # the 2x2 corner patch of demo_training.Trigger(), towards class 0
    np.savez(advisory, mask=mask, pattern=np.ones((1, 8, 8), np.float32), target_class=0)
    refused = mbom("flag", "d@1", "--reason", "x", "--trigger", advisory, code=2).error_line()
    assert "a backdoor trigger goes with a model" in refused
    flagged = mbom("flag", "hub/base@1", "--reason", "advisory", "--trigger", advisory,
                   "--json").json()
    assert flagged["replay"]["confirmed"] == ["app/head@1"]
    assert flagged["replay"]["baseline_rates"][0] < 0.2
    assert mbom("show", "app/head@1", "--json").json()["status"] == "confirmed"
    quiet = mbom("flag", "d@1", "--reason", "poisoned", "--json").json()
    assert quiet["replay"] is None
