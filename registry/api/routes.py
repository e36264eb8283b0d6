"""REST routes: each one a thin call into :mod:`registry.service`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi import Path as FastApiPath

from registry import bom, service
from registry.api.deps import CurrentActor, SessionDep, check_text_inputs
from registry.api.paging import Cursor, offset_of, paged
from registry.errors import InvalidInput, NotFound
from registry.schemas import (
    MAX_CLASS_INDEX,
    AddParentsRequest,
    ArtifactPublic,
    AttachTriggerRequest,
    AuditEventPublic,
    AuditVerification,
    BehavioralReportIn,
    BehavioralScanPublic,
    BlastRadius,
    BomImport,
    DecisionPublic,
    DecisionRequest,
    DeploymentPublic,
    DeployRequest,
    FlagRequest,
    HfImportRequest,
    HfImportResult,
    InheritedProfileRequest,
    KeyPublic,
    KeyRequest,
    LineageEntry,
    ModelSigningBundlePublic,
    ModelSigningVerifyReport,
    ModelSigningVerifyRequest,
    ReasonRequest,
    RecordReplaysRequest,
    RegisterDatasetRequest,
    RegisterModelRequest,
    ReplayPlan,
    ReplaySummary,
    RescanRequest,
    ScanProfilePublic,
    StatusChange,
    StatusReport,
    TeamPublic,
    TeamRequest,
    TokenPublic,
    TokenRequest,
    TriggerPublic,
    VerifyReport,
    VerifyRequest,
    manifest_of,
)
from registry.vocabulary import Kind, ScanProvenance, Status
from scanning.behavioral.profile import profile_from_npz
from scanning.behavioral.report import BehavioralReport, ScanProfile, TriggerPattern
from scanning.report import ScanReport

router = APIRouter(prefix="/api/v1", dependencies=[Depends(check_text_inputs)])
Depth = Annotated[int | None, Query(ge=1, description="only relatives within this many edges")]


@router.post("/models", status_code=status.HTTP_201_CREATED, tags=["models"])
def register_model(
    body: RegisterModelRequest, session: SessionDep, actor: CurrentActor
) -> ArtifactPublic:
    """Register a model version from a manifest the client computed."""
    fields = body.model_dump(
        exclude={"manifest", "relation", "datasets", "scan", "profile", "behavioral"}
    )
    return service.register_model(
        session,
        actor=actor,
        manifest=manifest_of(body.manifest),
        relation=body.relation,
        datasets=[(d.ref, d.use) for d in body.datasets],
        scan=scan_report(body.scan),
        profile=scan_profile(body.profile) if body.profile is not None else None,
        behavioral=behavioral_report(body.behavioral) if body.behavioral else None,
        provenance=ScanProvenance.CLIENT,  # what arrives over the API, a client ran
        **fields,
    )


@router.post("/models/hf", status_code=status.HTTP_201_CREATED, tags=["models"])
def import_hf(body: HfImportRequest, session: SessionDep, actor: CurrentActor) -> HfImportResult:
    """Register a Hugging Face snapshot the client read, hashed and scanned, with its lineage."""
    return service.import_hf(
        session,
        body.plan,
        actor=actor,
        manifest=manifest_of(body.manifest),
        scan=scan_report(body.scan),
        team=body.team,
        publisher=body.publisher,
        allow_duplicate_content=body.allow_duplicate_content,
        override=body.override,
        profile=scan_profile(body.profile) if body.profile is not None else None,
        behavioral=behavioral_report(body.behavioral) if body.behavioral else None,
        provenance=ScanProvenance.CLIENT,
    )


@router.get("/models", tags=["models"])
def list_models(
    request: Request,
    response: Response,
    session: SessionDep,
    _actor: CurrentActor,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 500,
    cursor: Cursor = None,
) -> list[ArtifactPublic]:
    """Registered model versions by name and version, a page at a time (see X-Total-Count)."""
    offset = offset_of(cursor)
    items = service.list_artifacts(
        session, kind=Kind.MODEL, status=status_, limit=limit, offset=offset
    )
    total = service.count_artifacts(session, kind=Kind.MODEL, status=status_)
    return paged(request, response, items, offset=offset, total=total)


# Behavioral scans. A ref holds '/' and '@' ({ref:path}); each route ends in a fixed word,
# and nothing under /models is a catch-all, so they cannot shadow one another.


@router.get("/models/{ref:path}/profile", tags=["behavior"])
def model_profile(ref: str, session: SessionDep, _actor: CurrentActor) -> ScanProfilePublic:
    """A model's behavioral scan profile: its own, else its nearest ancestor's."""
    found = service.profile_of(session, ref)
    if found is None:
        raise NotFound(
            "scan profile", ref, hint="register the model or an ancestor with --reference REF.npz"
        )
    return found


@router.post("/profiles/inherited", tags=["behavior"])
def inherited_profile(
    body: InheritedProfileRequest, session: SessionDep, _actor: CurrentActor
) -> ScanProfilePublic | None:
    """The profile a new child of these parents inherits; null when none of their lines has one."""
    return service.inherited_profile(session, body.parents)


@router.get("/profiles/{digest}/baseline", tags=["behavior"])
def behavior_baseline(
    digest: Annotated[str, FastApiPath(pattern=r"^sha256:[0-9a-f]{64}$")],
    session: SessionDep,
    _actor: CurrentActor,
) -> list[dict[str, float | str]]:
    """Detector statistics of clean models scanned clean on these references (calibration)."""
    return service.behavior_baseline(session, digest)


@router.post("/models/{ref:path}/rescan", tags=["behavior"])
def record_rescan(
    ref: str, body: RescanRequest, session: SessionDep, actor: CurrentActor
) -> BehavioralScanPublic:
    """Record a behavioral scan the client ran (publishers); compromised flags the model."""
    return service.record_rescan(
        session,
        ref,
        actor=actor,
        report=behavioral_report(body.report),
        reference_digest=body.reference_digest,
        provenance=ScanProvenance.CLIENT,
    )


@router.post("/models/{ref:path}/triggers", status_code=status.HTTP_201_CREATED, tags=["behavior"])
def attach_trigger(
    ref: str, body: AttachTriggerRequest, session: SessionDep, actor: CurrentActor
) -> TriggerPublic:
    """Store an analyst's trigger with a model (admins)."""
    trigger_pattern(body.data)  # refused here as a problem, before anything is stored
    return service.attach_trigger(
        session, ref, actor=actor, data=body.data, target_class=body.target_class
    )


