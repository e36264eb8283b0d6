"""Building the lineage graph and walking it with shortest paths.

Nodes are any hashable, orderable ids (the registry uses integer ids); every
edge carries a ``relation`` attribute. Ties between equally short paths are
broken by the smallest node id, so every answer is deterministic.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any

import networkx as nx

from lineage.errors import CycleError
from lineage.relations import Relation

Node = Any  # hashable and orderable; the registry uses int ids
Path = tuple[Node, ...]


def lineage_graph(
    edges: Iterable[tuple[Node, Node, Relation | str]], *, nodes: Iterable[Node] = ()
) -> nx.DiGraph:
    """Build a lineage DAG from ``(parent, child, relation)`` triples.

    Raises :class:`CycleError` when the edges are not acyclic.

    >>> graph = lineage_graph([("base", "ft", "finetune"), ("ft", "app", "head")])
    >>> sorted(graph.successors("base"))
    ['ft']
    >>> lineage_graph([("a", "b", "finetune"), ("b", "a", "finetune")])
    Traceback (most recent call last):
    ...
    lineage.errors.CycleError: lineage cycle: a -> b -> a
    """
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    for parent, child, relation in edges:
        if parent == child:
            raise CycleError((parent, child))
        graph.add_edge(parent, child, relation=Relation(relation))
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return graph
    raise CycleError([edge[0] for edge in cycle] + [cycle[0][0]])


def check_new_parents(graph: nx.DiGraph, child: Node, parents: Iterable[Node]) -> None:
    """Raise :class:`CycleError` if edges ``parent -> child`` would close a cycle.

    A cycle appears when a parent is the child itself or one of its descendants.

    >>> graph = lineage_graph([("a", "b", "finetune")])
    >>> check_new_parents(graph, "c", ["b"])
    >>> check_new_parents(graph, "a", ["b"])
    Traceback (most recent call last):
    ...
    lineage.errors.CycleError: lineage cycle: a -> b -> a
    """
    for parent in parents:
        if parent == child:
            raise CycleError((child, child))
        if child in graph and parent in graph:
            path = shortest_paths_from(graph, child, direction="down").get(parent)
            if path is not None:
                raise CycleError((*path, child))


def shortest_paths_from(
    graph: nx.DiGraph,
    start: Node,
    *,
    direction: str = "down",
    max_depth: int | None = None,
    follow: Callable[[Relation], bool] | None = None,
) -> dict[Node, Path]:
    """Shortest path from ``start`` to every node reachable from it (``start`` excluded).

    ``direction="down"`` walks to descendants, ``"up"`` to ancestors; paths are
    always written from the ancestor to the descendant. ``follow`` limits the
    walk to edges whose relation it accepts.

    >>> graph = lineage_graph([("a", "b", "finetune"), ("b", "c", "finetune"),
    ...                        ("a", "c", "merge")])
    >>> shortest_paths_from(graph, "a")
    {'b': ('a', 'b'), 'c': ('a', 'c')}
    >>> shortest_paths_from(graph, "c", direction="up")
    {'a': ('a', 'c'), 'b': ('b', 'c')}
    """
    if direction not in ("down", "up"):
        raise ValueError(f"direction must be 'down' or 'up', not {direction!r}")
    step = _neighbours(graph, down=direction == "down", follow=follow)
    paths: dict[Node, Path] = {}
    queue: deque[tuple[Node, Path]] = deque([(start, (start,))])
    while queue:
        node, path = queue.popleft()
        if max_depth is not None and depth_of(path) >= max_depth:
            continue
        for neighbour in sorted(step(node)):
            if neighbour == start or neighbour in paths:
                continue
            longer = (*path, neighbour) if direction == "down" else (neighbour, *path)
            paths[neighbour] = longer
            queue.append((neighbour, longer))
    return paths


def _neighbours(
    graph: nx.DiGraph, *, down: bool, follow: Callable[[Relation], bool] | None
) -> Callable[[Node], Iterator[Node]]:
    edges: Mapping[Node, Mapping[Node, Mapping[str, Any]]] = graph.succ if down else graph.pred

    def step(node: Node) -> Iterator[Node]:
        for neighbour, data in edges[node].items():
            if follow is None or follow(data["relation"]):
                yield neighbour

    return step


def depth_of(path: Path) -> int:
    """Number of edges on a path."""
    return len(path) - 1


def topological_order(graph: nx.DiGraph, nodes: Iterable[Hashable] | None = None) -> list[Node]:
    """Nodes in a deterministic topological order (ties broken by node id)."""
    sub = graph if nodes is None else graph.subgraph(nodes)
    return list(nx.lexicographical_topological_sort(sub))
