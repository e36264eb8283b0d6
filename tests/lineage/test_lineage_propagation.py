"""Infection propagation, infection paths and effective statuses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import pytest

from lineage import (
    DATASET_USES,
    DEFAULT_PROPAGATION,
    MODEL_RELATIONS,
    CycleError,
    NoInfectionPathError,
    Reach,
    Relation,
    Status,
    effective_status,
    infection_path,
    lineage_graph,
    propagate_infection,
    recompute_statuses,
)

# base -> ft -> app, base -> q (quantized) -> app2, data -(trained_on)-> ft,
# bench -(evaluated_on)-> app, other -> app (merge): app has two parents.
LINEAGE = [
    ("base", "ft", "finetune"),
    ("ft", "app", "merge"),
    ("other", "app", "merge"),
    ("base", "q", "quantized"),
    ("q", "app2", "adapter"),
    ("data", "ft", "trained_on"),
    ("bench", "app", "evaluated_on"),
]
NO_QUANTIZED = {Relation.QUANTIZED: False}


def _summary(reaches: Mapping[Any, Mapping[Any, Reach]]) -> dict[Any, dict[Any, tuple[int, Any]]]:
    return {
        node: {source: (reach.depth, reach.via) for source, reach in found.items()}
        for node, found in reaches.items()
    }


@pytest.mark.parametrize(
    ("compromised", "policy", "expected"),
    [
        pytest.param(set(), DEFAULT_PROPAGATION, {}, id="nothing-flagged"),
        pytest.param(
            {"base"},
            DEFAULT_PROPAGATION,
            {
                "ft": {"base": (1, "base")},
                "q": {"base": (1, "base")},
                "app": {"base": (2, "ft")},
                "app2": {"base": (2, "q")},
            },
            id="base",
        ),
        pytest.param(
            {"data"},
            DEFAULT_PROPAGATION,
            {"ft": {"data": (1, "data")}, "app": {"data": (2, "ft")}},
            id="training-data",
        ),
        pytest.param({"bench"}, DEFAULT_PROPAGATION, {}, id="evaluation-data-never"),
        pytest.param({"app"}, DEFAULT_PROPAGATION, {}, id="leaf"),
        pytest.param(
            {"base", "ft"},
            DEFAULT_PROPAGATION,
            {
                "ft": {"base": (1, "base")},
                "q": {"base": (1, "base")},
                "app": {"base": (2, "ft"), "ft": (1, "ft")},
                "app2": {"base": (2, "q")},
            },
            id="compromised-below-compromised",
        ),
        pytest.param(
            {"base"},
            NO_QUANTIZED,
            {"ft": {"base": (1, "base")}, "app": {"base": (2, "ft")}},
            id="policy-without-quantized",
        ),
        pytest.param(
            {"bench"}, NO_QUANTIZED, {}, id="relations-missing-from-policy-follow-default"
        ),
        pytest.param(
            {"bench"},
            {Relation.EVALUATED_ON: True},
            {"app": {"bench": (1, "bench")}},
            id="policy-enabling-evaluated-on",
        ),
        pytest.param(
            {"base", "data", "other", "bench"},
            dict.fromkeys(Relation, False),
            {},
            id="nothing-propagates",
        ),
        pytest.param(
            {"base"},
            {"finetune": False},
            {"q": {"base": (1, "base")}, "app2": {"base": (2, "q")}},
            id="policy-with-string-keys",
        ),
    ],
)
def test_propagate_infection(
    compromised: set[str], policy: Mapping[Relation, bool], expected: dict[str, Any]
) -> None:
    reaches = propagate_infection(lineage_graph(LINEAGE), compromised, policy=policy)
    assert _summary(reaches) == expected
    for node, found in reaches.items():
        assert all(reach.source == source for source, reach in found.items()), node


@pytest.mark.parametrize(
    ("edges", "node", "expected_via"),
    [
        pytest.param(
            [
                ("s", "b", "finetune"),
                ("s", "a", "finetune"),
                ("a", "x", "merge"),
                ("b", "x", "merge"),
            ],
            "x",
            "a",
            id="smallest-parent-wins-a-tie",
        ),
        pytest.param(
            [
                ("s", "a", "finetune"),
                ("a", "b", "finetune"),
                ("b", "x", "merge"),
                ("s", "z", "finetune"),
                ("z", "x", "merge"),
            ],
            "x",
            "z",
            id="shorter-path-beats-smaller-parent",
        ),
    ],
)
def test_propagate_infection_picks_the_shortest_path(
    edges: list[tuple[str, str, str]], node: str, expected_via: str
) -> None:
    assert propagate_infection(lineage_graph(edges), {"s"})[node]["s"].via == expected_via


def test_propagate_infection_refuses_a_cyclic_graph() -> None:
    graph = nx.DiGraph()
    graph.add_edge("a", "b", relation=Relation.FINETUNE)
    graph.add_edge("b", "a", relation=Relation.FINETUNE)
    with pytest.raises(CycleError, match="lineage cycle"):
        propagate_infection(graph, {"a"})


@pytest.mark.parametrize(
    ("before", "after", "within", "inherit_within"),
    [
        pytest.param({"base"}, {"base", "ft"}, {"ft", "app"}, False, id="flag"),
        pytest.param({"base", "ft"}, {"base"}, {"ft", "app"}, False, id="unflag"),
        pytest.param({"base", "ft"}, {"base"}, {"ft", "app"}, True, id="unflag-stale-within"),
        pytest.param(set(), {"other"}, {"other", "app"}, True, id="flag-stale-within"),
        pytest.param({"base"}, set(), {"base", "ft", "q", "app", "app2"}, True, id="unflag-root"),
    ],
)
def test_propagate_infection_within_equals_a_full_recomputation(
    before: set[str], after: set[str], within: set[str], inherit_within: bool
) -> None:
    graph = lineage_graph(LINEAGE)
    stored = propagate_infection(graph, before)
    inherited = stored if inherit_within else {n: r for n, r in stored.items() if n not in within}
    partial = propagate_infection(graph, after, within=within, inherited=inherited)
    full = propagate_infection(graph, after)
    assert set(partial) <= within
    assert {**{n: r for n, r in stored.items() if n not in within}, **partial} == full


@pytest.mark.parametrize(
    ("node", "source", "expected"),
    [
        pytest.param("ft", "base", ("base", "ft"), id="child"),
        pytest.param("app", "base", ("base", "ft", "app"), id="grandchild"),
        pytest.param("app", "data", ("data", "ft", "app"), id="dataset"),
        pytest.param("app2", "base", ("base", "q", "app2"), id="quantized"),
        pytest.param("base", "base", ("base",), id="source-itself"),
    ],
)
def test_infection_path(node: str, source: str, expected: tuple[str, ...]) -> None:
    reaches = propagate_infection(lineage_graph(LINEAGE), {"base", "data"})
    assert infection_path(reaches, node, source) == expected


@pytest.mark.parametrize(
    ("node", "source", "match"),
    [
        pytest.param("app", "bench", r"^bench does not infect app$", id="not-a-source"),
        pytest.param("other", "base", r"^base does not infect other$", id="clean-node"),
        pytest.param("nowhere", "base", r"^base does not infect nowhere$", id="unknown-node"),
    ],
)
def test_infection_path_refuses_what_is_not_infected(node: str, source: str, match: str) -> None:
    reaches = propagate_infection(lineage_graph(LINEAGE), {"base", "data", "bench"})
    with pytest.raises(NoInfectionPathError, match=match):
        infection_path(reaches, node, source)


CO, IN, CF, CL, OK = (
    Status.COMPROMISED,
    Status.INFECTED,
    Status.CONFIRMED,
    Status.CLEARED,
    Status.CLEAN,
)


@pytest.mark.parametrize(
    ("compromised", "sources", "cleared", "confirmed", "expected"),
    [
        pytest.param(set(), set(), set(), set(), OK, id="clean"),
        pytest.param({"m"}, set(), set(), set(), CO, id="compromised"),
        pytest.param({"m"}, {"s"}, {("m", "s")}, {("m", "s")}, CO, id="compromised-beats-all"),
        pytest.param(set(), {"s"}, set(), set(), IN, id="infected"),
        pytest.param(set(), {"s"}, {("m", "s")}, set(), CL, id="cleared"),
        pytest.param(set(), {"s"}, set(), {("m", "s")}, CF, id="confirmed"),
        pytest.param(set(), {"s"}, {("m", "s")}, {("m", "s")}, CF, id="confirmed-beats-cleared"),
        pytest.param(set(), {"s", "t"}, {("m", "s")}, set(), IN, id="partial-clearance"),
        pytest.param(set(), {"s", "t"}, {("m", "s"), ("m", "t")}, set(), CL, id="full-clearance"),
        pytest.param(set(), {"s", "t"}, {("m", "s")}, {("m", "t")}, CF, id="confirmed-other"),
        pytest.param(set(), set(), {("m", "s")}, {("m", "s")}, OK, id="stale-pairs-ignored"),
        pytest.param(set(), {"s"}, {("x", "s")}, {("x", "s")}, IN, id="other-nodes-pairs"),
        pytest.param(set(), {"s"}, {("m", "t")}, {("m", "t")}, IN, id="other-source-pairs"),
    ],
)
def test_effective_status(
    compromised: set[str],
    sources: set[str],
    cleared: set[tuple[str, str]],
    confirmed: set[tuple[str, str]],
    expected: Status,
) -> None:
    status = effective_status(
        "m", compromised=compromised, sources=sources, cleared=cleared, confirmed=confirmed
    )
    assert status is expected


@pytest.mark.parametrize(
    ("compromised", "cleared", "confirmed", "policy", "expected"),
    [
        pytest.param(set(), [], [], DEFAULT_PROPAGATION, {}, id="all-clean"),
        pytest.param(
            {"base"},
            [],
            [],
            DEFAULT_PROPAGATION,
            {"base": CO, "ft": IN, "q": IN, "app": IN, "app2": IN},
            id="base-flagged",
        ),
        pytest.param(
            {"base", "data"},
            [("ft", "base")],
            [("app2", "base")],
            DEFAULT_PROPAGATION,
            {"base": CO, "data": CO, "ft": IN, "q": IN, "app": IN, "app2": CF},
            id="clearance-of-one-source-of-two",
        ),
        pytest.param(
            {"base", "data"},
            [("ft", "base"), ("ft", "data"), ("q", "base")],
            [],
            DEFAULT_PROPAGATION,
            {"base": CO, "data": CO, "ft": CL, "q": CL, "app": IN, "app2": IN},
            id="clearance-does-not-reach-descendants",
        ),
        pytest.param(
            {"base"},
            [],
            [],
            NO_QUANTIZED,
            {"base": CO, "ft": IN, "app": IN},
            id="custom-policy",
        ),
        pytest.param({"bench"}, [], [], DEFAULT_PROPAGATION, {"bench": CO}, id="evaluated-on"),
    ],
)
def test_recompute_statuses(
    compromised: set[str],
    cleared: list[tuple[str, str]],
    confirmed: list[tuple[str, str]],
    policy: Mapping[Relation, bool],
    expected: dict[str, Status],
) -> None:
    graph = lineage_graph(LINEAGE)
    statuses = recompute_statuses(
        graph, compromised, cleared=cleared, confirmed=confirmed, policy=policy
    )
    assert statuses == {node: expected.get(node, OK) for node in graph.nodes}


@pytest.mark.parametrize(
    ("status", "tainted"),
    [(CO, True), (IN, True), (CF, True), (CL, False), (OK, False)],
)
def test_status_is_tainted(status: Status, tainted: bool) -> None:
    assert status.is_tainted is tainted


@pytest.mark.parametrize("relation", list(Relation))
def test_relations_are_either_model_or_dataset_edges(relation: Relation) -> None:
    assert (relation in MODEL_RELATIONS) != (relation in DATASET_USES)
    assert relation.is_dataset_use is (relation in DATASET_USES)
    assert DEFAULT_PROPAGATION[relation] is (relation is not Relation.EVALUATED_ON)


def test_default_propagation_is_read_only() -> None:
    with pytest.raises(TypeError):
        DEFAULT_PROPAGATION[Relation.MERGE] = False  # type: ignore[index]