@router.get("/models/{ref:path}/replay-plan", tags=["behavior"])
def replay_plan(ref: str, session: SessionDep, _actor: CurrentActor) -> ReplayPlan:
    """The newest trigger of a model, its descendants and clean relatives to replay it on."""
    return service.replay_plan(session, ref)


@router.post("/models/{ref:path}/replays", tags=["behavior"])
def record_replays(
    ref: str, body: RecordReplaysRequest, session: SessionDep, actor: CurrentActor
) -> ReplaySummary:
    """Record replays of a model's trigger (admins); confirmed descendants become confirmed."""
    return service.record_replays(
        session, ref, actor=actor, trigger_id=body.trigger_id, results=body.results
    )


@router.post("/datasets", status_code=status.HTTP_201_CREATED, tags=["datasets"])
def register_dataset(
    body: RegisterDatasetRequest, session: SessionDep, actor: CurrentActor
) -> ArtifactPublic:
    """Register a dataset version by digest or manifest."""
    return service.register_dataset(
        session,
        actor=actor,
        name=body.name,
        version=body.version,
        digest=body.digest,
        manifest=manifest_of(body.manifest) if body.manifest else None,
        source=body.source,
    )


@router.get("/datasets", tags=["datasets"])
def list_datasets(
    request: Request,
    response: Response,
    session: SessionDep,
    _actor: CurrentActor,
    limit: Annotated[int, Query(ge=1, le=10000)] = 500,
    cursor: Cursor = None,
) -> list[ArtifactPublic]:
    """Registered dataset versions, a page at a time (see X-Total-Count)."""
    offset = offset_of(cursor)
    items = service.list_artifacts(session, kind=Kind.DATASET, limit=limit, offset=offset)
    total = service.count_artifacts(session, kind=Kind.DATASET)
    return paged(request, response, items, offset=offset, total=total)


@router.post("/identify", tags=["verification"])
def identify(
    body: VerifyRequest, session: SessionDep, _actor: CurrentActor
) -> list[ArtifactPublic]:
    """The registered versions whose files are exactly these."""
    return service.identify(session, manifest_of(body.manifest))


@router.post("/verify", tags=["verification"])
def verify(body: VerifyRequest, session: SessionDep, _actor: CurrentActor) -> VerifyReport:
    """Compare files with a registered version; its signature and lineage status."""
    return service.verify(
        session,
        manifest_of(body.manifest),
        ref=body.ref,
        accept_cleared=body.accept_cleared,
        allow_unsigned=body.allow_unsigned,
    )


