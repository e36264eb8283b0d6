"""Property tests on random lineage DAGs against independent reference answers.

A DAG is drawn by only adding edges from a lower to a higher index, then the
indices are relabelled by a random permutation (so ids do not follow the
topological order) and the edges are given in a random order.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from lineage import (
    DEFAULT_PROPAGATION,
    Reach,
    Relation,
    Status,
    infection_path,
    lineage_graph,
    propagate_infection,
    recompute_statuses,
    shortest_paths_from,
)

# No example database: the tests leave no files behind, and a deadline would
# only measure how busy the machine is.
SETTINGS = settings(max_examples=200, deadline=None, database=None)
Policy = Mapping[Relation, bool]
RELATIONS = list(Relation)


@dataclass(frozen=True)
class Lineage:
    """A random DAG and a random set of compromised nodes on it."""

    graph: nx.DiGraph
    compromised: frozenset[int]


@st.composite
def dags(draw: st.DrawFn, *, max_nodes: int = 10) -> nx.DiGraph:
    size = draw(st.integers(min_value=1, max_value=max_nodes))
    labels = draw(st.permutations(range(size)))
    pairs = [(low, high) for low in range(size) for high in range(low + 1, size)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    edges = [(labels[low], labels[high], draw(st.sampled_from(RELATIONS))) for low, high in chosen]
    return lineage_graph(edges, nodes=labels)


@st.composite
def lineages(draw: st.DrawFn) -> Lineage:
    graph = draw(dags())
    compromised = draw(st.frozensets(st.sampled_from(sorted(graph.nodes))))
    return Lineage(graph, compromised)


policies = st.one_of(
    st.just(DEFAULT_PROPAGATION),
    st.dictionaries(st.sampled_from(RELATIONS), st.booleans()),
)


def _propagates(relation: Relation, policy: Policy) -> bool:
    if relation in policy:
        return policy[relation]
    return relation is not Relation.EVALUATED_ON


def _propagating_subgraph(graph: nx.DiGraph, policy: Policy) -> nx.DiGraph:
    sub = nx.DiGraph()
    sub.add_nodes_from(graph.nodes)
    sub.add_edges_from(
        (parent, child)
        for parent, child, relation in graph.edges(data="relation")
        if _propagates(relation, policy)
    )
    return sub


def reference_reaches(
    graph: nx.DiGraph, compromised: Collection[int], policy: Policy
) -> dict[int, dict[int, tuple[int, int]]]:
    """node -> source -> (depth, via), from networkx shortest path lengths.

    ``via`` is the smallest parent one step closer to the source.
    """
    sub = _propagating_subgraph(graph, policy)
    expected: dict[int, dict[int, tuple[int, int]]] = {}
    for source in compromised:
        distance = nx.single_source_shortest_path_length(sub, source)
        for node, depth in distance.items():
            if node == source:
                continue
            via = min(p for p in sub.predecessors(node) if distance.get(p) == depth - 1)
            expected.setdefault(node, {})[source] = (depth, via)
    return expected


def _summary(reaches: Mapping[Any, Mapping[Any, Reach]]) -> dict[Any, dict[Any, tuple[int, Any]]]:
    return {
        node: {source: (reach.depth, reach.via) for source, reach in found.items()}
        for node, found in reaches.items()
    }


@SETTINGS
@given(lineages(), policies)
def test_propagation_matches_the_reference(lin: Lineage, policy: Policy) -> None:
    reaches = propagate_infection(lin.graph, lin.compromised, policy=policy)
    assert _summary(reaches) == reference_reaches(lin.graph, lin.compromised, policy)
    for node, found in reaches.items():
        assert list(found) == sorted(found), node
        assert all(reach.source == source for source, reach in found.items())


def _incremental(
    graph: nx.DiGraph, before: frozenset[int], after: frozenset[int], changed: int
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    stored = propagate_infection(graph, before)
    within = nx.descendants(graph, changed) | {changed}
    rest = {node: found for node, found in stored.items() if node not in within}
    partial = propagate_infection(graph, after, within=within, inherited=rest)
    # What the registry stores may also still hold the old rows of ``within``.
    stale = propagate_infection(graph, after, within=within, inherited=stored)
    assert set(partial) <= within
    assert stale == partial
    return {**rest, **partial}, propagate_infection(graph, after)


@SETTINGS
@given(lineages(), st.data())
def test_flag_recomputes_only_descendants(lin: Lineage, data: st.DataObject) -> None:
    flagged = data.draw(st.sampled_from(sorted(lin.graph.nodes)))
    incremental, full = _incremental(
        lin.graph, lin.compromised - {flagged}, lin.compromised | {flagged}, flagged
    )
    assert incremental == full


@SETTINGS
@given(lineages(), st.data())
def test_unflag_recomputes_only_descendants(lin: Lineage, data: st.DataObject) -> None:
    unflagged = data.draw(st.sampled_from(sorted(lin.graph.nodes)))
    incremental, full = _incremental(
        lin.graph, lin.compromised | {unflagged}, lin.compromised - {unflagged}, unflagged
    )
    assert incremental == full


@SETTINGS
@given(lineages(), policies)
def test_infection_path_is_a_real_propagating_path(lin: Lineage, policy: Policy) -> None:
    reaches = propagate_infection(lin.graph, lin.compromised, policy=policy)
    for node, found in reaches.items():
        for source, reach in found.items():
            path = infection_path(reaches, node, source)
            assert path[0] == source
            assert path[-1] == node
            assert len(path) - 1 == reach.depth
            assert path[-2] == reach.via
            for parent, child in zip(path, path[1:], strict=False):
                assert lin.graph.has_edge(parent, child)
                assert _propagates(lin.graph.edges[parent, child]["relation"], policy)
            walk = shortest_paths_from(
                lin.graph, source, follow=lambda relation: _propagates(relation, policy)
            )
            assert walk[node] == path


@SETTINGS
@given(dags(), st.data())
def test_shortest_paths_within_max_depth(graph: nx.DiGraph, data: st.DataObject) -> None:
    start = data.draw(st.sampled_from(sorted(graph.nodes)))
    direction = data.draw(st.sampled_from(["down", "up"]))
    max_depth = data.draw(st.none() | st.integers(min_value=0, max_value=len(graph)))
    paths = shortest_paths_from(graph, start, direction=direction, max_depth=max_depth)

    walked = graph if direction == "down" else graph.reverse(copy=False)
    distance = nx.single_source_shortest_path_length(walked, start)
    within = {
        node
        for node, depth in distance.items()
        if node != start and (max_depth is None or depth <= max_depth)
    }
    assert set(paths) == within
    for node, path in paths.items():
        assert len(path) - 1 == distance[node]
        assert path[0 if direction == "down" else -1] == start
        assert path[-1 if direction == "down" else 0] == node
        assert all(graph.has_edge(a, b) for a, b in zip(path, path[1:], strict=False))


pairs = st.tuples(st.integers(0, 9), st.integers(0, 9))


@SETTINGS
@given(lineages(), st.frozensets(pairs), st.frozensets(pairs))
def test_status_precedence(
    lin: Lineage, cleared: frozenset[tuple[int, int]], confirmed: frozenset[tuple[int, int]]
) -> None:
    statuses = recompute_statuses(lin.graph, lin.compromised, cleared=cleared, confirmed=confirmed)
    sources = reference_reaches(lin.graph, lin.compromised, DEFAULT_PROPAGATION)
    assert set(statuses) == set(lin.graph.nodes)
    for node, status in statuses.items():
        reaching = set(sources.get(node, {}))
        if node in lin.compromised:
            expected = Status.COMPROMISED
        elif not reaching:
            expected = Status.CLEAN
        elif {(node, source) for source in reaching} & confirmed:
            expected = Status.CONFIRMED
        elif {(node, source) for source in reaching} <= cleared:
            expected = Status.CLEARED
        else:
            expected = Status.INFECTED
        assert status is expected, node


@SETTINGS
@given(lineages(), st.data())
def test_partial_clearance_leaves_the_node_infected(lin: Lineage, data: st.DataObject) -> None:
    reaches = propagate_infection(lin.graph, lin.compromised)
    several = sorted(
        n for n, found in reaches.items() if len(found) > 1 and n not in lin.compromised
    )
    if not several:
        return
    node = data.draw(st.sampled_from(several))
    sources = sorted(reaches[node])
    kept = data.draw(st.sampled_from(sources))
    partial = {(node, source) for source in sources if source != kept}
    every = {(node, source) for source in sources}

    def status(
        cleared: set[tuple[int, int]], confirmed: set[tuple[int, int]] | None = None
    ) -> Status:
        statuses = recompute_statuses(
            lin.graph, lin.compromised, cleared=cleared, confirmed=confirmed or set()
        )
        return statuses[node]

    assert status(cleared=partial) is Status.INFECTED
    assert status(cleared=every) is Status.CLEARED
    assert status(cleared=every, confirmed={(node, kept)}) is Status.CONFIRMED


@SETTINGS
@given(lineages())
def test_evaluated_on_never_propagates_by_default(lin: Lineage) -> None:
    reaches = propagate_infection(lin.graph, lin.compromised)
    for node, found in reaches.items():
        for reach in found.values():
            assert lin.graph.edges[reach.via, node]["relation"] is not Relation.EVALUATED_ON
    for node in lin.graph.nodes:
        relations = {lin.graph.edges[p, node]["relation"] for p in lin.graph.predecessors(node)}
        if relations <= {Relation.EVALUATED_ON}:
            assert node not in reaches


@SETTINGS
@given(lineages())
def test_policy_without_quantized_stops_at_quantized_edges(lin: Lineage) -> None:
    policy = {Relation.QUANTIZED: False}
    reaches = propagate_infection(lin.graph, lin.compromised, policy=policy)
    for node, found in reaches.items():
        for source in found:
            path = infection_path(reaches, node, source)
            hops = {lin.graph.edges[a, b]["relation"] for a, b in zip(path, path[1:], strict=False)}
            assert not hops & {Relation.QUANTIZED, Relation.EVALUATED_ON}
    everything = propagate_infection(lin.graph, lin.compromised, policy={Relation.QUANTIZED: True})
    assert _summary(everything) == _summary(propagate_infection(lin.graph, lin.compromised))
    for node, found in everything.items():
        assert set(found) >= set(reaches.get(node, {}))
