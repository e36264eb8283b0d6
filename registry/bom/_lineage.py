"""The part of the lineage a bill of materials describes: a model and all its ancestors."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from registry.service.graph import ancestor_rows, names_of, parent_links
from registry.service.refs import ref_of, resolve
from registry.tables import Artifact
from registry.vocabulary import Kind


@dataclass(frozen=True)
class Lineage:
    """A root model, every ancestor (models and datasets) and the edges between them.

    ``nodes`` is sorted by (kind, name, version) and ``links`` by (child, parent)
    reference, so documents built from it are byte-for-byte reproducible.
    """

    root: Artifact
    nodes: tuple[Artifact, ...]
    links: tuple[tuple[Artifact, Artifact, str], ...]  # (parent, child, relation)

    def parents_of(self, child: Artifact) -> list[tuple[Artifact, str]]:
        """The direct parents of ``child`` with the relation, in reference order."""
        return [(p, r) for p, c, r in self.links if c.id == child.id]


def bom_ref(artifact: Artifact) -> str:
    """The stable identifier of an artifact inside a document: ``kind:name@version``."""
    return f"{artifact.kind}:{ref_of(artifact)}"


def collect(session: Session, ref: str) -> Lineage:
    """The lineage of model ``ref``: the model, its ancestors and every edge among them."""
    root = resolve(session, ref, kind=Kind.MODEL)
    ids = [root.id or 0, *ancestor_rows(session, root.id or 0)]
    by_id = names_of(session, ids)
    by_id[root.id or 0] = root
    nodes = tuple(sorted(by_id.values(), key=lambda a: (a.kind, a.name, a.version)))
    links = [
        (by_id[parent], by_id[child], relation)
        for parent, child, relation in parent_links(session, list(by_id))
        if parent in by_id
    ]
    links.sort(key=lambda link: (bom_ref(link[1]), bom_ref(link[0])))
    return Lineage(root=root, nodes=nodes, links=tuple(links))