@router.post("/verify/model-signing", tags=["verification"])
def verify_model_signing(
    body: ModelSigningVerifyRequest, session: SessionDep, _actor: CurrentActor
) -> ModelSigningVerifyReport:
    """Check files against an OpenSSF model-signing bundle (and the registry, if it knows them)."""
    return service.verify_model_signing(
        session,
        manifest_of(body.manifest),
        bundle=body.bundle,
        public_key_pem=body.public_key_pem,
        ref=body.ref,
        accept_cleared=body.accept_cleared,
    )


@router.post("/artifacts/{ref:path}/parents", tags=["lineage"])
def add_parents(
    ref: str, body: AddParentsRequest, session: SessionDep, actor: CurrentActor
) -> ArtifactPublic:
    """Add base models or datasets to a registered model's lineage."""
    return service.add_parents(
        session,
        ref,
        actor=actor,
        parents=body.parents,
        relation=body.relation,
        datasets=[(d.ref, d.use) for d in body.datasets],
    )


@router.post("/artifacts/{ref:path}/flag", tags=["status"])
def flag(ref: str, body: FlagRequest, session: SessionDep, actor: CurrentActor) -> StatusChange:
    """Flag a model or dataset compromised (admins), with the advisory's trigger if any."""
    return service.flag(session, ref, actor=actor, reason=body.reason, trigger=body.trigger)


@router.post("/artifacts/{ref:path}/unflag", tags=["status"])
def unflag(ref: str, body: ReasonRequest, session: SessionDep, actor: CurrentActor) -> StatusChange:
    """Withdraw a flag (admins)."""
    return service.unflag(session, ref, actor=actor, reason=body.reason)


@router.post("/artifacts/{ref:path}/clear", tags=["status"])
def clear(ref: str, body: ReasonRequest, session: SessionDep, actor: CurrentActor) -> StatusChange:
    """Clear an inherited infection (approvers)."""
    return service.clear(session, ref, actor=actor, reason=body.reason)


@router.get("/artifacts/{ref:path}/status", tags=["status"])
def status_report(ref: str, session: SessionDep, _actor: CurrentActor) -> StatusReport:
    """Finding, effective status and compromised ancestors with paths."""
    return service.status_report(session, ref)


@router.get("/artifacts/{ref:path}/descendants", tags=["lineage"])
def descendants(
    ref: str,
    session: SessionDep,
    _actor: CurrentActor,
    depth: Depth = None,
    team: str | None = None,
) -> list[LineageEntry]:
    """Descendants with depth and shortest path."""
    return service.descendants(session, ref, depth=depth, team=team)


@router.get("/artifacts/{ref:path}/deployments", tags=["lineage"])
def deployed_descendants(
    ref: str,
    session: SessionDep,
    _actor: CurrentActor,
    depth: Depth = None,
    team: str | None = None,
) -> list[DeploymentPublic]:
    """Deployments of the artifact and its descendants, each with its path."""
    return service.deployed_descendants(session, ref, depth=depth, team=team)


@router.get("/artifacts/{ref:path}/blast-radius", tags=["lineage"])
def blast_radius(
    ref: str,
    session: SessionDep,
    _actor: CurrentActor,
    depth: Depth = None,
    team: str | None = None,
    limit: Annotated[int, Query(ge=0, le=10000, description="nearest deployments listed")] = 20,
) -> BlastRadius:
    """Deployments below the artifact counted by team, environment and status, and the
    nearest ``limit`` of them with their paths."""
    return service.blast_radius(session, ref, depth=depth, team=team, limit=limit)


@router.get("/artifacts/{ref:path}/ancestors", tags=["lineage"])
def ancestors(
    ref: str, session: SessionDep, _actor: CurrentActor, depth: Depth = None
) -> list[LineageEntry]:
    """Ancestors (models and datasets) with depth and path."""
    return service.ancestors(session, ref, depth=depth)


@router.get("/artifacts/{ref:path}/model-signing", tags=["models"])
def model_signing_bundle(
    ref: str, session: SessionDep, _actor: CurrentActor
) -> ModelSigningBundlePublic:
    """The OpenSSF model-signing bundle stored with a model version."""
    return service.model_signing_bundle(session, ref)


@router.get("/artifacts/{ref:path}", tags=["models"])
def show(
    ref: str, session: SessionDep, _actor: CurrentActor, kind: Kind | None = None
) -> ArtifactPublic:
    """One model or dataset version."""
    return service.show(session, ref, kind=kind)


