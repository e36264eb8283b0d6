"""The bounded neighbourhood the lineage picture draws, read from a real registry
(SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from lineage import Relation
from registry.client import LocalRegistry
from registry.db import unit_of_work
from registry.errors import InvalidInput, NotFound
from registry.service.lineage_view import (
    Hidden,
    Link,
    Neighbourhood,
    neighbourhood,
)
from tests.conftest import fake_manifest


def model(reg: LocalRegistry, name: str, *parents: str, relation: Relation | None = None,
          datasets: list[tuple[str, Relation]] | None = None) -> None:
    reg.register_model(name=name, version="1", manifest=fake_manifest(name),
                       parents=list(parents), relation=relation, datasets=datasets or [])


def around(engine: Engine, ref: str, **options: object) -> Neighbourhood:
    with unit_of_work(engine) as session:
        return neighbourhood(session, ref, **options)  # type: ignore[arg-type]


def layers(view: Neighbourhood) -> dict[str, int]:
    return {r.ref: r.layer for r in view.relatives}


@pytest.fixture
def fan(reg: LocalRegistry) -> LocalRegistry:
    """data@1 -trained_on-> base@1 -> c00..c29@1; c00 -> g@1 -> gg@1 -> ggg@1 -> gggg@1."""
    reg.register_dataset(name="data", version="1", digest="sha256:" + "d" * 64)
    model(reg, "base", datasets=[("data@1", Relation.TRAINED_ON)])
    for i in range(30):
        model(reg, f"c{i:02}", "base@1")
    model(reg, "g", "c00@1", relation=Relation.ADAPTER)
    model(reg, "gg", "g@1")
    model(reg, "ggg", "gg@1")
    model(reg, "gggg", "ggg@1")
    reg.flag("base@1", reason="backdoor")
    return reg


@pytest.mark.usefixtures("fan")
def test_a_fan_out_is_cut_to_the_first_children_and_the_rest_counted(engine: Engine) -> None:
    view = around(engine, "base@1", fanout=5)
    assert view.focus == "base@1"
    assert (view.ancestors, view.descendants) == (1, 34)
    assert layers(view) == {
        "data@1": -1, "base@1": 0, "c00@1": 1, "c01@1": 1, "c02@1": 1, "c03@1": 1, "c04@1": 1,
        "g@1": 2, "gg@1": 3,
    }
    statuses = {r.ref: r.status for r in view.relatives}
    assert statuses["base@1"] == "compromised"
    assert statuses["gg@1"] == "infected"
    assert {r.ref: r.kind for r in view.relatives}["data@1"] == "dataset"
    assert Link("data@1", "base@1", "trained_on") in view.links
    assert Link("c00@1", "g@1", "adapter") in view.links
    # base: 34 descendants, 7 drawn below it -> 27 more; gg is at the depth limit: 2 more.
    assert set(view.hidden) == {
        Hidden("base@1", "down", 27, expanded=False),
        Hidden("gg@1", "down", 2, expanded=False),
    }


@pytest.mark.usefixtures("fan")
def test_expanding_a_node_shows_its_children_up_to_the_bound(engine: Engine) -> None:
    view = around(engine, "base@1", fanout=5, expand=["base@1"])
    children = [ref for ref, layer in layers(view).items() if layer == 1]
    assert len(children) == 30
    assert [h for h in view.hidden if h.ref == "base@1"] == []


@pytest.mark.usefixtures("fan")
def test_a_level_is_capped_however_many_parents_it_has(engine: Engine) -> None:
    view = around(engine, "base@1", fanout=10, level_cap=4)
    assert sum(1 for layer in layers(view).values() if layer == 1) == 4
    assert Hidden("base@1", "down", 34 - 4 - 2, expanded=False) in view.hidden


def test_ancestors_are_drawn_above_with_merges_and_datasets(
    engine: Engine, reg: LocalRegistry
) -> None:
    reg.register_dataset(name="corpus", version="1", digest="sha256:" + "c" * 64)
    model(reg, "a", datasets=[("corpus@1", Relation.TRAINED_ON)])
    model(reg, "b")
    model(reg, "m", "a@1", "b@1", relation=Relation.MERGE)
    model(reg, "leaf", "m@1", relation=Relation.QUANTIZED)
    view = around(engine, "leaf@1", up=2)
    assert layers(view) == {"leaf@1": 0, "m@1": -1, "a@1": -2, "b@1": -2}
    assert Link("a@1", "m@1", "merge") in view.links
    assert Link("m@1", "leaf@1", "quantized") in view.links
    assert view.hidden == (Hidden("a@1", "up", 1, expanded=False),)
    assert (view.ancestors, view.descendants) == (4, 0)


def test_a_merge_below_is_linked_to_both_drawn_parents(
    engine: Engine, reg: LocalRegistry
) -> None:
    model(reg, "base")
    model(reg, "x", "base@1")
    model(reg, "y", "base@1")
    model(reg, "xy", "x@1", "y@1", relation=Relation.MERGE)
    view = around(engine, "base@1")
    assert layers(view)["xy@1"] == 2
    assert {Link("x@1", "xy@1", "merge"), Link("y@1", "xy@1", "merge")} <= set(view.links)
    assert view.hidden == ()


@pytest.mark.usefixtures("fan")
def test_the_neighbourhood_is_deterministic(engine: Engine) -> None:
    assert around(engine, "c00@1") == around(engine, "c00@1")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"up": 7}, "up must be between 0 and 6"),
        ({"down": -1}, "down must be between 0 and 6"),
        ({"expand": [f"m{i}@1" for i in range(9)]}, "at most 8 nodes"),
    ],
)
@pytest.mark.usefixtures("fan")
def test_bounds_are_refused_with_a_clear_error(
    engine: Engine, options: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        around(engine, "base@1", **options)


@pytest.mark.usefixtures("fan")
def test_unknown_versions_are_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        around(engine, "nope@1")
    with pytest.raises(InvalidInput, match="cannot expand nope@1"):
        around(engine, "base@1", expand=["nope@1"])
