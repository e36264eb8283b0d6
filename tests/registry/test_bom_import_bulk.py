"""The set-based BOM import writes what the per-component import writes, atomically.

A document none of whose components is registered takes the bulk path; the
same document imported after one of its datasets was registered takes the
per-component path. Both must leave the same artifacts, edges, closure rows
(shortest depth, smallest ``via`` on a tie) and statuses, a consistent
registry and an intact audit chain.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from registry.bom import import_cyclonedx
from registry.db import unit_of_work
from registry.errors import InvalidInput, LineageCycle, PolicyViolation
from registry.identity import Actor, Role
from registry.manifest import Manifest, ManifestEntry
from registry.service import create_team, decide, flag, register_model
from registry.service.audit import verify_chain
from registry.service.status import find_inconsistencies
from registry.tables import Artifact, AuditEvent, Edge, LineageClosure
from tests.conftest import fake_manifest
from tests.registry.test_bom_import import second_engine  # noqa: F401  # a fixture

BOB = Actor(user="bob", role=Role.PUBLISHER)
MODELS = 14


def model(i: int) -> dict[str, Any]:
    """Model ``m{i}``: parents m((i-1)//2) and m((i-1)//3) (diamonds, merges), files on most."""
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": f"model:m{i}@1",
        "name": f"m{i}",
        "version": "1",
    }
    if i % 5 != 4:  # every fifth model has no files: a placeholder
        digest = hashlib.sha256(f"m{i}".encode()).hexdigest()
        component["components"] = [
            {
                "type": "file",
                "name": "w.bin",
                "hashes": [{"alg": "SHA-256", "content": digest}],
                "properties": [{"name": "mbom:size", "value": "2"}],
            }
        ]
    parents = sorted({(i - 1) // 2, (i - 1) // 3}) if i else []
    component["pedigree"] = {
        "ancestors": [
            {"name": f"m{p}", "version": "1", "type": "machine-learning-model"} for p in parents
        ]
    }
    if i % 4 == 0:
        component["modelCard"] = {"modelParameters": {"datasets": [{"ref": f"dataset:d{i}@1"}]}}
    return component


def dataset(i: int) -> dict[str, Any]:
    """Dataset ``d{i}`` with a digest."""
    digest = hashlib.sha256(f"d{i}".encode()).hexdigest()
    return {
        "type": "data",
        "bom-ref": f"dataset:d{i}@1",
        "name": f"d{i}",
        "version": "1",
        "hashes": [{"alg": "SHA-256", "content": digest}],
    }


def document(components: list[dict[str, Any]]) -> dict[str, Any]:
    """A CycloneDX document of ``components``."""
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": components}


LINEAGE = document([model(i) for i in range(MODELS)] + [dataset(i) for i in range(0, MODELS, 4)])


def state(engine: Engine) -> dict[str, Any]:
    """Everything an import writes, by reference (ids and timestamps aside)."""
    with unit_of_work(engine) as session:
        ref = {a.id: f"{a.kind}:{a.name}@{a.version}" for a in session.exec(select(Artifact))}
        artifacts = {
            (ref[a.id], a.digest, str(a.manifest), a.placeholder, a.status, a.finding)
            for a in session.exec(select(Artifact))
        }
        edges = {
            (ref[e.parent_id], ref[e.child_id], e.relation) for e in session.exec(select(Edge))
        }
        closure = {
            (ref[c.ancestor_id], ref[c.descendant_id], c.depth, ref[c.via_id])
            for c in session.exec(select(LineageClosure))
        }
        assert find_inconsistencies(session) == []
        assert verify_chain(session).ok
    return {"artifacts": artifacts, "edges": edges, "closure": closure}


def import_doc(engine: Engine, doc: dict[str, Any]) -> list[str]:
    with unit_of_work(engine) as session:
        return import_cyclonedx(session, doc, actor=BOB)


def test_bulk_and_per_component_imports_write_the_same_lineage(
    engine: Engine,
    second_engine: Engine,  # noqa: F811
) -> None:
    bulk = import_doc(engine, LINEAGE)
    import_doc(second_engine, document([dataset(0)]))  # now d0 is registered: per component
    per_component = import_doc(second_engine, LINEAGE)
    assert sorted([*per_component, "d0@1"]) == bulk
    assert state(engine) == state(second_engine)
    with unit_of_work(engine) as session:
        events = session.exec(select(AuditEvent.operation)).all()
    assert events.count("lineage.add") == MODELS  # m0 links its dataset
    assert events.count("placeholder.create") == 2  # m4, m9
    assert import_doc(engine, LINEAGE) == []  # idempotent: the second time per component


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (
            lambda c: c[0]["pedigree"].update(ancestors=[{"name": "m3", "version": "1"}]),
            LineageCycle,
            "lineage would be cyclic",
        ),
        (
            lambda c: c[5]["pedigree"].update(ancestors=[{"name": "m5", "version": "1"}]),
            LineageCycle,
            "m5@1 -> m5@1",
        ),
        (
            lambda c: c[0].update(modelCard={"modelParameters": {"datasets": [{"ref": "d99"}]}}),
            InvalidInput,
            "refers to d99, which the document does not",
        ),
    ],
)
def test_a_bulk_import_that_fails_writes_nothing(
    engine: Engine, mutate: Any, error: type[Exception], message: str
) -> None:
    components = [model(i) for i in range(MODELS)] + [dataset(i) for i in range(0, MODELS, 4)]
    mutate(components)
    with pytest.raises(error, match=message):
        import_doc(engine, document(components))
    with unit_of_work(engine) as session:
        assert session.exec(select(Artifact)).all() == []
        assert session.exec(select(AuditEvent)).all() == []


