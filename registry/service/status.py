"""Materialised lineage status: recomputed incrementally, checkable from scratch.

When a flag, an unflag or a clearance touches a node, only that node and its
descendants can change. :func:`recompute` rebuilds their infection records
with :func:`lineage.propagate_infection`, seeding it with the stored records
of their parents outside that set, and writes back the statuses that moved.
:func:`find_inconsistencies` recomputes the whole registry from scratch and
reports every disagreement: it must always find none.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, update
from sqlmodel import Session, col, select

from lineage import Reach, Relation, effective_status, propagate_infection
from registry.service.graph import CHUNK, chunks, descendant_rows, parent_links
from registry.tables import Artifact, Clearance, Edge, Flag, Infection

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Change:
    """One artifact whose effective status moved."""

    artifact_id: int
    before: str
    after: str


def recompute(session: Session, roots: Collection[int]) -> list[Change]:
    """Recompute the roots and all their descendants; return what changed."""
    import networkx as nx  # heavy: imported where a graph is built

    affected = set(roots)
    for root in roots:
        affected.update(descendant_rows(session, root))
    links = parent_links(session, affected)
    graph = nx.DiGraph()
    graph.add_nodes_from(affected)
    graph.add_edges_from((p, c, {"relation": Relation(r)}) for p, c, r in links)
    outside = {parent for parent, _, _ in links if parent not in affected}
    compromised = flagged_ids(session, affected | outside)
    reaches = propagate_infection(
        graph, compromised, within=affected, inherited=stored_reaches(session, outside)
    )
    _replace_infections(session, affected, reaches)
    cleared = cleared_pairs(session, affected)
    wanted = {
        node: effective_status(
            node, compromised=compromised, sources=reaches.get(node, {}).keys(), cleared=cleared
        ).value
        for node in affected
    }
    return _write_statuses(session, wanted)


def flagged_ids(session: Session, ids: Collection[int] | None = None) -> set[int]:
    """Artifacts with an active flag (among ``ids``, or all)."""
    query = select(Flag.artifact_id).where(Flag.active)
    if ids is None:
        return set(session.exec(query))
    found: set[int] = set()
    for chunk in chunks(ids):
        found.update(session.exec(query.where(col(Flag.artifact_id).in_(chunk))))
    return found


def cleared_pairs(session: Session, ids: Collection[int] | None = None) -> set[tuple[int, int]]:
    """Active ``(artifact, source)`` clearances (for ``ids``, or all)."""
    query = select(Clearance.artifact_id, Clearance.source_id).where(Clearance.active)
    if ids is None:
        return {(a, s) for a, s in session.exec(query)}
    found: set[tuple[int, int]] = set()
    for chunk in chunks(ids):
        found.update(session.exec(query.where(col(Clearance.artifact_id).in_(chunk))))
    return found


def stored_reaches(session: Session, ids: Collection[int]) -> dict[int, dict[int, Reach]]:
    """The stored infection records of ``ids``: node -> source -> reach."""
    found: dict[int, dict[int, Reach]] = {}
    for chunk in chunks(ids):
        rows = session.exec(select(Infection).where(col(Infection.artifact_id).in_(chunk)))
        for row in rows:
            found.setdefault(row.artifact_id, {})[row.source_id] = Reach(
                row.source_id, row.depth, row.via_id
            )
    return found


def _replace_infections(
    session: Session, affected: Collection[int], reaches: dict[int, dict[int, Reach]]
) -> None:
    for chunk in chunks(affected):
        session.execute(delete(Infection).where(col(Infection.artifact_id).in_(chunk)))
    rows = [
        {"artifact_id": node, "source_id": r.source, "depth": r.depth, "via_id": r.via}
        for node, by_source in reaches.items()
        for r in by_source.values()
    ]
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(Infection), rows[start : start + CHUNK])


def _write_statuses(session: Session, wanted: dict[int, str]) -> list[Change]:
    changes: list[Change] = []
    for chunk in chunks(wanted):
        rows = session.exec(select(Artifact.id, Artifact.status).where(col(Artifact.id).in_(chunk)))
        for node, before in rows:
            assert node is not None
            if before != wanted[node]:
                changes.append(Change(node, before, wanted[node]))
    by_status: dict[str, list[int]] = {}
    for change in changes:
        by_status.setdefault(change.after, []).append(change.artifact_id)
    for status, ids in by_status.items():
        for chunk in chunks(ids):
            session.execute(
                update(Artifact).where(col(Artifact.id).in_(chunk)).values(status=status)
            )
    session.expire_all()
    return sorted(changes, key=lambda change: change.artifact_id)


def find_inconsistencies(session: Session) -> list[str]:
    """Recompute every status from scratch and list where the stored state differs."""
    import networkx as nx  # heavy: imported where a graph is built

    graph = nx.DiGraph()
    graph.add_nodes_from(session.exec(select(Artifact.id)))
    edges = session.exec(select(Edge.parent_id, Edge.child_id, Edge.relation))
    graph.add_edges_from((p, c, {"relation": Relation(r)}) for p, c, r in edges)
    compromised = flagged_ids(session)
    reaches = propagate_infection(graph, compromised)
    cleared = cleared_pairs(session)
    stored = stored_reaches(session, list(graph.nodes))
    problems = [
        f"artifact {node}: stored sources {sorted(stored.get(node, {}).values())} "
        f"!= recomputed {sorted(reaches.get(node, {}).values())}"
        for node in graph.nodes
        if stored.get(node, {}) != reaches.get(node, {})
    ]
    for node, status in session.exec(select(Artifact.id, Artifact.status)):
        expected = effective_status(
            node, compromised=compromised, sources=reaches.get(node, {}).keys(), cleared=cleared
        )
        if status != expected.value:
            problems.append(f"artifact {node}: stored status {status} != recomputed {expected}")
    return problems


def source_ids(session: Session, artifact_id: int) -> Sequence[int]:
    """The compromised sources currently reaching an artifact."""
    return session.exec(
        select(Infection.source_id).where(Infection.artifact_id == artifact_id)
    ).all()
