"""Errors raised by the pure lineage functions."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


class LineageError(Exception):
    """Base class of lineage errors."""


class CycleError(LineageError):
    """Adding an edge, or a graph as given, would make the lineage cyclic."""

    def __init__(self, cycle: Sequence[Hashable]) -> None:
        self.cycle = tuple(cycle)
        super().__init__("lineage cycle: " + " -> ".join(str(node) for node in self.cycle))
