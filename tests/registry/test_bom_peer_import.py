"""Importing ML-BOMs other projects wrote: what is kept, what warns (golden files).

The documents under ``peer_boms/`` are the CycloneDX authors' own examples (see
its README). Each golden file ``golden/peer_<name>.json`` holds what the import
kept (artifacts, edges, flags, the ``bom.metadata`` audit records) and every
warning it gave; ``MBOM_UPDATE_GOLDEN=1`` rewrites them. A hand-written document
covers what no peer example shows: a pedigree ancestor missing from the
components, lineage given only through ``dependencies``, two groups' models with
one name, and a vulnerability on a model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from registry.bom import export_cyclonedx, import_cyclonedx_report
from registry.db import unit_of_work
from registry.identity import Actor, Role
from registry.schemas import BomImport
from registry.service.audit import verify_chain
from registry.service.status import find_inconsistencies
from registry.tables import Artifact, AuditEvent, Edge, Flag
from tests.registry.test_bom_cyclonedx import GOLDEN, UPDATE, assert_valid_cyclonedx

PEERS = Path(__file__).parent / "peer_boms"
BOB = Actor(user="bob", role=Role.PUBLISHER)

#: What no peer example shows, in one document (written for this test).
HANDMADE: dict[str, Any] = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.6",
    "serialNumber": "urn:uuid:0b6c3f7e-1111-4d2b-9a00-6d626f6d2d63",
    "components": [
        {
            "type": "machine-learning-model",
            "bom-ref": "chat",
            "group": "acme",
            "name": "chat",
            "version": "2",
            "purl": "pkg:huggingface/acme/chat@0123abc",
            "licenses": [{"license": {"id": "Apache-2.0"}}],
            "pedigree": {
                "ancestors": [
                    {
                        "type": "machine-learning-model",
                        "group": "meta",
                        "name": "base",
                        "version": "7",
                    }
                ]
            },
        },
        {
            "type": "machine-learning-model",
            "bom-ref": "other-chat",
            "group": "other",
            "name": "chat",
        },
        {
            "type": "machine-learning-model",
            "bom-ref": "merged",
            "name": "merged",
            "version": "1",
            "externalReferences": [
                {"type": "distribution", "url": "https://huggingface.co/acme/merged/tree/v1"}
            ],
        },
        {"type": "data", "bom-ref": "corpus", "name": "corpus", "version": "3"},
        {"type": "library", "bom-ref": "torch", "name": "torch", "version": "2.4"},
    ],
    "dependencies": [
        {"ref": "merged", "dependsOn": ["chat", "other-chat", "corpus", "torch"]},
    ],
    "vulnerabilities": [
        {
            "id": "ADV-2026-0001",
            "source": {"name": "Acme PSIRT"},
            "description": "backdoor trigger recovered from the weights",
            "analysis": {"state": "exploitable"},
            "affects": [{"ref": "chat"}],
        },
        {
            "id": "ADV-2026-0002",
            "description": "does not apply",
            "analysis": {"state": "false_positive"},
            "affects": [{"ref": "merged"}],
        },
        {"id": "CVE-2024-0001", "affects": [{"ref": "torch"}]},
    ],
}


def peer(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((PEERS / f"{name}.json").read_text())
    return document


def handmade() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(HANDMADE))
    return document


DOCUMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    **{p.stem: partial(peer, p.stem) for p in sorted(PEERS.glob("*.json"))},
    "handmade-pedigree-dependencies-vulnerability": handmade,
}


def import_doc(engine: Engine, document: dict[str, Any], actor: Actor = BOB) -> BomImport:
    with unit_of_work(engine) as session:
        return import_cyclonedx_report(session, document, actor=actor)


def kept(engine: Engine) -> dict[str, Any]:
    """What the registry holds after the import, by reference (no ids, no timestamps)."""
    with unit_of_work(engine) as session:
        artifacts = session.exec(select(Artifact).order_by(col(Artifact.id))).all()
        ref = {a.id: f"{a.kind}:{a.name}@{a.version}" for a in artifacts}
        edges = sorted(
            [ref[e.parent_id], ref[e.child_id], e.relation] for e in session.exec(select(Edge))
        )
        flags = sorted(
            [ref[f.artifact_id], f.reason, f.vouched]
            for f in session.exec(select(Flag).where(col(Flag.active)))
        )
        records = [
            [e.subject, e.details]
            for e in session.exec(
                select(AuditEvent)
                .where(AuditEvent.operation == "bom.metadata")
                .order_by(col(AuditEvent.seq))
            )
        ]
        assert find_inconsistencies(session) == []
        assert verify_chain(session).ok
        return {
            "artifacts": sorted(
                [
                    {
                        "ref": ref[a.id],
                        "placeholder": a.placeholder,
                        "publisher": a.publisher,
                        "source": a.source,
                        "digest": a.digest,
                        "finding": a.finding,
                        "status": a.status,
                    }
                    for a in artifacts
                ],
                key=lambda a: str(a["ref"]),
            ),
            "edges": edges,
            "flags": flags,
            "records": records,
        }


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_a_peer_bom_keeps_what_the_golden_file_says(engine: Engine, name: str) -> None:
    report = import_doc(engine, DOCUMENTS[name]())
    result = {"report": report.model_dump(), **kept(engine)}
    golden = GOLDEN / f"peer_{name}.json"
    text = json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if UPDATE:
        golden.write_text(text)
    assert text == golden.read_text()
    again = import_doc(engine, DOCUMENTS[name]())
    assert again.registered == []  # idempotent
    assert again.flagged == []


@pytest.mark.parametrize("spec_version", ["1.6", "1.7"])
def test_what_a_peer_bom_kept_exports_as_a_valid_document(
    engine: Engine, spec_version: str
) -> None:
    import_doc(engine, peer("cdx-spec-valid-machine-learning-1.7"))
    with unit_of_work(engine) as session:
        document = export_cyclonedx(
            session, "CompVis/stable-diffusion@1.4", spec_version=spec_version
        )
    assert_valid_cyclonedx(document, spec_version)
    root = document["metadata"]["component"]
    assert root["name"] == "CompVis/stable-diffusion"
    assert root["supplier"] == {"name": "Acme Inc"}
    assert root["modelCard"]["modelParameters"]["datasets"] == [
        {"ref": "dataset:CompVis/stable-diffusion/Training-Data@unversioned"}
    ]


def test_two_groups_models_with_one_name_stay_two_models(engine: Engine) -> None:
    import_doc(engine, DOCUMENTS["handmade-pedigree-dependencies-vulnerability"]())
    with unit_of_work(engine) as session:
        names = sorted(a.name for a in session.exec(select(Artifact)) if a.name.endswith("chat"))
    assert names == ["acme/chat", "other/chat"]


def test_a_reported_vulnerability_flags_the_model_and_infects_its_descendants(
    engine: Engine,
) -> None:
    report = import_doc(engine, DOCUMENTS["handmade-pedigree-dependencies-vulnerability"]())
    assert report.flagged == ["acme/chat@2"]
    with unit_of_work(engine) as session:
        status = {a.name: a.status for a in session.exec(select(Artifact))}
        events = session.exec(select(AuditEvent).where(AuditEvent.operation == "flag")).all()
    assert status["acme/chat"] == "compromised"
    assert status["merged"] == "infected"  # merged depends on acme/chat
    assert status["other/chat"] == "clean"
    [event] = events
    assert event.details["via"].startswith("bom.import vulnerabilities[0]")
    assert "urn:uuid:0b6c3f7e-1111-4d2b-9a00-6d626f6d2d63" in event.details["reason"]


def test_a_publisher_cannot_flag_a_model_registered_before_by_importing_a_claim(
    engine: Engine,
) -> None:
    """A document calling someone else's registered model compromised only warns."""
    import_doc(engine, {**HANDMADE, "vulnerabilities": []})
    report = import_doc(engine, DOCUMENTS["handmade-pedigree-dependencies-vulnerability"]())
    assert report.flagged == []
    assert any("only an admin may flag it (mbom flag acme/chat@2)" in w for w in report.warnings)
    with unit_of_work(engine) as session:
        assert {a.status for a in session.exec(select(Artifact))} == {"clean"}
    admin = Actor(user="alice", role=Role.ADMIN)
    assert import_doc(engine, DOCUMENTS[next(iter(DOCUMENTS))](), admin).flagged == []
    assert import_doc(engine, HANDMADE, admin).flagged == ["acme/chat@2"]
