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
from dataclasses import dataclass
from typing import Any, cast

from sqlmodel import Session, col, select

from lineage import Relation
from registry.bom.reader import Node
from registry.errors import LineageCycle
from registry.identity import Actor
from registry.service import audit
from registry.service._bulk_insert import insert_rows
from registry.service.refs import ref_of
from registry.tables import Artifact, Edge, LineageClosure
from registry.vocabulary import Kind

__all__ = ["import_new"]

Stored = Mapping[str, tuple[Artifact, bool]]
LinksOf = Callable[[Node, Stored, Mapping[str, str]], list[tuple[Artifact, Relation]]]
_COLUMNS = tuple(c.name for c in Artifact.__table__.columns if c.name != "id")  # type: ignore[attr-defined]
_NAMES_PER_QUERY = 500


@dataclass
class _New:
    """A new artifact's row: what the link rules read (``id``, ``name``, ``version``) and more."""

    row: dict[str, Any]
    id: int | None = None

    @property
    def name(self) -> str:
        return str(self.row["name"])

    @property
    def version(self) -> str:
        return str(self.row["version"])

    @property
    def placeholder(self) -> bool:
        return bool(self.row["placeholder"])


def import_new(
    session: Session,
    nodes: Mapping[str, Node],
    aliases: Mapping[str, str],
    *,
    actor: Actor,
    fields: Callable[[Node], dict[str, Any]],
    links_of: LinksOf,
) -> list[str] | None:
    """Register every node, edge, closure row and audit event in bulk; the refs registered.

    ``None`` (and nothing written) when some node is registered already.
    ``fields`` gives a node's columns and ``links_of`` its parents, as the
    per-component path does. Raises what ``links_of`` raises and
    :class:`~registry.errors.LineageCycle` for a cyclic document.
    """
    if _any_registered(session, nodes.values()):
        return None
    defaults = _defaults(actor)
    new = {key: _New({**defaults, **fields(node)}) for key, node in nodes.items()}
    _insert_artifacts(session, new)
    # The link rules read only id, name and version: rows stand in for artifacts.
    stored = cast(Stored, {key: (artifact, True) for key, artifact in new.items()})
    parents = {key: _unique(links_of(node, stored, aliases)) for key, node in nodes.items()}
    order = _topological(new, parents)
    _insert(session, Edge, _edge_rows(new, parents))
    _insert(session, LineageClosure, _closure_rows(order, new, parents))
    audit.record_many(session, actor=actor, events=_events(nodes, new, parents))
    return sorted(ref_of(a) for a in new.values())


def _defaults(actor: Actor) -> dict[str, Any]:
    """Every column's value for a new artifact (the model's defaults), ``id`` aside."""
    template = Artifact(kind=Kind.MODEL, name="-", version="-", created_by=actor.user)
    return {c: getattr(template, c) for c in _COLUMNS}


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


def _insert_artifacts(session: Session, new: Mapping[str, _New]) -> None:
    """Insert the rows and read their ids back by name (per-row RETURNING is slow on SQLite)."""
    _insert(session, Artifact, (artifact.row for artifact in new.values()))
    by_key = {(a.row["kind"], a.name, a.version): a for a in new.values()}
    names = sorted({a.name for a in new.values()})
    for start in range(0, len(names), _NAMES_PER_QUERY):
        query = select(Artifact.id, Artifact.kind, Artifact.name, Artifact.version).where(
            col(Artifact.name).in_(names[start : start + _NAMES_PER_QUERY])
        )
        for artifact_id, kind, name, version in session.exec(query):
            if (kind, name, version) in by_key:
                by_key[kind, name, version].id = artifact_id


def _unique(links: list[tuple[Artifact, Relation]]) -> list[tuple[Artifact, Relation]]:
    seen: set[int | None] = set()
    kept = []
    for parent, relation in links:
        if parent.id not in seen:
            seen.add(parent.id)
            kept.append((parent, relation))
    return kept


def _topological(
    artifacts: Mapping[str, _New], parents: Mapping[str, list[tuple[Artifact, Relation]]]
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
    artifacts: Mapping[str, _New], parents: Mapping[str, list[tuple[Artifact, Relation]]]
) -> Iterator[dict[str, Any]]:
    for key, links in parents.items():
        for parent, relation in links:
            child = artifacts[key].id
            yield {"parent_id": parent.id, "child_id": child, "relation": relation.value}


def _closure_rows(
    order: Sequence[int],
    artifacts: Mapping[str, _New],
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
    artifacts: Mapping[str, _New],
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
                    "kind": node.kind,
                    "digest": node.digest,
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


def _insert(session: Session, table: type[Any], rows: Iterable[dict[str, Any]]) -> None:
    insert_rows(session, table, rows)
