"""Infection propagation: the effective status as a pure function of the lineage.

The effective status of every node follows from four inputs only: the graph
(with each edge's relation), the set of directly compromised nodes, the
clearances and the confirmations. :func:`propagate_infection` computes, for
each node, every compromised ancestor that reaches it over propagating edges
together with the shortest such path; :func:`effective_status` turns that into
one status. The registry materialises the result and must always agree with a
from-scratch recomputation.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from lineage.errors import NoInfectionPathError
from lineage.graph import Node, Path, topological_order
from lineage.relations import DEFAULT_PROPAGATION, Relation

if TYPE_CHECKING:
    import networkx as nx


class Finding(StrEnum):
    """A node's own verdict, from scans or people, before lineage is considered."""

    UNSCANNED = "unscanned"
    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    COMPROMISED = "compromised"


class Status(StrEnum):
    """The effective lineage status of a node."""

    CLEAN = "clean"
    COMPROMISED = "compromised"
    INFECTED = "infected"
    CONFIRMED = "confirmed"
    CLEARED = "cleared"

    @property
    def is_tainted(self) -> bool:
        """True when the node must not be deployed or built upon."""
        return self in (Status.COMPROMISED, Status.INFECTED, Status.CONFIRMED)


@dataclass(frozen=True, order=True)
class Reach:
    """How one compromised source reaches a node: along a shortest path.

    ``via`` is the parent through which the shortest path arrives (the source
    itself when ``depth`` is 1); following ``via`` upwards rebuilds the path.
    """

    source: Node
    depth: int
    via: Node


Reaches = dict[Node, dict[Node, Reach]]  # node -> source -> reach


def propagate_infection(
    graph: nx.DiGraph,
    compromised: Collection[Node],
    *,
    policy: Mapping[Relation, bool] = DEFAULT_PROPAGATION,
    within: Collection[Node] | None = None,
    inherited: Mapping[Node, Mapping[Node, Reach]] | None = None,
) -> Reaches:
    """Every compromised source reaching each node, with its shortest path.

    An edge carries an infection when ``policy`` says its relation propagates;
    a relation missing from ``policy`` follows :data:`DEFAULT_PROPAGATION`.
    Among equally short paths the one arriving through the smallest parent id
    wins. Nodes that no compromise reaches are absent from the result; a
    compromised node is never its own source.

    With ``within`` only those nodes are computed: their parents inside it
    contribute what is computed here, their parents outside it the reaches
    given in ``inherited`` (what the registry has stored for them). A flag or
    an unflag changes only the node's descendants, so recomputing the node and
    its descendants with the stored reaches of the rest equals a from-scratch
    recomputation of them. Entries of ``inherited`` for nodes in ``within`` are
    ignored.

    >>> from lineage.graph import lineage_graph
    >>> graph = lineage_graph([("base", "ft", "finetune"), ("ft", "app", "head"),
    ...                        ("data", "ft", "evaluated_on")])
    >>> reaches = propagate_infection(graph, {"base", "data"})
    >>> sorted(reaches)
    ['app', 'ft']
    >>> reaches["app"]
    {'base': Reach(source='base', depth=2, via='ft')}
    >>> propagate_infection(graph, {"ft"}, within={"app"}, inherited=reaches)["app"]
    {'base': Reach(source='base', depth=2, via='ft'), 'ft': Reach(source='ft', depth=1, via='ft')}
    """
    flagged = frozenset(compromised)
    computed = None if within is None else frozenset(within)
    stored = inherited or {}
    result: Reaches = {}
    for node in topological_order(graph, computed):
        found: dict[Node, Reach] = {}
        for parent in sorted(graph.predecessors(node)):
            if not _propagates(graph.edges[parent, node]["relation"], policy):
                continue
            upstream = result if computed is None or parent in computed else stored
            candidates = [Reach(parent, 1, parent)] if parent in flagged else []
            candidates += [
                Reach(reach.source, reach.depth + 1, parent)
                for reach in upstream.get(parent, {}).values()
            ]
            for candidate in candidates:
                best = found.get(candidate.source)
                # Parents come in ascending order: on a tie in depth the first one stays.
                if best is None or candidate.depth < best.depth:
                    found[candidate.source] = candidate
        found.pop(node, None)
        if found:
            result[node] = dict(sorted(found.items()))
    return result


