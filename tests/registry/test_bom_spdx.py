"""SPDX 3.0.1 export, checked with the SPDX project's generated 3.0.1 model bindings.

No package ships the official ``spdx-json-schema.json`` and the tests run
offline, so each document is read with ``spdx-python-model`` (bindings generated
from the official 3.0.1 SHACL model: it refuses unknown types, unknown
properties, wrong value types and unknown enumeration values) and written back
(which enforces every required property and cardinality).
"""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from spdx_python_model import v3_0_1 as spdx
from sqlalchemy import Engine

from registry.bom import export_spdx3
from registry.client import LocalRegistry
from registry.db import unit_of_work
from registry.service.refs import resolve
from tests.registry.test_bom_cyclonedx import LINEAGES

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MBOM_UPDATE_GOLDEN") == "1"
WHEN = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def assert_valid_spdx3(document: dict[str, Any]) -> spdx.SHACLObjectSet:
    """Fail unless the SPDX 3.0.1 model accepts ``document``; its objects."""
    objects = spdx.SHACLObjectSet()
    spdx.JSONLDDeserializer().read(io.BytesIO(json.dumps(document).encode()), objects)
    spdx.JSONLDSerializer().write(objects, io.BytesIO())
    assert document["@context"] == "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
    return objects


def export(engine: Engine, ref: str) -> dict[str, Any]:
    with unit_of_work(engine) as session:
        return export_spdx3(session, ref, created=WHEN)


def relationships(document: dict[str, Any]) -> set[tuple[str, str, str]]:
    names = {e["spdxId"]: e.get("name") for e in document["@graph"] if "spdxId" in e}
    return {
        (names[e["from"]], e["relationshipType"], names[t])
        for e in document["@graph"]
        if e["type"] == "Relationship" and e["relationshipType"] != "contains"
        for t in e["to"]
    }


@pytest.mark.parametrize("lineage", sorted(LINEAGES))
def test_export_is_valid_spdx3_and_matches_golden(
    reg: LocalRegistry, engine: Engine, lineage: str
) -> None:
    document = export(engine, LINEAGES[lineage](reg))
    assert_valid_spdx3(document)
    golden = GOLDEN / f"spdx3_{lineage}.json"
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if UPDATE:
        golden.write_text(text)
    assert text == golden.read_text()


def test_models_datasets_and_lineage_relationships(reg: LocalRegistry, engine: Engine) -> None:
    document = export(engine, LINEAGES["dataset_infected"](reg))
    objects = assert_valid_spdx3(document)
    assert {o.name for o in objects.foreach_type(spdx.ai_AIPackage)} == {"base", "ft"}
    assert {o.name for o in objects.foreach_type(spdx.dataset_DatasetPackage)} == {
        "poison",
        "bench",
    }
    assert relationships(document) == {
        ("base", "ancestorOf", "ft"),
        ("ft", "descendantOf", "base"),
        ("ft", "trainedOn", "poison"),
        ("ft", "testedOn", "bench"),
    }
    [ft] = [o for o in objects.foreach_type(spdx.ai_AIPackage) if o.name == "ft"]
    with unit_of_work(engine) as session:
        digest = resolve(session, "ft@1").digest
    assert [h.hashValue for h in ft.verifiedUsing] == [(digest or "").removeprefix("sha256:")]
    files = list(objects.foreach_type(spdx.software_File))
    assert len(files) == 2
    assert all(len(f.verifiedUsing[0].hashValue) == 64 for f in files)


def test_merge_has_two_ancestors(reg: LocalRegistry, engine: Engine) -> None:
    document = export(engine, LINEAGES["merge"](reg))
    assert_valid_spdx3(document)
    assert {r for r in relationships(document) if r[1] == "descendantOf"} == {
        ("merged", "descendantOf", "acme/a"),
        ("merged", "descendantOf", "b"),
    }
    [doc] = [e for e in document["@graph"] if e["type"] == "SpdxDocument"]
    assert doc["rootElement"] == ["urn:mbom:model%3Amerged%401:model:merged@1"]


def test_validation_catches_a_missing_required_property(reg: LocalRegistry, engine: Engine) -> None:
    document = export(engine, LINEAGES["dataset_infected"](reg))
    for element in document["@graph"]:
        element.pop("dataset_datasetType", None)
    with pytest.raises(ValueError, match="datasetType"):
        assert_valid_spdx3(document)