def test_a_new_lineage_meets_the_importing_teams_blocks(engine: Engine) -> None:
    """A team's block on a name reaches the new versions of an all-new document too."""
    admin = Actor(user="alice", role=Role.ADMIN)
    with unit_of_work(engine) as session:
        create_team(session, actor=admin, name="vision")
        register_model(session, actor=admin, name="m0", version="0", manifest=fake_manifest("x"))
        decide(
            session,
            actor=admin,
            ref="m0@0",
            team="vision",
            verdict="block",
            reason="licence",
            all_versions=True,
        )
    vision = Actor(user="vic", role=Role.PUBLISHER, team="vision")
    with pytest.raises(PolicyViolation, match="m0@1 is blocked for team vision"), unit_of_work(
        engine
    ) as session:
        import_cyclonedx(session, LINEAGE, actor=vision)
    with unit_of_work(engine) as session:
        assert [a.name for a in session.exec(select(Artifact))] == ["m0"]
    refs = import_doc(engine, LINEAGE)  # no team: only the rules of every team apply
    assert "m1@1" in refs


def test_a_new_lineage_registers_for_the_importing_team(engine: Engine) -> None:
    admin = Actor(user="alice", role=Role.ADMIN)
    with unit_of_work(engine) as session:
        create_team(session, actor=admin, name="vision")
    vision = Actor(user="vic", role=Role.PUBLISHER, team="vision")
    with unit_of_work(engine) as session:
        import_cyclonedx(session, LINEAGE, actor=vision)
    with unit_of_work(engine) as session:
        teams = {(a.name, a.placeholder, a.team) for a in session.exec(select(Artifact))}
    assert ("m1", False, "vision") in teams
    assert ("m4", True, None) in teams  # a placeholder belongs to nobody yet
    assert ("d0", False, None) in teams  # datasets are not a team's


def test_known_malicious_content_in_a_new_lineage_is_quarantined(engine: Engine) -> None:
    """An all-new document holding a compromised model's files registers them quarantined,
    and refuses whole when it builds on them (as a registration on a tainted parent is)."""
    admin = Actor(user="alice", role=Role.ADMIN)
    copied = model(1)["components"][0]["hashes"][0]["content"]
    with unit_of_work(engine) as session:
        manifest = Manifest((ManifestEntry("w.bin", 2, copied),))
        register_model(session, actor=admin, name="evil", version="1", manifest=manifest)
        flag(session, "evil@1", actor=admin, reason="backdoor")
    with pytest.raises(PolicyViolation, match="parent m1@1 is compromised"):
        import_doc(engine, LINEAGE)
    with unit_of_work(engine) as session:
        assert [a.name for a in session.exec(select(Artifact))] == ["evil"]
    lone = model(1) | {"pedigree": {"ancestors": []}}
    assert import_doc(engine, document([model(0), lone, dataset(0)])) == ["d0@1", "m0@1", "m1@1"]
    with unit_of_work(engine) as session:
        found = {a.name: (a.status, a.finding) for a in session.exec(select(Artifact))}
        assert find_inconsistencies(session) == []
    assert found["m1"] == ("compromised", "compromised")
    assert found["m0"] == ("clean", "unscanned")
