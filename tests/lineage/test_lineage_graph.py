"""Building the lineage graph, cycle checks and shortest-path walks."""

from __future__ import annotations

from typing import Any

import networkx as nx
import pytest

from lineage import (
    ConflictingEdgeError,
    CycleError,
    Relation,
    UnknownNodeError,
    check_new_parents,
    depth_of,
    lineage_graph,
    shortest_paths_from,
    topological_order,
)

FT = Relation.FINETUNE

# a -> b -> d and a -> c -> d: two equally short paths to d.
DIAMOND = [("a", "b", "finetune"), ("a", "c", "finetune"), ("b", "d", "merge"), ("c", "d", "merge")]
# Equally short paths whose breadth-first discovery order differs from the
# smallest-parent rule: x is reached from e (found first) and from d (smaller).
CROSSED = [
    ("a", "b", "finetune"),
    ("a", "c", "finetune"),
    ("b", "e", "finetune"),
    ("c", "d", "finetune"),
    ("e", "x", "merge"),
    ("d", "x", "merge"),
]


def _edges(graph: nx.DiGraph) -> set[tuple[Any, Any, Relation]]:
    return set(graph.edges(data="relation"))


@pytest.mark.parametrize(
    ("edges", "nodes", "expected_nodes", "expected_edges"),
    [
        pytest.param([], (), set(), set(), id="empty"),
        pytest.param([], (1, 2), {1, 2}, set(), id="isolated-nodes"),
        pytest.param([(1, 2, "finetune")], (), {1, 2}, {(1, 2, FT)}, id="string-relation"),
        pytest.param(
            [(1, 2, Relation.ADAPTER)], (3,), {1, 2, 3}, {(1, 2, Relation.ADAPTER)}, id="enum"
        ),
        pytest.param(
            [(1, 2, "finetune"), (1, 2, FT)], (), {1, 2}, {(1, 2, FT)}, id="same-edge-twice"
        ),
        pytest.param(
            [(1, 3, "merge"), (2, 3, "merge"), (4, 3, "trained_on")],
            (),
            {1, 2, 3, 4},
            {(1, 3, Relation.MERGE), (2, 3, Relation.MERGE), (4, 3, Relation.TRAINED_ON)},
            id="merge-and-dataset",
        ),
    ],
)
def test_lineage_graph_builds_edges_with_relations(
    edges: list[tuple[int, int, str]],
    nodes: tuple[int, ...],
    expected_nodes: set[int],
    expected_edges: set[tuple[int, int, Relation]],
) -> None:
    graph = lineage_graph(edges, nodes=nodes)
    assert set(graph.nodes) == expected_nodes
    assert _edges(graph) == expected_edges
    assert all(type(relation) is Relation for _, _, relation in graph.edges(data="relation"))


