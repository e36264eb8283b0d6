"""CycloneDX 1.6 / 1.7 ML-BOM export of a model and its whole ancestry.

cyclonedx-python-lib cannot emit ``modelCard`` or ``data`` components, so the
JSON is built here by hand; the tests validate every document against the
official 1.6 JSON schema.

Mapping:

- the exported model is ``metadata.component``; every ancestor model is a
  ``machine-learning-model`` component and every dataset a ``data`` component,
  each with the stable ``bom-ref`` ``model:name@version`` / ``dataset:name@version``;
- the manifest digest is the component's SHA-256 hash; each file is a nested
  ``file`` component with its own SHA-256 (CycloneDX hashes carry no file name,
  so one hash list could not say which file each digest belongs to) and its size
  as the ``mbom:size`` property;
- ``pedigree.ancestors`` lists a model's direct parents (name, version, digest and
  the ``mbom:relation``); each parent is itself a component with its own pedigree,
  so the chain reaches the roots; ``dependencies`` repeats the graph by bom-ref;
- ``vulnerabilities`` has one entry per compromised source reaching the model,
  with the path, the analysis state and the scan evidence;
- a Hugging Face source (``hf://org/name@rev``) is written as the ``https://``
  Hub URL (``distribution``) followed by the ``hf://`` source itself, and a model
  from the Hub has the purl ``pkg:huggingface/org/name@rev``; a purl and
  licences an import recorded (``bom.metadata``) or a Hub import read from the
  model card (``hf.import``) are written back (an SPDX id as ``id``, anything
  else as ``name``).

The document is the same for ``--spec-version`` 1.6 and 1.7 (1.7 adds nothing
this mapping uses); each is validated against its official schema in the tests.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlmodel import Session, col, select

from registry.bom._lineage import Lineage, bom_ref, collect
from registry.errors import InvalidInput
from registry.hf import HubRef
from registry.schemas import InfectionSource
from registry.service.admission import summarise
from registry.service.flags import infection_sources
from registry.service.refs import ref_of, resolve
from registry.service.scans import latest_scan
from registry.tables import Artifact, AuditEvent, Clearance, Flag
from registry.vocabulary import Kind, Status

SPEC_VERSIONS = ("1.6", "1.7")
HUB = "https://huggingface.co"
TOOL_NAME = "mbom"
PROP = "mbom:"
_SERIAL_NAMESPACE = uuid.UUID("6f1d3c1e-8a55-4c59-9a53-6d626f6d2d63")

Json = dict[str, Any]


def export_cyclonedx(
    session: Session,
    ref: str,
    *,
    spec_version: str = "1.6",
    timestamp: datetime | None = None,
) -> Json:
    """A CycloneDX ML-BOM for model ``ref`` and its whole ancestry, as a JSON object.

    The document is deterministic: the serial number is derived from its content
    and a timestamp appears only when one is given.
    """
    if spec_version not in SPEC_VERSIONS:
        raise InvalidInput(
            f"CycloneDX {spec_version} is not supported",
            hint=f"use --spec-version {' or '.join(SPEC_VERSIONS)}",
        )
    lineage = collect(session, ref)
    records = _records(session, lineage.nodes)
    metadata: Json = {
        "tools": {"components": [{"type": "application", "name": TOOL_NAME}]},
        "component": _component(lineage, lineage.root, records),
    }
    if timestamp is not None:
        metadata["timestamp"] = timestamp.isoformat()
    document: Json = {
        "bomFormat": "CycloneDX",
        "specVersion": spec_version,
        "version": 1,
        "metadata": metadata,
        "components": [
            _component(lineage, a, records) for a in lineage.nodes if a.id != lineage.root.id
        ],
        "dependencies": _dependencies(lineage),
    }
    vulnerabilities = _vulnerabilities(session, lineage)
    if vulnerabilities:
        document["vulnerabilities"] = vulnerabilities
    document["serialNumber"] = serial_number(document)
    return document


def serial_number(document: Json) -> str:
    """A ``urn:uuid:`` derived from the document's content (without its serial number)."""
    body = {k: v for k, v in document.items() if k != "serialNumber"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"urn:uuid:{uuid.uuid5(_SERIAL_NAMESPACE, canonical)}"


Records = dict[tuple[str, str], Json]


def _records(session: Session, nodes: tuple[Artifact, ...]) -> Records:
    """The licences and purl recorded for each node at import, by (kind, ref); latest wins."""
    refs = {ref_of(a) for a in nodes}
    found: Records = {}
    events = session.exec(
        select(AuditEvent.operation, AuditEvent.subject, AuditEvent.details)
        .where(col(AuditEvent.operation).in_(("bom.metadata", "hf.import")))
        .where(col(AuditEvent.subject).in_(sorted(refs)))
        .order_by(col(AuditEvent.seq))
    )
    for operation, subject, details in events:
        if operation == "hf.import":
            licence = details.get("license")
            record: Json = {"licenses": [licence]} if isinstance(licence, str) else {}
            found.setdefault((Kind.MODEL, subject), {}).update(record)
            continue
        kind = details.get("kind", Kind.MODEL)
        found[kind, subject] = {k: details[k] for k in ("licenses", "purl") if k in details}
    return found


def _component(lineage: Lineage, artifact: Artifact, records: Records) -> Json:
    record = records.get((artifact.kind, ref_of(artifact)), {})
    if artifact.kind == Kind.DATASET:
        return _data_component(artifact, record)
    component: Json = {
        "type": "machine-learning-model",
        "bom-ref": bom_ref(artifact),
        **_identity(artifact),
    }
    if artifact.publisher:
        component["supplier"] = {"name": artifact.publisher}
        component["authors"] = [{"name": artifact.publisher}]
    component |= _hashes(artifact)
    component |= _licences(record)
    purl = record.get("purl") or _hub_purl(artifact)
    if purl:
        component["purl"] = purl
    component |= _references(artifact)
    component["modelCard"] = _model_card(lineage, artifact)
    parents = lineage.parents_of(artifact)
    if parents:
        component["pedigree"] = {"ancestors": [_ancestor(p, rel) for p, rel in parents]}
    files = [_file_component(artifact, entry) for entry in artifact.manifest or []]
    if files:
        component["components"] = files
    component["properties"] = _status_properties(artifact)
    return component


def _identity(artifact: Artifact) -> Json:
    return {"name": artifact.name, "version": artifact.version}


def _hashes(artifact: Artifact) -> Json:
    if not artifact.digest:
        return {}
    return {"hashes": [{"alg": "SHA-256", "content": artifact.digest.removeprefix("sha256:")}]}


def _licences(record: Json) -> Json:
    """``licenses``: an SPDX id as ``id`` (its canonical case), anything else as ``name``."""
    from cyclonedx.spdx import fixup_id  # the SPDX list: loaded only when there are licences

    found = []
    for text in record.get("licenses") or []:
        spdx = fixup_id(str(text))
        found.append({"license": {"id": spdx} if spdx else {"name": str(text)[:200]}})
    return {"licenses": found} if found else {}


def _hub(artifact: Artifact) -> HubRef | None:
    hub = HubRef.from_source(artifact.source)
    return hub if hub is not None and hub.kind == artifact.kind else None


def _hub_purl(artifact: Artifact) -> str | None:
    """``pkg:huggingface/org/name@rev`` for a model whose source is a Hub repository."""
    hub = _hub(artifact)
    if hub is None or artifact.kind != Kind.MODEL:
        return None
    path = "/".join(quote(part, safe="") for part in hub.repo_id.split("/"))
    return f"pkg:huggingface/{path}" + (f"@{quote(hub.revision, safe='')}" if hub.revision else "")


def _references(artifact: Artifact) -> Json:
    """The source as an external reference; a Hub source as its https URL first."""
    if not artifact.source:
        return {}
    references = [{"type": "distribution", "url": artifact.source}]
    hub = _hub(artifact)
    if hub is not None:
        page = f"{HUB}/{'datasets/' if hub.kind == Kind.DATASET else ''}{hub.repo_id}"
        page += f"/tree/{quote(hub.revision, safe='')}" if hub.revision else ""
        references.insert(0, {"type": "distribution", "url": page})
    return {"externalReferences": references}


def _data_component(artifact: Artifact, record: Json) -> Json:
    component: Json = {"type": "data", "bom-ref": bom_ref(artifact), **_identity(artifact)}
    component |= _hashes(artifact)
    component |= _licences(record)
    if record.get("purl"):
        component["purl"] = record["purl"]
    component |= _references(artifact)
    component["data"] = [{"type": "dataset", "name": artifact.name}]
    files = [_file_component(artifact, entry) for entry in artifact.manifest or []]
    if files:
        component["components"] = files
    component["properties"] = _status_properties(artifact)
    return component


def _file_component(owner: Artifact, entry: list[Any]) -> Json:
    path, size, sha256 = entry
    return {
        "type": "file",
        "bom-ref": f"{bom_ref(owner)}#{path}",
        "name": path,
        "hashes": [{"alg": "SHA-256", "content": sha256}],
        "properties": [{"name": PROP + "size", "value": str(size)}],
    }


def _model_card(lineage: Lineage, model: Artifact) -> Json:
    datasets = [(p, rel) for p, rel in lineage.parents_of(model) if p.kind == Kind.DATASET]
    parameters: Json = {}
    if model.format:
        parameters["modelArchitecture"] = model.format
    if datasets:
        parameters["datasets"] = [{"ref": bom_ref(d)} for d, _ in datasets]
    card: Json = {"bom-ref": f"{bom_ref(model)}#model-card"}
    if parameters:
        card["modelParameters"] = parameters
    uses = [{"name": PROP + "dataset:" + rel, "value": bom_ref(d)} for d, rel in datasets]
    if uses:
        card["properties"] = uses
    return card


def _ancestor(parent: Artifact, relation: str) -> Json:
    return {
        "type": "data" if parent.kind == Kind.DATASET else "machine-learning-model",
        **_identity(parent),
        **_hashes(parent),
        "properties": [
            {"name": PROP + "ref", "value": bom_ref(parent)},
            {"name": PROP + "relation", "value": relation},
        ],
    }


def _status_properties(artifact: Artifact) -> list[Json]:
    properties = [
        {"name": PROP + "finding", "value": artifact.finding},
        {"name": PROP + "status", "value": artifact.status},
    ]
    if artifact.format:
        properties.append({"name": PROP + "format", "value": artifact.format})
    if artifact.placeholder:
        properties.append({"name": PROP + "placeholder", "value": "true"})
    elif artifact.kind == Kind.MODEL:
        # Whether the registry holds the files (and scanned them itself); "false": the
        # version is metadata-only and its scans are client-reported. An import never
        # takes this from a document: imported versions are metadata-only.
        properties.append(
            {"name": PROP + "stored", "value": "true" if artifact.stored else "false"}
        )
    return properties


def _dependencies(lineage: Lineage) -> list[Json]:
    return [
        {
            "ref": bom_ref(node),
            "dependsOn": sorted(bom_ref(p) for p, _ in lineage.parents_of(node)),
        }
        for node in lineage.nodes
    ]


def _vulnerabilities(session: Session, lineage: Lineage) -> list[Json]:
    root = lineage.root
    sources = infection_sources(session, root)
    reasons = list(
        session.exec(select(Flag.reason).where(Flag.artifact_id == root.id, Flag.active))
    )
    if reasons:  # flagged itself: its own compromise comes first
        own = ref_of(root)
        sources.insert(
            0,
            InfectionSource(
                source=own, source_kind=Kind.MODEL, depth=0, path=[own], reasons=reasons
            ),
        )
    return [_vulnerability(session, root, source) for source in sources]


def _vulnerability(session: Session, root: Artifact, source: InfectionSource) -> Json:
    origin = resolve(session, source.source, kind=source.source_kind)
    path = " -> ".join(source.path)
    reasons = "; ".join(source.reasons) or "flagged compromised"
    scan = latest_scan(session, origin)
    evidence = f"{scan.verdict}: {summarise(scan)}" if scan else None
    state, detail = _analysis(session, root, origin, source)
    properties = [
        {"name": PROP + "source", "value": bom_ref(origin)},
        {"name": PROP + "path", "value": path},
        {"name": PROP + "depth", "value": str(source.depth)},
    ]
    if evidence:
        properties.append({"name": PROP + "scan", "value": evidence})
    return {
        "bom-ref": f"compromise:{source.source}",
        "id": f"MBOM-COMPROMISED:{bom_ref(origin)}",
        "source": {"name": TOOL_NAME},
        "description": f"{source.source_kind} {source.source} is compromised: {reasons}",
        "detail": f"{bom_ref(root)} descends from it along {path}",
        "analysis": {"state": state, "detail": detail},
        "affects": [{"ref": bom_ref(root)}],
        "properties": properties,
    }


def _analysis(
    session: Session, root: Artifact, origin: Artifact, source: InfectionSource
) -> tuple[str, str]:
    if origin.id == root.id:
        return "exploitable", "flagged compromised directly"
    if source.cleared:
        reason = session.exec(
            select(Clearance.reason).where(
                Clearance.artifact_id == root.id,
                Clearance.source_id == origin.id,
                Clearance.active,
            )
        ).first()
        return "resolved", f"cleared by an approver: {reason or 'no reason recorded'}"
    if root.status == Status.CONFIRMED:
        return "exploitable", "the source's trigger replays on this model (confirmed)"
    return "in_triage", "infected through its lineage; not confirmed nor cleared"