@router.post("/deployments", status_code=status.HTTP_201_CREATED, tags=["deployments"])
def deploy(body: DeployRequest, session: SessionDep, actor: CurrentActor) -> DeploymentPublic:
    """Deploy a model version (refused when tainted or blocked)."""
    return service.deploy(
        session,
        body.ref,
        actor=actor,
        environment=body.environment,
        team=body.team,
        override=body.override,
    )


@router.post("/deployments/undeploy", tags=["deployments"])
def undeploy(body: DeployRequest, session: SessionDep, actor: CurrentActor) -> DeploymentPublic:
    """End a deployment."""
    return service.undeploy(
        session, body.ref, actor=actor, environment=body.environment, team=body.team
    )


@router.get("/deployments", tags=["deployments"])
def list_deployments(
    request: Request,
    response: Response,
    session: SessionDep,
    _actor: CurrentActor,
    team: str | None = None,
    environment: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    cursor: Cursor = None,
) -> list[DeploymentPublic]:
    """Active deployments by team and environment, a page at a time (see X-Total-Count)."""
    offset = offset_of(cursor)
    items = service.list_deployments(
        session, team=team, environment=environment, limit=limit, offset=offset
    )
    total = service.count_deployments(session, team=team, environment=environment)
    return paged(request, response, items, offset=offset, total=total)


@router.post("/teams", status_code=status.HTTP_201_CREATED, tags=["teams"])
def create_team(body: TeamRequest, session: SessionDep, actor: CurrentActor) -> TeamPublic:
    """Create a team (admins)."""
    return service.create_team(
        session,
        actor=actor,
        name=body.name,
        require_approval=body.require_approval,
        require_registry_scan=body.require_registry_scan,
    )


@router.get("/teams", tags=["teams"])
def list_teams(session: SessionDep, _actor: CurrentActor) -> list[TeamPublic]:
    """Every team."""
    return service.list_teams(session)


@router.post("/decisions", status_code=status.HTTP_201_CREATED, tags=["teams"])
def decide(body: DecisionRequest, session: SessionDep, actor: CurrentActor) -> DecisionPublic:
    """Approve or block a model for a team (approvers of that team)."""
    return service.decide(session, actor=actor, **body.model_dump())


@router.get("/decisions", tags=["teams"])
def list_decisions(
    request: Request,
    response: Response,
    session: SessionDep,
    _actor: CurrentActor,
    team: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    cursor: Cursor = None,
) -> list[DecisionPublic]:
    """Active decisions, oldest first, a page at a time (see X-Total-Count)."""
    offset = offset_of(cursor)
    items = service.list_decisions(session, team=team, limit=limit, offset=offset)
    total = service.count_decisions(session, team=team)
    return paged(request, response, items, offset=offset, total=total)


@router.post("/keys", status_code=status.HTTP_201_CREATED, tags=["signatures"])
def enroll_key(body: KeyRequest, session: SessionDep, actor: CurrentActor) -> KeyPublic:
    """Enrol a publisher's Ed25519 public key (admins)."""
    return service.enroll_key(
        session, actor=actor, publisher=body.publisher, public_key_pem=body.public_key_pem
    )


@router.get("/keys", tags=["signatures"])
def list_keys(
    session: SessionDep, _actor: CurrentActor, publisher: str | None = None
) -> list[KeyPublic]:
    """Enrolled keys."""
    return service.list_keys(session, publisher=publisher)


@router.post("/tokens", status_code=status.HTTP_201_CREATED, tags=["identity"])
def create_token(body: TokenRequest, session: SessionDep, actor: CurrentActor) -> TokenPublic:
    """Create an API token (admins); the secret is in this answer only."""
    return service.create_token(
        session, actor=actor, user=body.user, role=body.role, team=body.team
    )


@router.get("/tokens", tags=["identity"])
def list_tokens(session: SessionDep, actor: CurrentActor) -> list[TokenPublic]:
    """Every token, without secrets (admins)."""
    return service.list_tokens(session, actor=actor)


@router.post("/tokens/{token_id}/revoke", tags=["identity"])
def revoke_token(
    token_id: Annotated[int, FastApiPath(ge=1, le=2**63 - 1)],
    session: SessionDep,
    actor: CurrentActor,
) -> TokenPublic:
    """Revoke a token (admins)."""
    return service.revoke_token(session, token_id, actor=actor)


@router.get("/audit", tags=["audit"])
def list_events(
    request: Request,
    response: Response,
    session: SessionDep,
    _actor: CurrentActor,
    subject: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100000)] = 1000,
    cursor: Cursor = None,
) -> list[AuditEventPublic]:
    """The newest audit events, oldest first; the next page holds the ones before them."""
    offset = offset_of(cursor)
    items = service.list_events(session, subject=subject, limit=limit, offset=offset)
    total = service.count_events(session, subject=subject)
    return paged(request, response, items, offset=offset, total=total)


