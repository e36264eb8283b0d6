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

from sqlalchemy import ColumnElement, case, delete, exists, insert, literal, not_, update
from sqlmodel import Session, col, select

from lineage import Reach, Relation, Status, effective_status, propagate_infection
from registry.service import audit_state, deployed_paths
from registry.service._idset import among
from registry.service.graph import CHUNK, descendant_rows, parent_links
from registry.tables import (
    Artifact,
    Clearance,
    Edge,
    Flag,
    Infection,
    LineageClosure,
    ReplayResult,
)
from registry.vocabulary import Kind

if TYPE_CHECKING:
    pass


#: A replay result that confirms an inheritance now: confirmed, of a descendant, and the
#: newest for its (model, source) pair.
CONFIRMING = (
    col(ReplayResult.confirmed),
    not_(col(ReplayResult.superseded)),
    col(ReplayResult.role) == "descendant",
)


@dataclass(frozen=True)
class Change:
    """One artifact whose effective status moved (``depth`` below the flagged node, if known)."""

    artifact_id: int
    before: str
    after: str
    depth: int | None = None


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
    confirmed = confirmed_pairs(session, affected)
    wanted = {
        node: effective_status(
            node,
            compromised=compromised,
            sources=reaches.get(node, {}).keys(),
            cleared=cleared,
            confirmed=confirmed,
        ).value
        for node in affected
    }
    return _write_statuses(session, wanted)


def infect_from_closure(session: Session, source: Artifact) -> list[Change]:
    """Propagate a new flag on a model set-based; return what changed, nearest first.

    Every edge below a model propagates (only a dataset's ``evaluated_on`` use
    does not), so the shortest infection path from a model is its shortest
    lineage path: the source's infection rows *are* its closure rows, with the
    same tie-break (smallest parent id). One ``INSERT … SELECT`` writes them.

    A new source can only move a descendant up: ``clean`` or ``cleared`` to
    ``infected`` (no clearance names a source that was not flagged), or to
    ``confirmed`` where a replay of this source's trigger confirmed it before.
    So only those rows are read and written — the rule of
    :func:`wanted_status`, without evaluating it on every descendant.
    """
    assert source.kind == Kind.MODEL, "a dataset's uses may not propagate: use recompute"
    root = source.id or 0
    closure = select(
        LineageClosure.descendant_id,
        LineageClosure.ancestor_id,
        LineageClosure.depth,
        LineageClosure.via_id,
    ).where(LineageClosure.ancestor_id == root)
    session.execute(
        insert(Infection).from_select(["artifact_id", "source_id", "depth", "via_id"], closure)
    )
    confirmed = set(
        session.exec(
            select(ReplayResult.artifact_id).where(col(ReplayResult.source_id) == root, *CONFIRMING)
        )
    )
    moving: ColumnElement[bool] = col(Artifact.status).in_(
        [Status.CLEAN.value, Status.CLEARED.value]
    )
    if confirmed:
        moving = moving | (
            (col(Artifact.status) == Status.INFECTED.value) & among(Artifact.id, confirmed)
        )
    rows = session.exec(
        select(LineageClosure.descendant_id, Artifact.status, LineageClosure.depth)
        .select_from(LineageClosure)
        .join(Artifact, col(Artifact.id) == col(LineageClosure.descendant_id))
        .where(LineageClosure.ancestor_id == root, moving)
    ).all()
    changes = [
        Change(node, before, Status.CONFIRMED if node in confirmed else Status.INFECTED, depth)
        for node, before, depth in rows
    ]
    changes.sort(key=lambda change: (change.depth or 0, change.artifact_id))
    _write_changes(session, changes)
    return refresh_one(session, root) + changes


def withdraw_source(session: Session, source: Artifact) -> list[Change]:
    """Remove a withdrawn flag's infection rows and refresh the statuses it reached."""
    session.execute(delete(Infection).where(col(Infection.source_id) == source.id))
    return refresh_below(session, source.id or 0)


def refresh_below(session: Session, root: int) -> list[Change]:
    """Re-derive the status of ``root`` and its descendants from the stored infection rows.

    One set-based read of the statuses that move (driven by the closure index),
    then one write per new status; returns the moves, nearest first.
    """
    wanted = wanted_status()
    moved = session.exec(
        select(LineageClosure.descendant_id, Artifact.status, wanted, LineageClosure.depth)
        .select_from(LineageClosure)
        .join(Artifact, col(Artifact.id) == col(LineageClosure.descendant_id))
        .where(LineageClosure.ancestor_id == root, col(Artifact.status) != wanted)
    ).all()
    changes = [Change(node, before, after, depth) for node, before, after, depth in moved]
    changes.sort(key=lambda change: (change.depth or 0, change.artifact_id))
    _write_changes(session, changes)
    return refresh_one(session, root) + changes


def refresh_one(session: Session, node: int) -> list[Change]:
    """Re-derive one artifact's status from its stored infection rows (no descendants)."""
    before, after = session.exec(
        select(Artifact.status, wanted_status()).where(Artifact.id == node)
    ).one()
    changes = [Change(node, before, after, 0)] if before != after else []
    _write_changes(session, changes)
    return changes


