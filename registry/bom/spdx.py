"""SPDX 3.0.1 JSON-LD export of a model and its whole ancestry (AI and Dataset profiles).

Each model version is an ``ai_AIPackage`` and each dataset a
``dataset_DatasetPackage`` with the manifest digest as its SHA-256 ``Hash``;
each file is a ``software_File`` with its own hash that its package
``contains``. Lineage edges become ``ancestorOf`` (parent to child) and
``descendantOf`` (child to parent) relationships with the mbom relation as
their comment; dataset uses become ``trainedOn`` (trained_on, fine_tuned_on)
and ``testedOn`` (evaluated_on) from the model to the dataset.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sqlmodel import Session

from registry.bom._lineage import Lineage, bom_ref, collect
from registry.tables import Artifact
from registry.vocabulary import Kind, Relation

CONTEXT = "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
SPEC_VERSION = "3.0.1"
_CREATION = "_:creationinfo"
_DATASET_USES: dict[str, str] = {  # keyed by the Edge column, a Relation's value
    Relation.TRAINED_ON: "trainedOn",
    Relation.FINE_TUNED_ON: "trainedOn",
    Relation.EVALUATED_ON: "testedOn",
}

Json = dict[str, Any]


def export_spdx3(session: Session, ref: str, *, created: datetime | None = None) -> Json:
    """An SPDX 3.0.1 JSON-LD document for model ``ref`` and its ancestry.

    SPDX requires a creation time: ``created`` when given, else the time the
    model was registered, so the same registry state gives the same document.
    """
    lineage = collect(session, ref)
    base = f"urn:mbom:{quote(bom_ref(lineage.root), safe='')}:"
    when = (created or lineage.root.created_at).astimezone(UTC).replace(microsecond=0)
    tool = base + "agent:mbom"
    graph: list[Json] = [
        {
            "type": "CreationInfo",
            "@id": _CREATION,
            "specVersion": SPEC_VERSION,
            "created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "createdBy": [tool],
        },
        _element("SoftwareAgent", tool, name="mbom"),
    ]
    graph += _publishers(lineage, base)
    for artifact in lineage.nodes:
        graph += _package(artifact, base)
    graph += _relationships(lineage, base)
    document = _element(
        "SpdxDocument",
        base + "document",
        name=f"mbom lineage of {bom_ref(lineage.root)}",
        rootElement=[_id(base, lineage.root)],
        element=[e["spdxId"] for e in graph if "spdxId" in e],
        profileConformance=["core", "software", "ai", "dataset"],
    )
    return {"@context": CONTEXT, "@graph": [*graph, document]}


def _element(kind: str, spdx_id: str, **fields: Any) -> Json:
    return {"type": kind, "spdxId": spdx_id, "creationInfo": _CREATION, **fields}


def _id(base: str, artifact: Artifact) -> str:
    return base + quote(bom_ref(artifact), safe=":@")


def _publisher_id(base: str, publisher: str) -> str:
    return base + "publisher:" + quote(publisher, safe="")


def _publishers(lineage: Lineage, base: str) -> list[Json]:
    names = sorted({a.publisher for a in lineage.nodes if a.publisher})
    return [_element("Organization", _publisher_id(base, n), name=n) for n in names]


def _hash(digest: str) -> Json:
    return {"type": "Hash", "algorithm": "sha256", "hashValue": digest.removeprefix("sha256:")}


def _package(artifact: Artifact, base: str) -> list[Json]:
    fields: Json = {"name": artifact.name, "software_packageVersion": artifact.version}
    if artifact.kind == Kind.DATASET:
        kind = "dataset_DatasetPackage"
        fields |= {"software_primaryPurpose": "data", "dataset_datasetType": ["other"]}
    else:
        kind = "ai_AIPackage"
        fields["software_primaryPurpose"] = "model"
    if artifact.digest:
        fields["verifiedUsing"] = [_hash(artifact.digest)]
    if artifact.source:
        fields["software_downloadLocation"] = artifact.source
    if artifact.publisher:
        fields["suppliedBy"] = _publisher_id(base, artifact.publisher)
    fields["comment"] = (
        f"mbom status {artifact.status}, finding {artifact.finding}"
        + (f", format {artifact.format}" if artifact.format else "")
        + (", placeholder" if artifact.placeholder else "")
    )
    package = _element(kind, _id(base, artifact), **fields)
    files = [
        _element(
            "software_File",
            f"{_id(base, artifact)}/{quote(path)}",
            name=path,
            verifiedUsing=[_hash(sha256)],
            comment=f"{size} bytes",
        )
        for path, size, sha256 in artifact.manifest or []
    ]
    if not files:
        return [package]
    contains = _element(
        "Relationship",
        f"{_id(base, artifact)}/contains",
        relationshipType="contains",
        to=[f["spdxId"] for f in files],
        **{"from": package["spdxId"]},
    )
    return [package, *files, contains]


def _relationships(lineage: Lineage, base: str) -> list[Json]:
    found: list[Json] = []
    for parent, child, relation in lineage.links:
        parent_id, child_id = _id(base, parent), _id(base, child)
        if parent.kind == Kind.DATASET:
            found.append(
                _relationship(base, child_id, _DATASET_USES[relation], parent_id, relation)
            )
            continue
        found.append(_relationship(base, parent_id, "ancestorOf", child_id, relation))
        found.append(_relationship(base, child_id, "descendantOf", parent_id, relation))
    return found


def _relationship(base: str, source: str, kind: str, target: str, relation: str) -> Json:
    name = f"{source.removeprefix(base)}/{kind}/{target.removeprefix(base)}"
    return _element(
        "Relationship",
        base + "relationship:" + quote(name, safe=":@"),
        relationshipType=kind,
        to=[target],
        comment=f"mbom relation {relation}",
        **{"from": source},
    )