@router.get("/audit/verify", tags=["audit"])
def verify_chain(
    session: SessionDep,
    _actor: CurrentActor,
    checkpoint_seq: Annotated[int | None, Query(ge=1)] = None,
    checkpoint_head: str | None = None,
) -> AuditVerification:
    """Re-check the keyed audit hash chain (and that it still holds a checkpoint's event)."""
    return service.verify_chain(
        session, checkpoint_seq=checkpoint_seq, checkpoint_head=checkpoint_head
    )


@router.post("/audit/anchor", tags=["audit"])
def anchor_chain(session: SessionDep, actor: CurrentActor) -> AuditVerification:
    """Seal the events written before the audit log was keyed (admins, once)."""
    return service.anchor_chain(session, actor=actor)


@router.get("/consistency", tags=["audit"])
def find_inconsistencies(session: SessionDep, _actor: CurrentActor) -> list[str]:
    """Recompute every status from scratch; list disagreements with the stored state."""
    return service.find_inconsistencies(session)


def scan_report(submitted: dict[str, Any] | None) -> ScanReport | None:
    """The client's static scan, validated (the verdict is recomputed, never trusted)."""
    if submitted is None:
        return None
    try:
        return ScanReport.from_json(submitted)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"the scan report is malformed: {exc}") from exc


def scan_profile(data: bytes) -> ScanProfile:
    """A submitted reference ``.npz``, validated into a scan profile (never unpickled)."""
    try:
        profile = profile_from_npz(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"the scan profile is unusable: {exc}",
            hint="send base64 of profile_to_npz(profile): arrays x, y and their metadata",
        ) from exc
    if profile.num_classes > MAX_CLASS_INDEX:
        raise InvalidInput(f"the scan profile has {profile.num_classes} classes: too many")
    return profile


def trigger_pattern(data: bytes) -> TriggerPattern:
    """A submitted trigger ``.npz``, validated (never unpickled)."""
    try:
        pattern = TriggerPattern.from_npz(data)
    except ValueError as exc:
        raise InvalidInput(
            f"the trigger is unusable: {exc}",
            hint="send base64 of a .npz with arrays mask and pattern (TriggerPattern.to_npz)",
        ) from exc
    if pattern.target_class is not None and pattern.target_class > MAX_CLASS_INDEX:
        raise InvalidInput(f"the trigger's target class {pattern.target_class} is out of range")
    return pattern


def behavioral_report(submitted: BehavioralReportIn) -> BehavioralReport:
    """The client's behavioral scan with its trigger read back."""
    if submitted.has_trigger != (submitted.trigger is not None):
        raise InvalidInput(
            f"the behavioral report says has_trigger={submitted.has_trigger} "
            f"but {'no' if submitted.trigger is None else 'a'} trigger was sent",
            hint="send the recovered trigger as base64 of TriggerPattern.to_npz()",
        )
    trigger = trigger_pattern(submitted.trigger) if submitted.trigger is not None else None
    return BehavioralReport.from_json(submitted.model_dump(exclude={"trigger"}), trigger=trigger)


@router.get("/bom/{ref:path}", tags=["bom"])
def export_bom(
    ref: str,
    session: SessionDep,
    _actor: CurrentActor,
    format_: Annotated[str, Query(alias="format", pattern="^(cyclonedx|spdx3)$")] = "cyclonedx",
    spec_version: str = "1.6",
) -> dict[str, Any]:
    """A CycloneDX 1.6 ML-BOM or an SPDX 3.0.1 document for a model and its ancestry."""
    if format_ == "spdx3":
        return bom.export_spdx3(session, ref)
    return bom.export_cyclonedx(session, ref, spec_version=spec_version)


@router.post("/bom/import", status_code=status.HTTP_201_CREATED, tags=["bom"])
def import_bom(
    document: dict[str, Any],
    session: SessionDep,
    actor: CurrentActor,
    team: Annotated[str | None, Query(max_length=100)] = None,
) -> BomImport:
    """Register the models, datasets, lineage and reported compromise of a CycloneDX ML-BOM.

    ``team``: the team the import acts for (default: the token's team); the
    models it registers with files are that team's and meet its policy.
    ``flagged``: what the document reported compromised and the import flagged;
    ``warnings``: what the document says that the registry did not keep.
    """
    return bom.import_cyclonedx_report(session, document, actor=actor, team=team)
