"""A compromised model's BOM, exported by one registry and imported by another, stays compromised.

Both registries run on the same backend (SQLite, then PostgreSQL). The receiving
registry flags what the document reports compromised, with the document as the
reason, so statuses arrive as they left (an approver's clearance aside, which an
import cannot grant: it is a warning), and its own export carries the same
vulnerabilities again.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from registry.bom import export_cyclonedx, import_cyclonedx_report
from registry.client import LocalRegistry
from registry.db import unit_of_work
from registry.hf import HubRef
from registry.identity import Actor, Role
from registry.schemas import BomImport
from registry.service.status import find_inconsistencies
from registry.tables import Artifact, Flag
from tests.conftest import fake_manifest
from tests.registry.test_bom_cyclonedx import LINEAGES, assert_valid_cyclonedx
from tests.registry.test_bom_import import second_engine  # noqa: F401  # a fixture

BOB = Actor(user="bob", role=Role.PUBLISHER)


def export(engine: Engine, ref: str, spec_version: str = "1.6") -> dict[str, Any]:
    with unit_of_work(engine) as session:
        return export_cyclonedx(session, ref, spec_version=spec_version)


def import_doc(engine: Engine, document: dict[str, Any]) -> BomImport:
    with unit_of_work(engine) as session:
        return import_cyclonedx_report(session, document, actor=BOB)


def statuses(engine: Engine) -> dict[str, tuple[str, str]]:
    with unit_of_work(engine) as session:
        assert find_inconsistencies(session) == []
        return {
            f"{a.kind}:{a.name}@{a.version}": (a.finding, a.status)
            for a in session.exec(select(Artifact))
        }


def vulnerabilities(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (v["id"], v["analysis"]["state"], v["affects"][0]["ref"])
        for v in document.get("vulnerabilities", [])
    ]


@pytest.mark.parametrize("lineage", ["dataset_infected", "deep_chain"])
def test_an_infected_models_bom_arrives_infected_and_leaves_infected_again(
    reg: LocalRegistry,
    engine: Engine,
    second_engine: Engine,  # noqa: F811
    lineage: str,
) -> None:
    ref = LINEAGES[lineage](reg)
    document = export(engine, ref)
    assert document["vulnerabilities"]
    report = import_doc(second_engine, document)
    source = {"dataset_infected": "poison@1", "deep_chain": "root@1"}[lineage]
    assert report.flagged == [source]
    before, after = statuses(engine), statuses(second_engine)
    assert after[f"model:{ref}"][1] != "clean"
    cleared = lineage == "deep_chain"  # c6 was cleared by an approver there: not imported
    assert {k: v for k, v in after.items() if k != f"model:{ref}" or not cleared} == {
        k: v for k, v in before.items() if k != f"model:{ref}" or not cleared
    }
    if cleared:
        assert before[f"model:{ref}"][1] == "cleared"
        assert after[f"model:{ref}"][1] == "infected"
        assert any("a clearance is not imported" in w for w in report.warnings)
    with unit_of_work(second_engine) as session:
        [reason] = session.exec(select(Flag.reason).where(col(Flag.active))).all()
    assert document["serialNumber"] in reason  # the document is the flag's source
    again = export(second_engine, ref)
    assert_valid_cyclonedx(again)
    assert [v[0] for v in vulnerabilities(again)] == [v[0] for v in vulnerabilities(document)]
    assert import_doc(second_engine, document).flagged == []  # idempotent


def test_a_flagged_model_itself_round_trips_flagged(
    reg: LocalRegistry,
    engine: Engine,
    second_engine: Engine,  # noqa: F811
) -> None:
    reg.register_model(name="acme/evil", version="1", manifest=fake_manifest("evil"))
    reg.register_model(
        name="acme/kid", version="1", manifest=fake_manifest("kid"), parents=["acme/evil@1"]
    )
    reg.flag("acme/evil@1", reason="pickle runs os.system")
    document = export(engine, "acme/evil@1")
    assert vulnerabilities(document) == [
        ("MBOM-COMPROMISED:model:acme/evil@1", "exploitable", "model:acme/evil@1")
    ]
    assert import_doc(second_engine, document).flagged == ["acme/evil@1"]
    assert statuses(second_engine)["model:acme/evil@1"] == ("compromised", "compromised")
    assert vulnerabilities(export(second_engine, "acme/evil@1")) == vulnerabilities(document)


@pytest.mark.parametrize("spec_version", ["1.6", "1.7"])
def test_export_writes_hub_urls_purls_and_licences_and_validates(
    reg: LocalRegistry,
    engine: Engine,
    second_engine: Engine,  # noqa: F811
    spec_version: str,
) -> None:
    source = HubRef(repo_id="acme/chat", revision="0123abc").source
    reg.register_model(
        name="acme/chat", version="0123abc", manifest=fake_manifest("c"), source=source
    )
    document = export(engine, "acme/chat@0123abc", spec_version)
    assert_valid_cyclonedx(document, spec_version)
    root = document["metadata"]["component"]
    assert root["purl"] == "pkg:huggingface/acme/chat@0123abc"
    assert root["externalReferences"] == [
        {"type": "distribution", "url": "https://huggingface.co/acme/chat/tree/0123abc"},
        {"type": "distribution", "url": "hf://acme/chat@0123abc"},
    ]
    root["licenses"] = [{"license": {"id": "Apache-2.0"}}, {"license": {"name": "llama2"}}]
    # Only the https URL, as a peer would write it: it still names the repository.
    root["externalReferences"] = [
        {"type": "website", "url": "https://huggingface.co/acme/chat/tree/0123abc"}
    ]
    import_doc(second_engine, document)
    again = export(second_engine, "acme/chat@0123abc", spec_version)
    assert_valid_cyclonedx(again, spec_version)
    kept = again["metadata"]["component"]
    assert kept["licenses"] == root["licenses"]
    assert kept["purl"] == root["purl"]
    assert kept["externalReferences"][1] == {"type": "distribution", "url": source}