def wanted_status() -> ColumnElement[str]:
    """The effective status of ``artifact`` as SQL, from flags, infections and clearances.

    The same rule as :func:`lineage.effective_status` (which the from-scratch
    check uses), so stored and recomputed statuses agree.
    """
    flagged = exists().where(col(Flag.artifact_id) == col(Artifact.id), col(Flag.active))
    reached = exists().where(col(Infection.artifact_id) == col(Artifact.id))
    cleared = exists().where(
        col(Clearance.artifact_id) == col(Infection.artifact_id),
        col(Clearance.source_id) == col(Infection.source_id),
        col(Clearance.active),
    )
    uncleared = exists().where(col(Infection.artifact_id) == col(Artifact.id), not_(cleared))
    confirmed = exists().where(
        col(ReplayResult.artifact_id) == col(Artifact.id),
        *CONFIRMING,
        exists().where(
            col(Infection.artifact_id) == col(ReplayResult.artifact_id),
            col(Infection.source_id) == col(ReplayResult.source_id),
        ),
    )
    return case(
        (flagged, literal(Status.COMPROMISED.value)),
        (not_(reached), literal(Status.CLEAN.value)),
        (confirmed, literal(Status.CONFIRMED.value)),
        (uncleared, literal(Status.INFECTED.value)),
        else_=literal(Status.CLEARED.value),
    )


def flagged_ids(session: Session, ids: Collection[int] | None = None) -> set[int]:
    """Artifacts with an active flag (among ``ids``, or all)."""
    query = select(Flag.artifact_id).where(Flag.active)
    if ids is None:
        return set(session.exec(query))
    return set(session.exec(query.where(among(Flag.artifact_id, ids))))


def cleared_pairs(session: Session, ids: Collection[int] | None = None) -> set[tuple[int, int]]:
    """Active ``(artifact, source)`` clearances (for ``ids``, or all)."""
    query = select(Clearance.artifact_id, Clearance.source_id).where(Clearance.active)
    if ids is None:
        return {(a, s) for a, s in session.exec(query)}
    return {(a, s) for a, s in session.exec(query.where(among(Clearance.artifact_id, ids)))}


def confirmed_pairs(session: Session, ids: Collection[int] | None = None) -> set[tuple[int, int]]:
    """``(artifact, source)`` pairs whose current trigger replay confirmed the inheritance."""
    query = select(ReplayResult.artifact_id, ReplayResult.source_id).where(*CONFIRMING)
    if ids is not None:
        query = query.where(among(ReplayResult.artifact_id, ids))
    return {(a, s) for a, s in session.exec(query)}


def stored_reaches(session: Session, ids: Collection[int]) -> dict[int, dict[int, Reach]]:
    """The stored infection records of ``ids``: node -> source -> reach."""
    found: dict[int, dict[int, Reach]] = {}
    columns = (Infection.artifact_id, Infection.source_id, Infection.depth, Infection.via_id)
    for node, source, depth, via in session.exec(
        select(*columns).where(among(Infection.artifact_id, ids))
    ):
        found.setdefault(node, {})[source] = Reach(source, depth, via)
    return found


def _replace_infections(
    session: Session, affected: Collection[int], reaches: dict[int, dict[int, Reach]]
) -> None:
    session.execute(delete(Infection).where(among(Infection.artifact_id, affected)))
    rows = [
        {"artifact_id": node, "source_id": r.source, "depth": r.depth, "via_id": r.via}
        for node, by_source in reaches.items()
        for r in by_source.values()
    ]
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(Infection), rows[start : start + CHUNK])


def _write_statuses(session: Session, wanted: dict[int, str]) -> list[Change]:
    changes: list[Change] = []
    rows = session.exec(select(Artifact.id, Artifact.status).where(among(Artifact.id, wanted)))
    for node, before in rows:
        assert node is not None
        if before != wanted[node]:
            changes.append(Change(node, before, wanted[node]))
    _write_changes(session, changes)
    return sorted(changes, key=lambda change: change.artifact_id)


def _write_changes(session: Session, changes: Collection[Change]) -> None:
    """One ``UPDATE`` per new status, the ids as one bound array."""
    by_status: dict[str, list[int]] = {}
    for change in changes:
        by_status.setdefault(change.after, []).append(change.artifact_id)
    for status, ids in by_status.items():
        session.execute(
            update(Artifact)
            .where(among(Artifact.id, ids))
            .values(status=status)
            .execution_options(synchronize_session=False)
        )
    if changes:
        session.expire_all()


def find_inconsistencies(session: Session) -> list[str]:
    """Recompute every status from scratch and list where the stored state differs.

    Also where the stored digests differ from the stored manifests, and where
    the flags, clearances, decisions and digests differ from what the audit
    log recorded (:mod:`registry.service.audit_state`).
    """
    import networkx as nx  # heavy: imported where a graph is built

    graph = nx.DiGraph()
    graph.add_nodes_from(session.exec(select(Artifact.id)))
    edges = session.exec(select(Edge.parent_id, Edge.child_id, Edge.relation))
    graph.add_edges_from((p, c, {"relation": Relation(r)}) for p, c, r in edges)
    compromised = flagged_ids(session)
    reaches = propagate_infection(graph, compromised)
    cleared = cleared_pairs(session)
    confirmed = confirmed_pairs(session)
    stored = stored_reaches(session, list(graph.nodes))
    problems = [
        f"artifact {node}: stored sources {sorted(stored.get(node, {}).values())} "
        f"!= recomputed {sorted(reaches.get(node, {}).values())}"
        for node in graph.nodes
        if stored.get(node, {}) != reaches.get(node, {})
    ]
    for node, status in session.exec(select(Artifact.id, Artifact.status)):
        expected = effective_status(
            node,
            compromised=compromised,
            sources=reaches.get(node, {}).keys(),
            cleared=cleared,
            confirmed=confirmed,
        )
        if status != expected.value:
            problems.append(f"artifact {node}: stored status {status} != recomputed {expected}")
    return (
        problems
        + deployed_paths.differences(session)
        + audit_state.manifest_differences(session)
        + audit_state.audit_differences(session)
    )


def source_ids(session: Session, artifact_id: int) -> Sequence[int]:
    """The compromised sources currently reaching an artifact."""
    return session.exec(
        select(Infection.source_id).where(Infection.artifact_id == artifact_id)
    ).all()
