"""``mbom bom import`` prints what it could not keep and flags reported compromise; 1.7 export."""

from __future__ import annotations

import json
from pathlib import Path

from tests.registry.test_bom_cyclonedx import assert_valid_cyclonedx
from tests.registry.test_bom_peer_import import HANDMADE, PEERS
from tests.registry.test_cli import Cli, cli, home_url  # noqa: F401  # fixtures


def test_bom_import_warns_flags_and_exports_1_7(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    peer = PEERS / "cdx-spec-valid-machine-learning-1.7.json"
    shown = cli("bom", "import", peer)
    assert "imported 2: CompVis/stable-diffusion/Training-Data@unversioned" in shown.out
    warnings = [line for line in shown.err.splitlines() if line.startswith("mbom: warning: ")]
    assert len(warnings) == 2, shown.err
    assert "modelCard.quantitativeAnalysis" in warnings[1]
    handmade = tmp_path / "handmade.json"
    handmade.write_text(json.dumps(HANDMADE))
    report = json.loads(cli("bom", "import", handmade, "--json").out)
    assert report["flagged"] == ["acme/chat@2"]
    assert any("CVE-2024-0001" in w for w in report["warnings"])
    status = json.loads(cli("status", "merged@1", "--json").out)
    assert status["status"] == "infected"
    document = json.loads(cli("bom", "export", "merged@1", "--spec-version", "1.7").out)
    assert_valid_cyclonedx(document, "1.7")
    assert [v["id"] for v in document["vulnerabilities"]] == ["MBOM-COMPROMISED:model:acme/chat@2"]
