"""Errors raised by the pure lineage functions.

Every error is a :class:`LineageError`; ``diagnostics()`` gives the message a
person reads: what was wrong and what to do. Attributes carry the context
(``cycle``, ``node``, ``source``) so the registry can translate them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


class LineageError(Exception):
    """Base class of lineage errors."""

    hint = ""

    def diagnostics(self) -> str:
        """The message a person reads: what went wrong, then what to do."""
        return f"{self} ({self.hint})" if self.hint else str(self)


class CycleError(LineageError):
    """Adding an edge, or a graph as given, would make the lineage cyclic.

    ``cycle`` lists the nodes along the cycle, the first repeated at the end
    (``(node, node)`` for a self-parent).

    >>> CycleError(["a", "b", "a"]).diagnostics()
    'lineage cycle: a -> b -> a (a model cannot descend from itself: drop one of these edges)'
    """

    hint = "a model cannot descend from itself: drop one of these edges"

    def __init__(self, cycle: Sequence[Hashable]) -> None:
        self.cycle = tuple(cycle)
        super().__init__("lineage cycle: " + " -> ".join(str(node) for node in self.cycle))


class ConflictingEdgeError(LineageError):
    """The same parent and child were given twice with different relations."""

    hint = "an edge has exactly one relation: keep the one that describes how the child was made"

    def __init__(self, parent: Hashable, child: Hashable, relations: Sequence[str]) -> None:
        self.parent = parent
        self.child = child
        self.relations = tuple(relations)
        super().__init__(
            f"edge {parent} -> {child} given with different relations: "
            + ", ".join(str(relation) for relation in self.relations)
        )


class UnknownNodeError(LineageError):
    """A walk was asked to start from a node that is not in the graph."""

    hint = "build the graph with every artifact as a node, edges or not"

    def __init__(self, node: Hashable) -> None:
        self.node = node
        super().__init__(f"node {node} is not in the lineage graph")


class NoInfectionPathError(LineageError):
    """The given propagation result has no infection of ``node`` by ``source``."""

    hint = "take the source from the node's own reaches"

    def __init__(self, node: Hashable, source: Hashable) -> None:
        self.node = node
        self.source = source
        super().__init__(f"{source} does not infect {node}")
