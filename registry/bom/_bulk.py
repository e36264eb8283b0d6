"""Set-based import of a BOM none of whose components is registered yet.

The common case of a large import (a first import into a registry, a new
lineage) touches no registered artifact, so its lineage is a new subgraph of
its own: no edge leads into it from the registry, no flag or clearance reaches
it, and every status in it is ``clean``. Then the whole import is a few bulk
``INSERT``\\ s: the artifacts (ids returned in order), the edges, the closure
rows computed in memory in topological order (shortest depth; ``via`` the
smallest parent on a tie, as :func:`registry.service.graph.add_edges` writes
them), and the audit events :func:`registry.bom.importer.import_cyclonedx`
records one by one. A document naming any registered artifact returns ``None``
and takes the per-component path (reuse, placeholder filling, reconciliation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from lineage import Relation
from registry.bom.reader import Node
from registry.errors import LineageCycle
from registry.identity import Actor
from registry.service import audit
from registry.service.refs import ref_of
from registry.tables import Artifact, Edge, LineageClosure

__all__ = ["import_new"]

Stored = Mapping[str, tuple[Artifact, bool]]
LinksOf = Callable[[Node, Stored, Mapping[str, str]], list[tuple[Artifact, Relation]]]
_BATCH = 5000
_NAMES_PER_QUERY = 500


def import_new(
    session: Session,
    nodes: Mapping[str, Node],
    aliases: Mapping[str, str],
    *,
    actor: Actor,
    make: Callable[[Node], Artifact],
    links_of: LinksOf,
) -> list[str] | None:
    """Register every node, edge, closure row and audit event in bulk; the refs registered.

    ``None`` (and nothing written) when some node is registered already.
    ``make`` builds a node's unsaved artifact and ``links_of`` its parents, as
    the per-component path does. Raises what ``links_of`` raises and
    :class:`~registry.errors.LineageCycle` for a cyclic document.
    """
    if _any_registered(session, nodes.values()):
        return None
    artifacts = {key: make(node) for key, node in nodes.items()}
    ids = _insert_artifacts(session, artifacts.values())
    for artifact, artifact_id in zip(artifacts.values(), ids, strict=True):
        artifact.id = artifact_id
    stored = {key: (artifact, True) for key, artifact in artifacts.items()}
    parents = {key: _unique(links_of(node, stored, aliases)) for key, node in nodes.items()}
    order = _topological(artifacts, parents)
    _insert(session, Edge, _edge_rows(artifacts, parents))
    _insert(session, LineageClosure, _closure_rows(order, artifacts, parents))
    audit.record_many(session, actor=actor, events=_events(nodes, artifacts, parents))
    return sorted(ref_of(a) for a in artifacts.values())


def _any_registered(session: Session, nodes: Iterable[Node]) -> bool:
    wanted = {(node.kind, node.name, node.version) for node in nodes}
    names = sorted({name for _, name, _ in wanted})
    for start in range(0, len(names), _NAMES_PER_QUERY):
        chunk = names[start : start + _NAMES_PER_QUERY]
        query = select(Artifact.kind, Artifact.name, Artifact.version).where(
            col(Artifact.name).in_(chunk)
        )
        if any(tuple(row) in wanted for row in session.exec(query)):
            return True
    return False


def _insert_artifacts(session: Session, artifacts: Iterable[Artifact]) -> list[int]:
    rows = [a.model_dump(exclude={"id"}) for a in artifacts]
    ids: list[int] = []
    for batch in _batches(rows):
        query = insert(Artifact).returning(col(Artifact.id), sort_by_parameter_order=True)
        ids.extend(session.execute(query, batch).scalars())
    return ids


def _unique(links: list[tuple[Artifact, Relation]]) -> list[tuple[Artifact, Relation]]:
    seen: set[int | None] = set()
    kept = []
    for parent, relation in links:
        if parent.id not in seen:
            seen.add(parent.id)
            kept.append((parent, relation))
    return kept


def _topological(
    artifacts: Mapping[str, Artifact], parents: Mapping[str, list[tuple[Artifact, Relation]]]
) -> list[int]:
    """The new artifacts' ids, parents first; a cycle is a :class:`LineageCycle`."""
    import networkx as nx  # heavy: imported where a graph is built

    graph = nx.DiGraph()
    graph.add_nodes_from(a.id for a in artifacts.values())
    graph.add_edges_from(
        (parent.id, artifacts[key].id) for key, links in parents.items() for parent, _ in links
    )
    try:
        return list(nx.topological_sort(graph))
    except nx.NetworkXUnfeasible as exc:
        names = {a.id: ref_of(a) for a in artifacts.values()}
        cycle = [names[parent] for parent, _ in nx.find_cycle(graph)]
        raise LineageCycle([*cycle, cycle[0]]) from exc


def _edge_rows(
    artifacts: Mapping[str, Artifact], parents: Mapping[str, list[tuple[Artifact, Relation]]]
) -> Iterator[dict[str, Any]]:
    for key, links in parents.items():
        for parent, relation in links:
            child = artifacts[key].id
            yield {"parent_id": parent.id, "child_id": child, "relation": relation.value}


def _closure_rows(
    order: Sequence[int],
    artifacts: Mapping[str, Artifact],
    parents: Mapping[str, list[tuple[Artifact, Relation]]],
) -> Iterator[dict[str, Any]]:
    """Every (ancestor, descendant) pair of the new subgraph: shortest depth, smallest via."""
    parent_ids = {artifacts[key].id: [p.id for p, _ in links] for key, links in parents.items()}
    above: dict[int, dict[int, tuple[int, int]]] = {}
    for node in order:
        rows: dict[int, tuple[int, int]] = {}
        for parent in parent_ids.get(node, ()):
            assert parent is not None
            for ancestor, (depth, _) in [(parent, (0, parent)), *above[parent].items()]:
                candidate = (depth + 1, parent)
                if ancestor not in rows or candidate < rows[ancestor]:
                    rows[ancestor] = candidate
        above[node] = rows
        for ancestor, (depth, via) in rows.items():
            yield {"ancestor_id": ancestor, "descendant_id": node, "depth": depth, "via_id": via}


def _events(
    nodes: Mapping[str, Node],
    artifacts: Mapping[str, Artifact],
    parents: Mapping[str, list[tuple[Artifact, Relation]]],
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The events the per-component path records: every artifact, then every child's links."""
    for key, node in nodes.items():
        artifact = artifacts[key]
        ref = ref_of(artifact)
        if artifact.placeholder:
            via = f"bom.import {node.where}"
            details = {"kind": node.kind, "source": node.source, "digest": node.digest, "via": via}
            yield "placeholder.create", ref, details
        else:
            yield (
                "bom.import",
                ref,
                {
                    "kind": artifact.kind,
                    "digest": artifact.digest,
                    "placeholder": False,
                    "component": node.where,
                },
            )
    for key, links in parents.items():
        if links:
            yield (
                "lineage.add",
                ref_of(artifacts[key]),
                {
                    "parents": [[ref_of(p), r.value] for p, r in links],
                    "via": "bom.import",
                },
            )


def _insert(session: Session, table: type[Any], rows: Iterator[dict[str, Any]]) -> None:
    for batch in _batches(rows):
        session.execute(insert(table), batch)


def _batches(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
