"""A bounded neighbourhood of one version, for drawing: ancestors above, descendants below.

The lineage of a hub base can hold tens of thousands of descendants; a picture can
hold a few dozen. :func:`neighbourhood` walks the edges level by level from the
version, takes the first few children (or parents) of each node in registration
order, caps every level, and says for each node whose relatives were left out how
many of them there are (counted in the closure table, never walked). Every read is
an index range scan bounded by what is drawn, plus one counting scan per node left
incomplete, so the cost follows the picture, not the size of the lineage.

Read-only; no rule lives here (statuses are read as stored).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, not_
from sqlalchemy import select as core_select
from sqlmodel import Session, col

from registry.errors import InvalidInput, NotFound
from registry.service._idset import among
from registry.service.graph import labels_of
from registry.service.refs import ref_of, resolve
from registry.tables import Edge, LineageClosure

Direction = Literal["up", "down"]

#: Defaults: generations drawn each way, relatives per node, nodes per generation.
DEPTH = 3
FANOUT = 6
LEVEL_CAP = 16
#: What an expanded node shows at most (a link asks for it; the server bounds it).
EXPAND_LIMIT = 100
#: How many nodes may be expanded in one picture.
MAX_EXPANDED = 8
MAX_DEPTH = 6


@dataclass(frozen=True)
class Relative:
    """A drawn version: ``layer`` is negative above the focus, positive below, 0 for it."""

    ref: str
    kind: str
    status: str
    layer: int


@dataclass(frozen=True)
class Link:
    """A drawn edge: ``child`` was made from ``parent`` by ``relation``."""

    parent: str
    child: str
    relation: str


@dataclass(frozen=True)
class Hidden:
    """Relatives of ``ref`` left out of the picture, counted.

    ``count`` is how many of its descendants (``down``) or ancestors (``up``) are not
    drawn; ``expanded`` says the picture already shows as many of its direct
    relatives as the server allows.
    """

    ref: str
    direction: Direction
    count: int
    expanded: bool


@dataclass(frozen=True)
class Neighbourhood:
    """What to draw around ``focus``, and how large its whole lineage is."""

    focus: str
    relatives: tuple[Relative, ...]
    links: tuple[Link, ...]
    hidden: tuple[Hidden, ...]
    ancestors: int
    descendants: int


def neighbourhood(
    session: Session,
    ref: str,
    *,
    up: int = DEPTH,
    down: int = DEPTH,
    fanout: int = FANOUT,
    level_cap: int = LEVEL_CAP,
    expand: Collection[str] = (),
) -> Neighbourhood:
    """The versions around ``ref`` to draw: ``up`` generations of ancestors, ``down`` of
    descendants, at most ``fanout`` relatives per node (``EXPAND_LIMIT`` for the nodes
    named in ``expand``) and ``level_cap`` per generation, plus counts of the rest."""
    for name, value in (("up", up), ("down", down)):
        if not 0 <= value <= MAX_DEPTH:
            raise InvalidInput(f"{name} must be between 0 and {MAX_DEPTH}, not {value}")
    if len(expand) > MAX_EXPANDED:
        raise InvalidInput(f"at most {MAX_EXPANDED} nodes can be expanded at once")
    focus = resolve(session, ref)
    focus_id = focus.id or 0
    opened = _ids_of(session, expand)
    layers = {focus_id: 0}
    walk = _Walk(session, fanout=fanout, level_cap=level_cap, opened=opened)
    walk.run(layers, focus_id, steps=down, sign=1)
    walk.run(layers, focus_id, steps=up, sign=-1)
    labels = labels_of(session, layers)
    links = _links_among(session, layers)
    hidden = _hidden(session, layers, links)
    return Neighbourhood(
        focus=ref_of(focus),
        relatives=tuple(
            Relative(ref=ref_of(labels[n]), kind=labels[n].kind, status=labels[n].status, layer=d)
            for n, d in layers.items()
        ),
        links=tuple(
            Link(parent=ref_of(labels[p]), child=ref_of(labels[c]), relation=r) for p, c, r in links
        ),
        hidden=tuple(
            Hidden(ref=ref_of(labels[n]), direction=way, count=count, expanded=n in opened)
            for n, way, count in hidden
        ),
        ancestors=_count(session, focus_id, down=False),
        descendants=_count(session, focus_id, down=True),
    )


class _Walk:
    """Breadth-first over the edges, a bounded number of relatives per node and level."""

    def __init__(self, session: Session, *, fanout: int, level_cap: int, opened: set[int]) -> None:
        self.session = session
        self.fanout = fanout
        self.level_cap = level_cap
        self.opened = opened

    def run(self, layers: dict[int, int], start: int, *, steps: int, sign: int) -> None:
        """Add up to ``steps`` generations beyond ``start`` to ``layers`` (id -> layer)."""
        frontier = [start]
        for step in range(1, steps + 1):
            # Expanded nodes first, so their relatives are drawn before the level fills up.
            frontier.sort(key=lambda node: node not in self.opened)
            cap = self.level_cap + EXPAND_LIMIT * sum(n in self.opened for n in frontier)
            level: list[int] = []
            for node in frontier:
                room = cap - len(level)
                if room <= 0:
                    break
                limit = EXPAND_LIMIT if node in self.opened else self.fanout
                for relative in self._relatives(node, min(limit, room), down=sign > 0):
                    if relative not in layers:
                        layers[relative] = sign * step
                        level.append(relative)
            if not level:
                return
            frontier = level

    def _relatives(self, node: int, limit: int, *, down: bool) -> list[int]:
        """The first ``limit`` children (or parents) of ``node``, oldest first."""
        mine, theirs = (Edge.parent_id, Edge.child_id) if down else (Edge.child_id, Edge.parent_id)
        query = core_select(col(theirs)).where(col(mine) == node).order_by(col(theirs)).limit(limit)
        return list(self.session.connection().execute(query).scalars())


def _ids_of(session: Session, refs: Iterable[str]) -> set[int]:
    ids = set()
    for ref in refs:
        try:
            ids.add(resolve(session, ref).id or 0)
        except NotFound as exc:
            raise InvalidInput(
                f"cannot expand {ref}: no such version", hint="expand a version in the picture"
            ) from exc
    return ids


def _links_among(session: Session, nodes: Collection[int]) -> list[tuple[int, int, str]]:
    """Every edge between two drawn nodes (whichever walk found them)."""
    query = (
        core_select(col(Edge.parent_id), col(Edge.child_id), col(Edge.relation))
        .where(among(Edge.child_id, nodes), among(Edge.parent_id, nodes))
        .order_by(col(Edge.parent_id), col(Edge.child_id))
    )
    return [(p, c, r) for p, c, r in session.connection().execute(query).all()]


def _hidden(
    session: Session,
    layers: dict[int, int],
    links: list[tuple[int, int, str]],
) -> list[tuple[int, Direction, int]]:
    """For each drawn node with a child (below the focus) or parent (above it) left out:
    how many of its descendants (ancestors) are not drawn."""
    below = [n for n, layer in layers.items() if layer >= 0]
    above = [n for n, layer in layers.items() if layer <= 0]
    drawn_children = _tally((p, c) for p, c, _ in links)
    drawn_parents = _tally((c, p) for p, c, _ in links)
    incomplete_down = _short(session, below, drawn_children, down=True)
    incomplete_up = _short(session, above, drawn_parents, down=False)
    found: list[tuple[int, Direction, int]] = []
    ways: list[tuple[list[int], Direction]] = [(incomplete_down, "down"), (incomplete_up, "up")]
    for nodes, way in ways:
        counts = _undrawn(session, nodes, layers, down=way == "down")
        found.extend((n, way, counts[n]) for n in sorted(nodes) if counts.get(n))
    return found


def _tally(pairs: Iterable[tuple[int, int]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for node, _ in pairs:
        counts[node] = counts.get(node, 0) + 1
    return counts


def _short(session: Session, nodes: list[int], drawn: dict[int, int], *, down: bool) -> list[int]:
    """The nodes that have more children (``down``) or parents than are drawn."""
    if not nodes:
        return []
    mine = Edge.parent_id if down else Edge.child_id
    query = core_select(col(mine), func.count()).where(among(mine, nodes)).group_by(col(mine))
    totals = session.connection().execute(query).all()
    return [node for node, total in totals if total > drawn.get(node, 0)]


def _undrawn(
    session: Session, nodes: list[int], drawn: Collection[int], *, down: bool
) -> dict[int, int]:
    """How many descendants (ancestors) of each node are not among the drawn ones."""
    if not nodes:
        return {}
    mine, theirs = (
        (LineageClosure.ancestor_id, LineageClosure.descendant_id)
        if down
        else (LineageClosure.descendant_id, LineageClosure.ancestor_id)
    )
    query = (
        core_select(col(mine), func.count())
        .where(among(mine, nodes), not_(among(theirs, drawn)))
        .group_by(col(mine))
    )
    return {node: count for node, count in session.connection().execute(query).all()}


def _count(session: Session, node: int, *, down: bool) -> int:
    mine = LineageClosure.ancestor_id if down else LineageClosure.descendant_id
    query = core_select(func.count()).select_from(LineageClosure).where(col(mine) == node)
    return int(session.connection().execute(query).scalar_one())


__all__ = [
    "EXPAND_LIMIT",
    "Hidden",
    "Link",
    "Neighbourhood",
    "Relative",
    "neighbourhood",
]
