"""CycloneDX 1.6 ML-BOM export: schema-valid, deterministic, golden files."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from sqlalchemy import Engine

from lineage import Relation
from registry.bom import export_cyclonedx
from registry.client import LocalRegistry
from registry.db import unit_of_work
from registry.errors import InvalidInput, NotFound
from tests.conftest import fake_manifest

GOLDEN = Path(__file__).parent / "golden"
# MBOM_UPDATE_GOLDEN=1 rewrites the golden files instead of comparing with them.
UPDATE = os.environ.get("MBOM_UPDATE_GOLDEN") == "1"


def assert_valid_cyclonedx(document: dict[str, Any], spec_version: str = "1.6") -> None:
    """Fail unless ``document`` passes the official CycloneDX JSON schema (offline).

    The schemas are those cyclonedx-python-lib bundles: the CycloneDX specification
    repository's ``schema/bom-1.x.schema.json`` with its spdx, jsf and
    cryptography-defs sub-schemas (identical but for their ``SNAPSHOT`` file
    names), checked strictly (no unknown properties).
    """
    assert document["specVersion"] == spec_version
    versions = {"1.6": SchemaVersion.V1_6, "1.7": SchemaVersion.V1_7}
    error = JsonStrictValidator(versions[spec_version]).validate_str(json.dumps(document))
    assert error is None, str(error)


def build_merge(reg: LocalRegistry) -> str:
    """a + b -> merged (merge); a has publisher, source and format."""
    reg.register_model(
        name="acme/a",
        version="1",
        manifest=fake_manifest("a-weights", "a-config"),
        publisher="acme",
        source="hf://acme/a@main",
        format="safetensors",
    )
    reg.register_model(name="b", version="2", manifest=fake_manifest("b"))
    reg.register_model(
        name="merged",
        version="1",
        manifest=fake_manifest("merged"),
        parents=["acme/a@1", "b@2"],
        relation=Relation.MERGE,
    )
    return "merged@1"


def build_dataset_infected(reg: LocalRegistry) -> str:
    """base -> ft trained on a poisoned dataset and evaluated on a clean one."""
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"))
    reg.register_dataset(name="poison", version="1", digest="sha256:" + "d" * 64)
    reg.register_dataset(
        name="bench",
        version="1",
        digest="sha256:" + "e" * 64,
        source="s3://bench/v1",
    )
    reg.register_model(
        name="ft",
        version="1",
        manifest=fake_manifest("ft"),
        parents=["base@1"],
        datasets=[("poison@1", Relation.FINE_TUNED_ON), ("bench@1", Relation.EVALUATED_ON)],
    )
    reg.flag("poison@1", reason="label flipping found in 3% of rows")
    return "ft@1"


def build_deep_chain(reg: LocalRegistry) -> str:
    """root -> c1 -> ... -> c6 with varied relations; root compromised, c6 cleared."""
    reg.register_model(name="root", version="1", manifest=fake_manifest("root"))
    relations = [
        Relation.FINETUNE,
        Relation.ADAPTER,
        Relation.QUANTIZED,
        Relation.DISTILL,
        Relation.HEAD,
        Relation.CONVERSION,
    ]
    parent = "root@1"
    for depth, relation in enumerate(relations, start=1):
        reg.register_model(
            name=f"c{depth}",
            version="1",
            manifest=fake_manifest(f"c{depth}"),
            parents=[parent],
            relation=relation,
        )
        parent = f"c{depth}@1"
    reg.flag("root@1", reason="trigger recovered by neural cleanse")
    reg.clear("c6@1", reason="full retrain from clean data; replay failed")
    return "c6@1"


LINEAGES: dict[str, Callable[[LocalRegistry], str]] = {
    "merge": build_merge,
    "dataset_infected": build_dataset_infected,
    "deep_chain": build_deep_chain,
}


def export(engine: Engine, ref: str, **kwargs: Any) -> dict[str, Any]:
    with unit_of_work(engine) as session:
        return export_cyclonedx(session, ref, **kwargs)


@pytest.mark.parametrize("lineage", sorted(LINEAGES))
def test_export_is_schema_valid_and_matches_golden(
    reg: LocalRegistry, engine: Engine, lineage: str
) -> None:
    ref = LINEAGES[lineage](reg)
    document = export(engine, ref)
    assert_valid_cyclonedx(document)
    golden = GOLDEN / f"cyclonedx_{lineage}.json"
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if UPDATE:
        golden.write_text(text)
    assert text == golden.read_text()


def test_export_is_deterministic_and_timestamp_only_when_given(
    reg: LocalRegistry, engine: Engine
) -> None:
    ref = build_merge(reg)
    first, second = export(engine, ref), export(engine, ref)
    assert first == second
    assert "timestamp" not in first["metadata"]
    stamped = export(engine, ref, timestamp=datetime(2026, 11, 21, tzinfo=UTC))
    assert stamped["metadata"]["timestamp"] == "2026-11-21T00:00:00+00:00"
    assert stamped["serialNumber"] != first["serialNumber"]
    assert_valid_cyclonedx(stamped)


def test_export_describes_components_files_and_pedigree(reg: LocalRegistry, engine: Engine) -> None:
    document = export(engine, build_merge(reg))
    root = document["metadata"]["component"]
    assert root["bom-ref"] == "model:merged@1"
    assert [a["name"] for a in root["pedigree"]["ancestors"]] == ["acme/a", "b"]
    assert {p["value"] for a in root["pedigree"]["ancestors"] for p in a["properties"]} >= {"merge"}
    parent = next(c for c in document["components"] if c["bom-ref"] == "model:acme/a@1")
    assert parent["supplier"] == {"name": "acme"}
    assert parent["externalReferences"] == [
        {"type": "distribution", "url": "https://huggingface.co/acme/a/tree/main"},
        {"type": "distribution", "url": "hf://acme/a@main"},
    ]
    assert parent["purl"] == "pkg:huggingface/acme/a@main"
    assert [f["name"] for f in parent["components"]] == ["file0.bin", "file1.bin"]
    assert {d["ref"]: d["dependsOn"] for d in document["dependencies"]}["model:merged@1"] == [
        "model:acme/a@1",
        "model:b@2",
    ]
    assert "vulnerabilities" not in document


def test_dataset_infection_is_a_vulnerability_in_triage(reg: LocalRegistry, engine: Engine) -> None:
    document = export(engine, build_dataset_infected(reg))
    card = document["metadata"]["component"]["modelCard"]
    assert card["modelParameters"]["datasets"] == [
        {"ref": "dataset:bench@1"},
        {"ref": "dataset:poison@1"},
    ]
    data = next(c for c in document["components"] if c["bom-ref"] == "dataset:poison@1")
    assert data["type"] == "data"
    [vulnerability] = document["vulnerabilities"]
    assert vulnerability["analysis"]["state"] == "in_triage"
    assert vulnerability["affects"] == [{"ref": "model:ft@1"}]
    assert "label flipping" in vulnerability["description"]
    props = {p["name"]: p["value"] for p in vulnerability["properties"]}
    assert props["mbom:path"] == "poison@1 -> ft@1"


@pytest.mark.parametrize(
    ("action", "state"),
    [("clear", "resolved"), ("none", "in_triage"), ("flag_self", "exploitable")],
)
def test_analysis_state_follows_status(
    reg: LocalRegistry, engine: Engine, action: str, state: str
) -> None:
    reg.register_model(name="root", version="1", manifest=fake_manifest("root"))
    reg.register_model(
        name="kid",
        version="1",
        manifest=fake_manifest("kid"),
        parents=["root@1"],
    )
    reg.flag("root@1", reason="backdoor")
    if action == "clear":
        reg.clear("kid@1", reason="retrained")
    elif action == "flag_self":
        reg.flag("kid@1", reason="own scan")
    states = {v["id"]: v["analysis"]["state"] for v in export(engine, "kid@1")["vulnerabilities"]}
    if action == "flag_self":
        assert states["MBOM-COMPROMISED:model:kid@1"] == state
    else:
        assert states == {"MBOM-COMPROMISED:model:root@1": state}


def test_schema_validator_rejects_a_broken_document(reg: LocalRegistry, engine: Engine) -> None:
    document = export(engine, build_merge(reg))
    document["components"][0]["type"] = "neural-net"
    with pytest.raises(AssertionError):
        assert_valid_cyclonedx(document)


def test_export_refuses_unknown_spec_version_and_unknown_model(
    reg: LocalRegistry, engine: Engine
) -> None:
    ref = build_merge(reg)
    with pytest.raises(InvalidInput, match="CycloneDX 1.4 is not supported"):
        export(engine, ref, spec_version="1.4")
    with pytest.raises(NotFound, match="nope@1"):
        export(engine, "nope@1")
