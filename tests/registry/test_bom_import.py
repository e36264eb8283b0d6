"""CycloneDX ML-BOM import: round trip, placeholders, idempotence, clear errors."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import select

from registry.bom import export_cyclonedx, import_cyclonedx
from registry.client import LocalRegistry
from registry.db import make_engine, migrate, unit_of_work
from registry.errors import InvalidInput, PermissionDenied
from registry.identity import Actor, Role
from registry.tables import Artifact, Edge
from tests.registry.test_bom_cyclonedx import LINEAGES, assert_valid_cyclonedx

BOB = Actor(user="bob", role=Role.PUBLISHER)


def graph(engine: Engine) -> tuple[set[tuple[Any, ...]], set[tuple[str, str, str]]]:
    """Every artifact's identity and content, and every edge, by reference."""
    with unit_of_work(engine) as session:
        artifacts = session.exec(select(Artifact)).all()
        by_id = {a.id: f"{a.kind}:{a.name}@{a.version}" for a in artifacts}
        nodes = {
            (by_id[a.id], a.digest, str(a.manifest), a.publisher, a.source, a.format)
            for a in artifacts
        }
        edges = {
            (by_id[e.parent_id], by_id[e.child_id], e.relation) for e in session.exec(select(Edge))
        }
    return nodes, edges


def import_doc(engine: Engine, document: dict[str, Any], actor: Actor = BOB) -> list[str]:
    with unit_of_work(engine) as session:
        return import_cyclonedx(session, document, actor=actor)


def export(engine: Engine, ref: str) -> dict[str, Any]:
    with unit_of_work(engine) as session:
        return export_cyclonedx(session, ref)


@pytest.fixture
def second_engine(database_url: str, tmp_path: Path) -> Iterator[Engine]:
    """A second, empty, migrated registry on the same backend as ``engine``."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'other.db'}"
        created = make_engine(url)
        migrate(created)
        yield created
        created.dispose()
        return
    name = f"mbom_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    created = make_engine(
        make_url(database_url).set(database=name).render_as_string(hide_password=False)
    )
    migrate(created)
    try:
        yield created
    finally:
        created.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.mark.parametrize("lineage", sorted(LINEAGES))
def test_round_trip_into_fresh_database(
    reg: LocalRegistry, engine: Engine, second_engine: Engine, lineage: str
) -> None:
    ref = LINEAGES[lineage](reg)
    document = export(engine, ref)
    before = graph(engine)
    target = second_engine
    imported = import_doc(target, document)
    assert sorted(imported) == sorted(n[0].split(":", 1)[1] for n in before[0])
    assert graph(target) == before
    # An export of the imported graph is schema-valid and describes the same lineage.
    again = export(target, ref)
    assert_valid_cyclonedx(again)
    assert again["dependencies"] == document["dependencies"]
    assert again["metadata"]["component"] == document["metadata"]["component"] or any(
        p["value"] != "clean" for p in document["metadata"]["component"]["properties"][1:2]
    )


def test_import_is_idempotent(reg: LocalRegistry, engine: Engine, second_engine: Engine) -> None:
    document = export(engine, LINEAGES["merge"](reg))
    assert import_doc(second_engine, document) == ["acme/a@1", "b@2", "merged@1"]
    assert import_doc(second_engine, document) == []
    with unit_of_work(second_engine) as session:
        assert len(session.exec(select(Edge)).all()) == 2


def test_components_without_files_become_placeholders_and_are_filled_later(
    reg: LocalRegistry, engine: Engine, second_engine: Engine
) -> None:
    document = export(engine, LINEAGES["merge"](reg))
    stripped = copy.deepcopy(document)
    for component in stripped["components"]:
        component.pop("components", None)
    import_doc(second_engine, stripped)
    with unit_of_work(second_engine) as session:
        placeholders = {a.name: (a.placeholder, a.manifest) for a in session.exec(select(Artifact))}
    assert placeholders["b"] == (True, None)
    assert placeholders["merged"][0] is False
    assert import_doc(second_engine, document) == ["acme/a@1", "b@2"]
    assert graph(second_engine) == graph(engine)


def test_import_refuses_other_content_under_a_registered_version(
    reg: LocalRegistry, engine: Engine, second_engine: Engine
) -> None:
    document = export(engine, LINEAGES["merge"](reg))
    import_doc(second_engine, document)
    altered = copy.deepcopy(document)
    altered["components"][1]["components"][0]["hashes"][0]["content"] = "0" * 64
    altered["components"][1]["hashes"][0]["content"] = "1" * 64
    with pytest.raises(InvalidInput, match=r"components\[1\].hashes: the SHA-256"):
        import_doc(second_engine, altered)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(bomFormat="SPDX"), "bomFormat is not 'CycloneDX'"),
        (lambda d: d.pop("specVersion"), "specVersion is missing"),
        (lambda d: d["components"][0].update(name=" "), r"components\[0\].name is missing"),
        (
            lambda d: d["components"][0]["hashes"][0].update(content="xyz"),
            r"components\[0\].hashes\[0\].content is not a SHA-256",
        ),
        (
            lambda d: d["metadata"]["component"]["pedigree"]["ancestors"][0]["properties"][
                1
            ].update(value="telepathy"),
            "unknown relation 'telepathy'",
        ),
        (
            lambda d: d["metadata"]["component"]["modelCard"].update(
                modelParameters={"datasets": [{"ref": "dataset:nope@1"}]}
            ),
            "refers to dataset:nope@1, which the document",
        ),
        (lambda d: d.update(components="x"), "components is not a list"),
    ],
)
def test_invalid_documents_name_the_bad_field(
    reg: LocalRegistry, engine: Engine, second_engine: Engine, mutate: Any, message: str
) -> None:
    document = copy.deepcopy(export(engine, LINEAGES["merge"](reg)))
    mutate(document)
    with pytest.raises(InvalidInput, match=message):
        import_doc(second_engine, document)
    with unit_of_work(second_engine) as session:
        assert session.exec(select(Artifact)).all() == []


def test_readers_may_not_import(reg: LocalRegistry, engine: Engine, second_engine: Engine) -> None:
    document = export(engine, LINEAGES["merge"](reg))
    with pytest.raises(PermissionDenied):
        import_doc(second_engine, document, actor=Actor(user="eve", role=Role.READER))
