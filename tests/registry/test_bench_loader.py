"""The benchmark's bulk loader writes exactly what the service writes for the same hub."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from benchmarks import bulkload
from benchmarks.hubgen import HubShape, generate, summarize
from registry.client import LocalRegistry
from registry.db import make_engine, migrate
from registry.identity import Actor, Role

ACTOR = Actor(user="bench", role=Role.ADMIN)


@pytest.fixture
def bulk_engine(
    engine: Engine, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A second empty registry on the same backend as ``engine``, for the bulk path."""
    if engine.dialect.name == "sqlite":
        created = make_engine(f"sqlite:///{tmp_path_factory.mktemp('bulk') / 'bulk.db'}")
        migrate(created)
        yield created
        created.dispose()
        return
    template = request.getfixturevalue("pg_template")
    url = engine.url.render_as_string(hide_password=False)
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = f"mbom_bulk_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {template}"))
    created = make_engine(make_url(url).set(database=name).render_as_string(hide_password=False))
    try:
        yield created
    finally:
        created.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_generator_is_deterministic_and_hub_shaped() -> None:
    first, second = generate(3000, seed=5), generate(3000, seed=5)
    assert first == second
    assert generate(3000, seed=6) != first
    summary = summarize(first, closure=True)
    assert summary.max_depth <= 8
    assert 0.01 < summary.merges / summary.models < 0.06
    assert 0.03 < summary.deployed_versions / summary.models < 0.07
    assert summary.top_bases[0][1] > summary.models // 10


@pytest.mark.parametrize(
    "shape",
    [HubShape(), HubShape(merge_rate=0.3, root_parent_rate=0.2, fine_tuned_on_rate=0.2)],
    ids=["hub", "merge-heavy"],
)
def test_bulk_load_equals_registering_through_the_service(
    engine: Engine, bulk_engine: Engine, shape: HubShape
) -> None:
    hub = generate(300, seed=11, shape=shape)
    service, bulk = LocalRegistry(engine, ACTOR), LocalRegistry(bulk_engine, ACTOR)
    bulkload.create_teams(service, hub)
    bulkload.create_teams(bulk, hub)

    bulkload.load_through_service(service, hub, 0, len(hub))
    counts = bulkload.bulk_load(bulk_engine, hub, len(hub), actor=ACTOR)

    assert counts.artifacts == len(hub)
    assert bulkload.differences(engine, bulk_engine) == []
    assert bulk.verify_chain().ok
    assert bulk.find_inconsistencies() == []


def test_service_registrations_continue_a_bulk_loaded_registry(
    engine: Engine, bulk_engine: Engine
) -> None:
    hub = generate(200, seed=3)
    service, bulk = LocalRegistry(engine, ACTOR), LocalRegistry(bulk_engine, ACTOR)
    bulkload.create_teams(service, hub)
    bulkload.create_teams(bulk, hub)
    bulkload.load_through_service(service, hub, 0, 150)
    bulkload.load_through_service(service, hub, 150, len(hub))

    bulkload.bulk_load(bulk_engine, hub, 150, actor=ACTOR)
    bulkload.load_through_service(bulk, hub, 150, len(hub))

    assert bulkload.differences(engine, bulk_engine) == []
    assert bulk.verify_chain().ok
