"""The demo plays the whole cascade on real tiny models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from registry.demo import run_demo


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One run of the demo (a minute of training and sandboxed scans) for every test here."""
    root = tmp_path_factory.mktemp("demo")
    return root, run_demo(root)


def test_demo_names_the_four_affected_deployments_and_spares_the_rest(
    played: tuple[Path, dict[str, Any]],
) -> None:
    root, summary = played
    affected = {d["ref"]: d for d in summary["affected_deployments"]}
    assert set(affected) == {
        "fraud/cheque-reader@2.1",
        "fraud/amount-ocr@1.3",
        "mail/zip-reader@4.0",
        "mail/sorter@0.9",
    }
    assert affected["mail/sorter@0.9"]["path"] == [
        "hub/digits-base@1.0",
        "vision/digits-ft-b@1.0",
        "mail/sorter@0.9",
    ]
    # The backdoor really survived fine-tuning in every affected model.
    assert all(d["measured_attack_success"] >= 0.9 for d in affected.values())
    assert {d["ref"]: d["status"] for d in summary["untouched_deployments"]} == {
        "mail/postcode-lite@1.1": "clean",
        "fraud/signature-check@3.0": "clean",
    }
    assert len(summary["refused"]) == 3  # deploy, pull and build on the tainted lineage
    assert (root / "registry.db").exists()


def test_demo_keeps_its_models_in_the_store_and_names_who_pulled_the_lineage(
    played: tuple[Path, dict[str, Any]],
) -> None:
    root, summary = played
    assert summary["pulled_by"] == [
        {"ref": "vision/digits-ft-a@1.0", "user": "dana", "team": "fraud", "status": "infected"}
    ]
    assert any(line.startswith("pull hub/digits-base@1.0: refused") for line in summary["refused"])
    assert any((root / "store" / "sha256").rglob("*"))  # the models' files, content-addressed
    assert (root / "pulled" / "dana").is_dir()


def test_demo_finds_the_backdoor_and_confirms_it_in_every_descendant(
    played: tuple[Path, dict[str, Any]],
) -> None:
    _, summary = played
    assert (summary["scan"]["verdict"], summary["scan"]["target_class"]) == ("compromised", 0)
    replays = {r["ref"]: r for r in summary["replays"]}
    descendants = [r for r in replays.values() if r["role"] == "descendant"]
    assert len(descendants) == 6
    # The bar: every descendant the real trigger still works on is confirmed.
    assert all(r["status"] == "confirmed" for r in descendants if r["real_attack_success"] >= 0.5)
    baseline = replays["acme/digits-clean@1.0"]
    assert (baseline["role"], baseline["status"]) == ("baseline", "clean")
    assert baseline["replayed_rate"] < 0.5
