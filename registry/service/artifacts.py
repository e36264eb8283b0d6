"""Registering, finding, identifying and verifying model and dataset versions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from lineage import MODEL_RELATIONS, Relation, Status
from registry import signing
from registry.errors import (
    AlreadyExists,
    DuplicateContent,
    InvalidInput,
    LineageCycle,
    NotFound,
    SignatureError,
)
from registry.identity import Actor
from registry.manifest import Manifest, ManifestEntry, compare
from registry.schemas import (
    ArtifactPublic,
    FileCheckPublic,
    ParentLink,
    ScanProvenance,
    SignatureCheck,
    VerifyReport,
)
from registry.service import (
    admission,
    audit,
    behavior,
    deployed_paths,
    ossf_signing,
    paging,
    placeholders,
    policy,
)
from registry.service._tx import mutation
from registry.service.authorization import (
    Operation,
    authorize,
    authorize_model,
    authorize_quarantine,
)
from registry.service.graph import add_edges
from registry.service.refs import Ref, ref_of, resolve
from registry.service.status import recompute
from registry.service.stored import claim_files
from registry.tables import Artifact, Edge, PublisherKey, Signature
from registry.vocabulary import Kind
from scanning.behavioral.report import BehavioralReport, BehaviorVerdict, ScanProfile
from scanning.report import ScanReport, Verdict

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def check_not_own_parent(name: str, version: str, parents: Sequence[str]) -> None:
    """A version cannot be its own parent (:class:`~registry.errors.LineageCycle`)."""
    if f"{name}@{version}" in {str(Ref.parse(p)) for p in parents}:
        raise LineageCycle([f"{name}@{version}", f"{name}@{version}"])


@mutation
def register_model(
    session: Session,
    *,
    actor: Actor,
    name: str,
    version: str,
    manifest: Manifest,
    parents: Sequence[str] = (),
    relation: Relation | None = None,
    datasets: Sequence[tuple[str, Relation]] = (),
    publisher: str | None = None,
    source: str | None = None,
    format: str | None = None,
    team: str | None = None,
    signature: str | None = None,
    allow_duplicate_content: bool = False,
    override: str | None = None,
    scan: ScanReport | None = None,
    model_signing_bundle: dict[str, Any] | None = None,
    model_signing_public_key: str | None = None,
    profile: ScanProfile | None = None,
    behavioral: BehavioralReport | None = None,
    provenance: ScanProvenance = ScanProvenance.CLIENT,
    stored: bool = False,
) -> ArtifactPublic:
    """Record a model version, its lineage edges and dataset uses in one transaction.

    ``stored``: the registry holds every file of ``manifest`` in its artifact store
    (uploaded before this call); each is claimed and recorded, or the registration
    is refused naming the missing ones. Otherwise the version is metadata-only.

    ``profile`` is the model's own behavioral scan profile (descendants inherit
    it); ``behavioral`` the behavioral scan run on admission (see
    :mod:`registry.service.behavior`): compromised flags the model with the
    recovered trigger kept as evidence, suspicious or failed needs an override.

    ``scan`` is the static scan of the files (see :mod:`registry.service.admission`):
    malicious registers the model quarantined, suspicious needs an override.
    ``model_signing_bundle`` (an OpenSSF model-signing signature, verified with
    ``model_signing_public_key`` against ``manifest``) is stored with the model.
    ``provenance`` records who ran the scans: ``client`` (the default, what the
    API passes) or ``registry`` (the embedded registry's own); only registry-run
    behavioral scans calibrate others.
    """
    authorize(actor, Operation.REGISTER_MODEL, team=team)
    placeholder = placeholders.claim(
        session, kind=Kind.MODEL, name=name, version=version, source=source
    )
    authorize_quarantine(session, actor, placeholder, flags=_quarantines(scan, behavioral))
    if not manifest.entries:
        raise InvalidInput("the manifest lists no files", hint="a model has at least one file")
    check_not_own_parent(name, version, parents)
    policy.require_team(session, team)
    links = _parent_links(session, parents, relation) + _dataset_links(session, datasets)
    if not allow_duplicate_content:
        _refuse_duplicate_content(session, manifest.digest)
    fingerprint = _check_signature(session, publisher, manifest.digest, signature)
    model_signing = ossf_signing.check_bundle(
        model_signing_bundle, model_signing_public_key, manifest
    )
    policy.enforce(
        session,
        actor=actor,
        violations=policy.registration_violations(
            session, team=team, parents=_with_kept(session, placeholder, links)
        ),
        override=override,
        team=team,
        subject=f"{name}@{version}",
    )
    admission.check_admission(
        session, scan, actor=actor, override=override, team=team, subject=f"{name}@{version}"
    )
    behavior.check_admission(
        session, behavioral, actor=actor, override=override, team=team, subject=f"{name}@{version}"
    )
    artifact = _insert_or_fill(
        session,
        placeholder,
        Artifact(
            kind=Kind.MODEL,
            name=name,
            version=version,
            publisher=publisher,
            source=source,
            format=format,
            team=team,
            digest=manifest.digest,
            manifest=[[e.path, e.size, e.sha256] for e in manifest.entries],
            total_size=manifest.total_size,
            created_by=actor.user,
        ),
        actor=actor,
    )
    add_edges(session, artifact, placeholders.new_links(session, artifact, links))
    if stored:
        claim_files(session, artifact, manifest)
    if fingerprint and signature:
        session.add(
            Signature(artifact_id=artifact.id or 0, fingerprint=fingerprint, signature=signature)
        )
    recompute(session, [artifact.id or 0])
    admission.record_scan(session, artifact, scan, actor=actor, provenance=provenance)
    behavior.admit(
        session, artifact, profile=profile, report=behavioral, actor=actor, provenance=provenance
    )
    audit.record(
        session,
        actor=actor,
        operation="register",
        subject=ref_of(artifact),
        details={
            "kind": Kind.MODEL,
            "digest": manifest.digest,
            "team": team,
            "parents": [[ref_of(p), r.value] for p, r in links],
            "signed_by": fingerprint,
            "scan": scan.verdict.value if scan else None,
            "behavioral": behavioral.verdict.value if behavioral else None,
            "stored": stored,
            "scanned_by": provenance.value,
        },
    )
    admission.quarantine_known_content(session, [artifact], actor=actor)
    ossf_signing.store_bundle(session, artifact, model_signing, actor=actor)
    session.refresh(artifact)
    return artifact_public(session, artifact)


@mutation
def add_parents(
    session: Session,
    ref: str,
    *,
    actor: Actor,
    parents: Sequence[str],
    relation: Relation | None = None,
    datasets: Sequence[tuple[str, Relation]] = (),
) -> ArtifactPublic:
    """Add lineage edges to a registered model (a base or dataset recorded late).

    Refused when an edge would make the lineage cyclic; the model and its
    descendants are recomputed, so a late compromised parent infects them.
    """
    child = resolve(session, ref, kind=Kind.MODEL)
    authorize_model(session, actor, Operation.CHANGE_LINEAGE, artifact=child)
    if not parents and not datasets:
        raise InvalidInput("give at least one --parent or --dataset to add")
    known = dict(
        session.exec(
            select(Edge.parent_id, Artifact.kind)
            .join(Artifact, col(Artifact.id) == col(Edge.parent_id))
            .where(Edge.child_id == child.id)
        ).all()
    )
    if relation is None and parents:
        base_models = sum(1 for kind in known.values() if kind == Kind.MODEL)
        relation = Relation.MERGE if len(parents) + base_models > 1 else Relation.FINETUNE
    links = _parent_links(session, parents, relation, allow_single_merge=True)
    links += _dataset_links(session, datasets)
    if any(parent.id in known for parent, _ in links):
        raise InvalidInput("that edge exists already", hint=f"see mbom ancestors {ref_of(child)}")
    policy.refuse_lineage(session, child=child, parents=links)
    add_edges(session, child, links)
    deployed_paths.refresh_below(session, child.id or 0)
    changes = recompute(session, [child.id or 0])
    audit.record(
        session,
        actor=actor,
        operation="lineage.add",
        subject=ref_of(child),
        details={"parents": [[ref_of(p), r.value] for p, r in links], "changed": len(changes)},
    )
    session.refresh(child)
    return artifact_public(session, child)


@mutation
def register_dataset(
    session: Session,
    *,
    actor: Actor,
    name: str,
    version: str,
    digest: str | None = None,
    manifest: Manifest | None = None,
    source: str | None = None,
) -> ArtifactPublic:
    """Record a dataset version by the digest of its files (or a given digest)."""
    authorize(actor, Operation.REGISTER_DATASET)
    if (digest is None) == (manifest is None):
        raise InvalidInput("give either a dataset PATH or --digest, not both or neither")
    if manifest is not None:
        digest = manifest.digest
    if digest is None or not _DIGEST.match(digest):
        raise InvalidInput(f"{digest!r} is not a digest", hint="write sha256:<64 hex digits>")
    placeholder = placeholders.claim(
        session, kind=Kind.DATASET, name=name, version=version, source=source
    )
    artifact = _insert_or_fill(
        session,
        placeholder,
        Artifact(
            kind=Kind.DATASET,
            name=name,
            version=version,
            source=source,
            digest=digest,
            manifest=[[e.path, e.size, e.sha256] for e in manifest.entries] if manifest else None,
            total_size=manifest.total_size if manifest else None,
            created_by=actor.user,
        ),
        actor=actor,
    )
    audit.record(
        session,
        actor=actor,
        operation="register",
        subject=ref_of(artifact),
        details={"kind": Kind.DATASET, "digest": digest, "source": source},
    )
    admission.quarantine_known_content(session, [artifact], actor=actor)
    session.refresh(artifact)
    return artifact_public(session, artifact)


def _quarantines(scan: ScanReport | None, behavioral: BehavioralReport | None) -> bool:
    """Whether the admission scans register the model flagged."""
    malicious = scan is not None and scan.verdict is Verdict.MALICIOUS
    return malicious or (
        behavioral is not None and behavioral.verdict is BehaviorVerdict.COMPROMISED
    )


def _with_kept(
    session: Session, placeholder: Artifact | None, links: list[tuple[Artifact, Relation]]
) -> list[tuple[Artifact, Relation]]:
    """The new links and those a filled placeholder keeps: the policy sees them all."""
    kept = policy.links_of(session, placeholder) if placeholder is not None else []
    given = {parent.id for parent, _ in links}
    return links + [(parent, relation) for parent, relation in kept if parent.id not in given]


def _insert_or_fill(
    session: Session, placeholder: Artifact | None, artifact: Artifact, *, actor: Actor
) -> Artifact:
    """Insert ``artifact``, or fill the placeholder it was claimed for (same id, edges kept)."""
    if placeholder is not None:
        return placeholders.fill(session, placeholder, artifact, actor=actor)
    session.add(artifact)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent writer won the race
        raise AlreadyExists(artifact.kind, ref_of(artifact)) from exc
    return artifact


def _parent_links(
    session: Session,
    parents: Sequence[str],
    relation: Relation | None,
    *,
    allow_single_merge: bool = False,
) -> list[tuple[Artifact, Relation]]:
    if len(set(parents)) != len(parents):
        raise InvalidInput("the same --parent is given twice")
    chosen = relation or (Relation.MERGE if len(parents) > 1 else Relation.FINETUNE)
    if chosen not in MODEL_RELATIONS:
        raise InvalidInput(f"{chosen} is a dataset use, not a relation between models")
    if chosen is Relation.MERGE and len(parents) < 2 and not allow_single_merge:
        raise InvalidInput("a merge needs at least two --parent models")
    if parents and len(parents) > 1 and chosen is not Relation.MERGE:
        raise InvalidInput(
            f"several parents make a merge, not a {chosen}", hint="use --relation merge"
        )
    return [(resolve(session, Ref.parse(p), kind=Kind.MODEL), chosen) for p in parents]


def _dataset_links(
    session: Session, datasets: Sequence[tuple[str, Relation]]
) -> list[tuple[Artifact, Relation]]:
    links = []
    for text, use in datasets:
        if not use.is_dataset_use:
            raise InvalidInput(
                f"{use} is not a dataset use", hint="use trained_on, fine_tuned_on or evaluated_on"
            )
        links.append((resolve(session, Ref.parse(text), kind=Kind.DATASET), use))
    if len({artifact.id for artifact, _ in links}) != len(links):
        raise InvalidInput("the same --dataset is given twice")
    return links


def _refuse_duplicate_content(session: Session, digest: str) -> None:
    existing = session.exec(
        select(Artifact).where(
            Artifact.digest == digest,
            Artifact.kind == Kind.MODEL,
            col(Artifact.placeholder).is_(False),
        )
    ).first()  # a placeholder holds no files, so no content to duplicate
    if existing is not None:
        raise DuplicateContent(digest, ref_of(existing))


def _check_signature(
    session: Session, publisher: str | None, digest: str, signature: str | None
) -> str | None:
    if signature is None:
        return None
    if not publisher:
        raise InvalidInput("a signed registration needs --publisher, whose key signed it")
    keys = session.exec(select(PublisherKey).where(PublisherKey.publisher == publisher)).all()
    if not keys:
        raise SignatureError(
            f"publisher {publisher} has no enrolled key",
            hint=f"enrol one with: mbom keys enroll --publisher {publisher} KEY.pub",
        )
    for key in keys:
        if signing.verify_digest(key.public_key_pem, digest, signature):
            return key.fingerprint
    raise SignatureError(
        f"the signature does not verify against any key enrolled for {publisher}",
        hint="sign with the private key matching an enrolled public key",
    )


def artifact_public(session: Session, artifact: Artifact) -> ArtifactPublic:
    """The public view of an artifact, with its parents."""
    parents = session.exec(
        select(Artifact, Edge.relation)
        .join(Edge, col(Edge.parent_id) == col(Artifact.id))
        .where(Edge.child_id == artifact.id)
        .order_by(col(Artifact.name), col(Artifact.version))
    ).all()
    signed = session.exec(select(Signature.id).where(Signature.artifact_id == artifact.id)).first()
    return ArtifactPublic(
        ref=ref_of(artifact),
        kind=artifact.kind,
        name=artifact.name,
        version=artifact.version,
        publisher=artifact.publisher,
        source=artifact.source,
        format=artifact.format,
        team=artifact.team,
        digest=artifact.digest,
        total_size=artifact.total_size,
        file_count=len(artifact.manifest or []),
        finding=artifact.finding,
        status=artifact.status,
        placeholder=artifact.placeholder,
        stored=artifact.stored,
        signed=signed is not None,
        model_signing_key=ossf_signing.model_signing_key(session, artifact.id),
        parents=[ParentLink(ref=ref_of(p), kind=p.kind, relation=r) for p, r in parents],
        created_at=artifact.created_at,
        created_by=artifact.created_by,
    )


def show(session: Session, ref: str, *, kind: Kind | None = None) -> ArtifactPublic:
    """One artifact by reference."""
    return artifact_public(session, resolve(session, ref, kind=kind))


def count_artifacts(
    session: Session, *, kind: Kind = Kind.MODEL, status: Status | None = None
) -> int:
    """How many versions :func:`list_artifacts` pages through."""
    return paging.count(session, _artifacts_query(kind, status))


def _artifacts_query(kind: Kind, status: Status | None) -> Any:
    query = select(Artifact).where(Artifact.kind == kind)
    if status:
        # Typed callers cannot pass another word; a Python caller of LocalRegistry can.
        if status not in {s.value for s in Status}:
            raise InvalidInput(
                f"unknown status {status!r}",
                hint="use one of " + ", ".join(s.value for s in Status),
            )
        query = query.where(Artifact.status == status)
    return query.order_by(col(Artifact.name), col(Artifact.version))


def list_artifacts(
    session: Session,
    *,
    kind: Kind = Kind.MODEL,
    status: Status | None = None,
    limit: int = 500,
    offset: int = 0,
) -> list[ArtifactPublic]:
    """Artifacts of one kind, by name and version (optionally of one status)."""
    query = _artifacts_query(kind, status).offset(offset).limit(limit)
    return [artifact_public(session, artifact) for artifact in session.exec(query)]


def identify(session: Session, manifest: Manifest) -> list[ArtifactPublic]:
    """The registered versions whose files are exactly these (by manifest digest)."""
    found = session.exec(
        select(Artifact).where(Artifact.digest == manifest.digest).order_by(col(Artifact.id))
    ).all()
    return [artifact_public(session, artifact) for artifact in found]


def verify(
    session: Session,
    manifest: Manifest,
    *,
    ref: str | None = None,
    accept_cleared: bool = False,
    allow_unsigned: bool = False,
) -> VerifyReport:
    """Compare files with a registered version; check its signature and status.

    An unsigned version fails unless ``allow_unsigned`` (a signature that does
    not verify always fails).
    """
    artifact = _verification_target(session, manifest, ref)
    expected = Manifest(tuple(ManifestEntry(p, s, h) for p, s, h in artifact.manifest or []))
    checks = compare(expected, manifest)
    signature = _signature_state(session, artifact)
    problems = [f"{c.state}: {c.path}" for c in checks if c.state != "match"]
    if signature.state == "unsigned" and not allow_unsigned:
        problems.append("signature unsigned")
    elif signature.state not in ("valid", "unsigned"):
        problems.append(f"signature {signature.state}")
    passing = {Status.CLEAN.value} | ({Status.CLEARED.value} if accept_cleared else set())
    if artifact.status not in passing:
        problems.append(f"lineage status is {artifact.status}")
    return VerifyReport(
        ref=ref_of(artifact),
        ok=not problems,
        expected_digest=artifact.digest or "",
        actual_digest=manifest.digest,
        files=[
            FileCheckPublic(
                path=c.path,
                state=c.state,
                expected_sha256=c.expected_sha256,
                actual_sha256=c.actual_sha256,
            )
            for c in checks
        ],
        signature=signature,
        status=artifact.status,
        problems=problems,
    )


def _verification_target(session: Session, manifest: Manifest, ref: str | None) -> Artifact:
    if ref is not None:
        return resolve(session, ref, kind=Kind.MODEL)
    found = session.exec(
        select(Artifact).where(Artifact.digest == manifest.digest, Artifact.kind == Kind.MODEL)
    ).first()
    if found is None:
        raise NotFound(
            "a model with the manifest",
            manifest.digest,
            hint="these files are not a registered version; to compare with one: "
            "mbom verify PATH NAME@VERSION",
        )
    return found


def _signature_state(session: Session, artifact: Artifact) -> SignatureCheck:
    rows = session.exec(select(Signature).where(Signature.artifact_id == artifact.id)).all()
    if not rows:
        return SignatureCheck(state="unsigned", publisher=artifact.publisher)
    for row in rows:
        key = session.exec(
            select(PublisherKey).where(PublisherKey.fingerprint == row.fingerprint)
        ).first()
        if key is None:
            continue
        ok = signing.verify_digest(key.public_key_pem, artifact.digest or "", row.signature)
        return SignatureCheck(
            state="valid" if ok else "invalid", publisher=key.publisher, fingerprint=key.fingerprint
        )
    return SignatureCheck(
        state="unknown-key", publisher=artifact.publisher, fingerprint=rows[0].fingerprint
    )