@pytest.mark.parametrize(
    ("edges", "error", "match"),
    [
        pytest.param([("a", "a", "finetune")], CycleError, r"^lineage cycle: a -> a$", id="self"),
        pytest.param(
            [("a", "b", "finetune"), ("b", "a", "head")],
            CycleError,
            r"^lineage cycle: a -> b -> a$",
            id="two-cycle",
        ),
        pytest.param(
            [("a", "b", "finetune"), ("b", "c", "head"), ("c", "a", "distill")],
            CycleError,
            r"^lineage cycle: a -> b -> c -> a$",
            id="three-cycle",
        ),
        pytest.param(
            [("a", "b", "finetune"), ("a", "b", "quantized")],
            ConflictingEdgeError,
            r"^edge a -> b given with different relations: finetune, quantized$",
            id="conflicting-relations",
        ),
        pytest.param([("a", "b", "forked")], ValueError, r"'forked' is not a valid", id="unknown"),
    ],
)
def test_lineage_graph_refuses_bad_edges(
    edges: list[tuple[str, str, str]], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        lineage_graph(edges)


def test_cycle_error_carries_the_cycle() -> None:
    with pytest.raises(CycleError, match="b -> c") as caught:
        lineage_graph([("b", "c", "finetune"), ("c", "b", "finetune")])
    assert caught.value.cycle in {("b", "c", "b"), ("c", "b", "c")}
    assert "drop one of these edges" in caught.value.diagnostics()


@pytest.mark.parametrize(
    ("child", "parents"),
    [
        pytest.param("new", ["d"], id="new-child"),
        pytest.param("new", ["unknown"], id="unknown-parent"),
        pytest.param("d", ["a"], id="existing-ancestor"),
        pytest.param("d", ["new"], id="new-parent"),
        pytest.param("c", ["b"], id="sibling"),
        pytest.param("a", [], id="no-parents"),
    ],
)
def test_check_new_parents_accepts_acyclic_additions(child: str, parents: list[str]) -> None:
    check_new_parents(lineage_graph(DIAMOND), child, parents)


@pytest.mark.parametrize(
    ("child", "parents", "match"),
    [
        pytest.param("d", ["d"], r"^lineage cycle: d -> d$", id="self-parent-known"),
        pytest.param("new", ["a", "new"], r"^lineage cycle: new -> new$", id="self-parent-new"),
        pytest.param("a", ["b"], r"^lineage cycle: a -> b -> a$", id="child-as-parent"),
        pytest.param("a", ["d"], r"^lineage cycle: a -> b -> d -> a$", id="grandchild"),
        pytest.param("b", ["c", "d"], r"^lineage cycle: b -> d -> b$", id="second-parent"),
    ],
)
def test_check_new_parents_refuses_cycles(child: str, parents: list[str], match: str) -> None:
    with pytest.raises(CycleError, match=match):
        check_new_parents(lineage_graph(DIAMOND), child, parents)


def test_check_new_parents_accepts_a_one_shot_iterator() -> None:
    with pytest.raises(CycleError, match=r"^lineage cycle: a -> b -> a$"):
        check_new_parents(lineage_graph(DIAMOND), "a", iter(["new", "b"]))


@pytest.mark.parametrize(
    ("edges", "start", "options", "expected"),
    [
        pytest.param(DIAMOND, "d", {}, {}, id="leaf-down"),
        pytest.param(DIAMOND, "a", {"direction": "up"}, {}, id="root-up"),
        pytest.param(
            DIAMOND,
            "a",
            {},
            {"b": ("a", "b"), "c": ("a", "c"), "d": ("a", "b", "d")},
            id="diamond-smallest-parent",
        ),
        pytest.param(
            DIAMOND,
            "d",
            {"direction": "up"},
            {"b": ("b", "d"), "c": ("c", "d"), "a": ("a", "b", "d")},
            id="diamond-up",
        ),
        pytest.param(
            CROSSED,
            "a",
            {},
            {
                "b": ("a", "b"),
                "c": ("a", "c"),
                "e": ("a", "b", "e"),
                "d": ("a", "c", "d"),
                "x": ("a", "c", "d", "x"),
            },
            id="crossed-smallest-parent",
        ),
        pytest.param(DIAMOND, "a", {"max_depth": 0}, {}, id="depth-0"),
        pytest.param(
            DIAMOND, "a", {"max_depth": 1}, {"b": ("a", "b"), "c": ("a", "c")}, id="depth-1"
        ),
        pytest.param(
            DIAMOND,
            "d",
            {"direction": "up", "max_depth": 1},
            {"b": ("b", "d"), "c": ("c", "d")},
            id="depth-1-up",
        ),
        pytest.param(
            DIAMOND,
            "a",
            {"follow": lambda relation: relation is not Relation.MERGE},
            {"b": ("a", "b"), "c": ("a", "c")},
            id="follow",
        ),
        pytest.param(
            [("a", "b", "finetune"), ("b", "c", "finetune"), ("a", "c", "evaluated_on")],
            "a",
            {"follow": lambda relation: relation is not Relation.EVALUATED_ON},
            {"b": ("a", "b"), "c": ("a", "b", "c")},
            id="follow-takes-longer-path",
        ),
    ],
)
def test_shortest_paths_from(
    edges: list[tuple[str, str, str]], start: str, options: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert shortest_paths_from(lineage_graph(edges), start, **options) == expected


def test_shortest_paths_from_does_not_depend_on_edge_order() -> None:
    forward = shortest_paths_from(lineage_graph(CROSSED), "a")
    backward = shortest_paths_from(lineage_graph(list(reversed(CROSSED))), "a")
    assert list(forward.items()) == list(backward.items())


@pytest.mark.parametrize(
    ("start", "options", "error", "match"),
    [
        pytest.param("a", {"direction": "sideways"}, ValueError, "direction must be", id="dir"),
        pytest.param("a", {"max_depth": -1}, ValueError, "max_depth must be 0 or more", id="neg"),
        pytest.param("zz", {}, UnknownNodeError, r"^node zz is not in the lineage", id="unknown"),
    ],
)
def test_shortest_paths_from_refuses_bad_arguments(
    start: str, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        shortest_paths_from(lineage_graph(DIAMOND), start, **options)


@pytest.mark.parametrize(
    ("edges", "nodes", "expected"),
    [
        pytest.param(DIAMOND, None, ["a", "b", "c", "d"], id="diamond"),
        pytest.param(DIAMOND, ["d", "c"], ["c", "d"], id="subset"),
        pytest.param(DIAMOND, ["d", "zz"], ["d"], id="unknown-ignored"),
        pytest.param(
            [("c", "a", "finetune"), ("b", "a", "merge")], None, ["b", "c", "a"], id="ties-by-id"
        ),
        pytest.param([], None, [], id="empty"),
    ],
)
def test_topological_order(
    edges: list[tuple[str, str, str]], nodes: list[str] | None, expected: list[str]
) -> None:
    assert topological_order(lineage_graph(edges), nodes) == expected


def test_topological_order_refuses_a_cyclic_graph() -> None:
    graph = nx.DiGraph([("a", "b"), ("b", "a")])
    with pytest.raises(CycleError, match=r"^lineage cycle: (a -> b -> a|b -> a -> b)$"):
        topological_order(graph)


@pytest.mark.parametrize(
    ("path", "depth"),
    [
        pytest.param(("a",), 0, id="one"),
        pytest.param(("a", "b"), 1, id="two"),
        pytest.param((1, 2, 3, 4), 3, id="four"),
    ],
)
def test_depth_of(path: tuple[Any, ...], depth: int) -> None:
    assert depth_of(path) == depth
