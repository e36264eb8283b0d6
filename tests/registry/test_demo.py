"""The demo plays the whole cascade on real tiny models."""

from __future__ import annotations

from pathlib import Path

from registry.demo import run_demo


def test_demo_names_the_four_affected_deployments_and_spares_the_rest(tmp_path: Path) -> None:
    summary = run_demo(tmp_path / "demo")
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
    assert len(summary["refused"]) == 2
    assert (tmp_path / "demo" / "registry.db").exists()