def _propagates(relation: Relation, policy: Mapping[Relation, bool]) -> bool:
    return bool(policy.get(relation, DEFAULT_PROPAGATION.get(relation, True)))


def infection_path(reaches: Mapping[Node, Mapping[Node, Reach]], node: Node, source: Node) -> Path:
    """Rebuild the shortest path from ``source`` down to ``node``.

    Raises :class:`NoInfectionPathError` when ``reaches`` has no infection of
    ``node`` by ``source``.

    >>> reaches = {"ft": {"base": Reach("base", 1, "base")},
    ...            "app": {"base": Reach("base", 2, "ft")}}
    >>> infection_path(reaches, "app", "base")
    ('base', 'ft', 'app')
    >>> infection_path(reaches, "app", "data")
    Traceback (most recent call last):
    ...
    lineage.errors.NoInfectionPathError: data does not infect app
    """
    path = [node]
    while path[-1] != source:
        reach = reaches.get(path[-1], {}).get(source)
        if reach is None:
            raise NoInfectionPathError(node, source)
        path.append(reach.via)
    return tuple(reversed(path))


def effective_status(
    node: Node,
    *,
    compromised: Collection[Node],
    sources: Collection[Node],
    cleared: Collection[tuple[Node, Node]] = (),
    confirmed: Collection[tuple[Node, Node]] = (),
) -> Status:
    """One node's effective status from its own flag and the sources reaching it.

    ``cleared`` and ``confirmed`` hold ``(node, source)`` pairs. A clearance
    covers only the sources it names, so a new compromise reaching a cleared
    node makes it infected again; a confirmation outranks any clearance.

    >>> effective_status("m", compromised=set(), sources={"base"})
    <Status.INFECTED: 'infected'>
    >>> effective_status("m", compromised=set(), sources={"base"}, cleared={("m", "base")})
    <Status.CLEARED: 'cleared'>
    """
    if node in compromised:
        return Status.COMPROMISED
    if not sources:
        return Status.CLEAN
    if any((node, source) in confirmed for source in sources):
        return Status.CONFIRMED
    if all((node, source) in cleared for source in sources):
        return Status.CLEARED
    return Status.INFECTED


def recompute_statuses(
    graph: nx.DiGraph,
    compromised: Collection[Node],
    *,
    cleared: Collection[tuple[Node, Node]] = (),
    confirmed: Collection[tuple[Node, Node]] = (),
    policy: Mapping[Relation, bool] = DEFAULT_PROPAGATION,
) -> dict[Node, Status]:
    """The effective status of every node in the graph, from scratch.

    >>> from lineage.graph import lineage_graph
    >>> graph = lineage_graph([("base", "ft", "finetune"), ("ft", "app", "head"),
    ...                        ("base", "other", "quantized")])
    >>> statuses = recompute_statuses(graph, {"base"}, cleared={("ft", "base")},
    ...                               confirmed={("app", "base")})
    >>> {node: str(status) for node, status in sorted(statuses.items())}
    {'app': 'confirmed', 'base': 'compromised', 'ft': 'cleared', 'other': 'infected'}
    """
    flagged = frozenset(compromised)
    cleared_pairs, confirmed_pairs = frozenset(cleared), frozenset(confirmed)
    reaches = propagate_infection(graph, flagged, policy=policy)
    return {
        node: effective_status(
            node,
            compromised=flagged,
            sources=reaches.get(node, {}).keys(),
            cleared=cleared_pairs,
            confirmed=confirmed_pairs,
        )
        for node in graph.nodes
    }
