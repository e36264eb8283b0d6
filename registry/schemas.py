"""What the registry answers: the public, serialisable views of its records.

The service returns these; the CLI renders them (``--json`` prints them as
they are), the REST API returns them, and the remote client parses them back.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    WithJsonSchema,
)

from registry.hf import ImportPlan
from registry.identity import Role
from registry.manifest import Manifest, ManifestEntry
from registry.vocabulary import (
    DATASET_USES,
    MODEL_RELATIONS,
    BehaviorVerdict,
    DecisionVerdict,
    Finding,
    Kind,
    Relation,
    Status,
)
from registry.vocabulary import ScanProvenance as ScanProvenance  # moved; still importable here


def _utc(value: datetime) -> datetime:
    # SQLite hands datetimes back naive; they were written in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_utc)]


class PublicModel(BaseModel):
    """Base of every public view: immutable, extra fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ParentLink(PublicModel):
    """One incoming lineage edge of an artifact."""

    ref: str
    kind: Kind
    relation: Relation


class ArtifactPublic(PublicModel):
    """A registered model or dataset version."""

    ref: str
    kind: Kind
    name: str
    version: str
    publisher: str | None = None
    source: str | None = None
    format: str | None = None
    team: str | None = None
    digest: str | None = None
    total_size: int | None = None
    file_count: int = 0
    finding: Finding
    status: Status
    placeholder: bool = False
    #: Whether the registry holds the version's files in its artifact store (pullable
    #: once admitted); a metadata-only version's files are held elsewhere.
    stored: bool = False
    signed: bool = False
    #: The fingerprint (``sha256:`` + the bundle's key hint) of the EC key whose
    #: OpenSSF model-signing bundle is stored with the model; ``None`` if none is.
    model_signing_key: str | None = None
    parents: list[ParentLink] = Field(default_factory=list)
    created_at: UtcDateTime
    created_by: str


class StoredFilePublic(PublicModel):
    """One file of a stored version: path, size and SHA-256 (hex)."""

    path: str
    size: int
    sha256: str


class PullTicket(PublicModel):
    """A recorded pull: the version handed out and the files to fetch, by index."""

    id: int
    ref: str
    digest: str
    files: list[StoredFilePublic]


class PullPublic(PublicModel):
    """Someone pulled a version from the registry (who, for which team, when)."""

    id: int
    ref: str
    user: str
    team: str | None = None
    digest: str
    #: The pulled version's status now.
    status: Status
    override: str | None = None
    created_at: UtcDateTime


class PendingAdmissionPublic(PublicModel):
    """A version the registry is admitting: files stored, scans running, not usable yet."""

    ref: str
    kind: Kind
    digest: str
    user: str
    team: str | None = None
    #: What admission is doing: "queued", "static scan", "behavioral scan", "recording".
    step: str
    #: 1 for the first try; more when a registration took over a stalled one.
    attempt: int
    started_at: UtcDateTime
    lease_until: UtcDateTime
    #: The admitting process stopped renewing its lease (it died): registering the
    #: same version again takes the admission over.
    stalled: bool


class BlobPublic(PublicModel):
    """A file's content the artifact store now holds."""

    digest: str
    size: int


class FlagPublic(PublicModel):
    """A direct compromise finding."""

    id: int
    ref: str
    reason: str
    actor: str
    active: bool
    created_at: UtcDateTime
    resolved_by: str | None = None
    resolution: str | None = None


class InfectionSource(PublicModel):
    """A compromised ancestor reaching an artifact, with the shortest path."""

    source: str
    source_kind: Kind
    depth: int
    path: list[str]
    reasons: list[str]
    cleared: bool = False
    #: The source's trigger replayed on this artifact (``mbom replay``), if it was.
    replay: ReplayPublic | None = None


class StatusReport(PublicModel):
    """An artifact's own finding, its effective status and why."""

    ref: str
    kind: Kind
    finding: Finding
    status: Status
    flags: list[FlagPublic]
    sources: list[InfectionSource]
    #: The newest static scan (its report, plus ``provenance``: who ran it).
    scan: dict[str, Any] | None = None
    #: The newest behavioral scan (its report, plus ``provenance``: who ran it).
    behavioral_scan: dict[str, Any] | None = None
    #: Whether the registry holds the files (``False``: metadata-only, scans client-reported).
    stored: bool = False
    #: How many times it or a descendant was pulled, and the newest of those pulls.
    pulls: int = 0
    pulled_by: list[PullPublic] = Field(default_factory=list)


class LineageEntry(PublicModel):
    """A relative (descendant or ancestor) with its shortest path."""

    ref: str
    kind: Kind
    depth: int
    path: list[str]
    status: Status
    team: str | None = None
    #: For descendants of a source whose trigger was replayed: the measured rate.
    replay_rate: float | None = None


class DeploymentPublic(PublicModel):
    """A model version running in an environment for a team."""

    id: int
    ref: str
    environment: str
    team: str
    status: Status
    active: bool
    created_at: UtcDateTime
    created_by: str
    path: list[str] = Field(default_factory=list)


class BlastRadiusGroup(PublicModel):
    """Deployments of one team in one environment whose version has one status."""

    team: str
    environment: str
    status: Status
    deployments: int


class BlastRadius(PublicModel):
    """How far a model or dataset reaches into production, summed up."""

    ref: str
    deployments: int
    versions: int
    groups: list[BlastRadiusGroup]
    nearest: list[DeploymentPublic]
    #: How many times it or a descendant was pulled from the registry, and the newest pulls.
    pulls: int = 0
    pulled_by: list[PullPublic] = Field(default_factory=list)


class StatusChange(PublicModel):
    """What a flag, unflag or clearance changed."""

    ref: str
    status: Status
    #: The descendants whose status moved, nearest first, at most the first 1,000.
    changed: list[LineageEntry]
    #: How many moved in all (``changed`` may list fewer).
    changed_total: int = 0
    deployments: list[DeploymentPublic]


class TeamPublic(PublicModel):
    """A team."""

    name: str
    require_approval: bool
    #: The team builds on, deploys and pulls only versions the registry holds and scanned.
    require_registry_scan: bool = False
    created_at: UtcDateTime


class DecisionPublic(PublicModel):
    """A team's approval or block; ``team`` null means every team."""

    id: int
    team: str | None
    subject: str
    verdict: DecisionVerdict
    reason: str
    actor: str
    origin: str
    active: bool
    created_at: UtcDateTime


class KeyPublic(PublicModel):
    """An enrolled publisher key."""

    publisher: str
    fingerprint: str
    public_key_pem: str
    created_at: UtcDateTime


class TokenPublic(PublicModel):
    """An API token; ``token`` carries the secret only in the answer that created it."""

    id: int
    user: str
    role: Role
    team: str | None
    revoked: bool
    created_at: UtcDateTime
    token: str | None = None


class FileCheckPublic(PublicModel):
    """One file of a verification."""

    path: str
    state: Literal["match", "mismatch", "missing", "extra"]
    expected_sha256: str | None = None
    actual_sha256: str | None = None


class SignatureCheck(PublicModel):
    """The state of an artifact's signature at verification time."""

    state: Literal["valid", "invalid", "unsigned", "unknown-key"]
    publisher: str | None = None
    fingerprint: str | None = None


class VerifyReport(PublicModel):
    """Do these files match the registered version, signed and of clean lineage?"""

    ref: str
    ok: bool
    expected_digest: str
    actual_digest: str
    files: list[FileCheckPublic]
    signature: SignatureCheck
    status: Status
    problems: list[str]


class ModelSigningBundlePublic(PublicModel):
    """An OpenSSF model-signing bundle stored with a model version."""

    ref: str
    key_fingerprint: str
    bundle: dict[str, Any]
    created_at: UtcDateTime


class ModelSigningCheck(PublicModel):
    """An OpenSSF model-signing signature, verified with a key, against the files."""

    key_fingerprint: str
    model_name: str
    serialization: dict[str, Any]
    files: list[FileCheckPublic]


class ModelSigningVerifyReport(PublicModel):
    """``mbom verify PATH --model-signing SIG``: the signature, each file, the lineage.

    ``registry`` is the usual verification when the files are (or are compared
    with) a registered version, ``None`` when the registry does not know them.
    """

    ok: bool
    digest: str
    model_signing: ModelSigningCheck
    registry: VerifyReport | None = None
    problems: list[str]
    #: The model-signing key fingerprint the registry recorded for ``registry.ref``
    #: (``None`` when it recorded none, or the files are not a registered version).
    registered_key: str | None = None


class AuditEventPublic(PublicModel):
    """One audit event."""

    seq: int
    at: UtcDateTime
    actor: str
    operation: str
    subject: str
    details: dict[str, object]
    prev_hash: str
    hash: str
    key_id: str | None = None
    state: dict[str, object] | None = None


class AuditVerification(PublicModel):
    """The result of re-checking the audit hash chain."""

    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None
    head: str
    #: The sequence number of the last event walked (the head's).
    last_seq: int = 0
    #: The id of the audit key the chain was checked with (None: no key configured).
    key_id: str | None = None
    keyed_events: int = 0
    #: Unkeyed events from before mbom keyed its log, sealed by an ``audit.anchor`` event.
    legacy_events: int = 0
    #: The checkpoint's event, when one was checked.
    checkpoint_seq: int | None = None


class ManifestEntryIn(PublicModel):
    """One file of a submitted manifest."""

    path: str
    size: int = Field(ge=0, le=2**63 - 1)
    sha256: str


class ManifestIn(PublicModel):
    """A manifest as clients submit it (the server recomputes the digest)."""

    entries: list[ManifestEntryIn] = Field(max_length=1_000_000)


def _one_of(allowed: frozenset[Relation], hint: str) -> AfterValidator:
    """A validator refusing a relation outside ``allowed``, naming the allowed ones."""
    words = ", ".join(repr(r.value) for r in Relation if r in allowed)

    def check(value: Relation) -> Relation:
        if value not in allowed:
            raise ValueError(f"{value.value!r} is not one of {words} ({hint})")
        return value

    return AfterValidator(check)


def _enum_of(allowed: frozenset[Relation]) -> WithJsonSchema:
    """The subset's own ``enum`` in the JSON schema (in :class:`Relation`'s order)."""
    return WithJsonSchema({"type": "string", "enum": [r.value for r in Relation if r in allowed]})


#: A relation between two models (``lineage.ModelRelation``): a :class:`Relation`
#: field that refuses a dataset use and lists only the model relations in OpenAPI.
ModelRelationField = Annotated[
    Relation,
    _one_of(MODEL_RELATIONS, "a dataset use goes in datasets"),
    _enum_of(MODEL_RELATIONS),
]
#: How a model used a dataset (``lineage.DatasetUse``).
DatasetUseField = Annotated[
    Relation, _one_of(DATASET_USES, "a model relation goes in relation"), _enum_of(DATASET_USES)
]


class DatasetUseIn(PublicModel):
    """A dataset a model was trained, fine-tuned or evaluated on."""

    ref: str
    use: DatasetUseField = Relation.TRAINED_ON


def _finite_json(value: Any) -> Any:
    """Refuse NaN and infinities anywhere in a JSON value: PostgreSQL's JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if isinstance(value, dict):
        for item in value.values():
            _finite_json(item)
    elif isinstance(value, list):
        for item in value:
            _finite_json(item)
    return value


#: JSON a client sends that is stored as it is (no NaN or Infinity in it).
FiniteJson = Annotated[dict[str, Any], AfterValidator(_finite_json)]
#: The largest class index the registry stores (a 32-bit integer column).
MAX_CLASS_INDEX = 2**31 - 1
ClassIndex = Annotated[int, Field(ge=0, le=MAX_CLASS_INDEX)]
#: The ``sha256:<hex>`` digest of a reference ``.npz``.
ReferenceDigest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]


class DetectorResultIn(PublicModel):
    """One detector's statistic, as ``DetectorResult.to_json()`` gives it."""

    name: str = Field(min_length=1, max_length=100)
    statistic: FiniteFloat
    threshold: FiniteFloat
    flagged: bool
    suspected_classes: list[ClassIndex] = Field(default_factory=list)
    details: FiniteJson = Field(default_factory=dict)


class BehavioralReportIn(PublicModel):
    """A behavioral scan the client ran: ``BehavioralReport.to_json()`` plus its trigger.

    ``trigger`` is the base64 of ``TriggerPattern.to_npz()``; it is required when
    ``has_trigger`` says there is one.
    """

    verdict: BehaviorVerdict
    score: FiniteFloat | None = None
    detectors: list[DetectorResultIn] = Field(default_factory=list)
    target_class: ClassIndex | None = None
    trigger_asr: FiniteFloat | None = None
    has_trigger: bool = False
    calibration: str = Field(default="default", max_length=200)
    elapsed_s: FiniteFloat | None = None
    error: str | None = Field(default=None, max_length=10000)
    family: Literal["convolutional", "dense"] | None = None
    #: The sandbox mechanisms the scan ran under (``BehavioralReport.confinement``).
    confinement: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list, max_length=20
    )
    trigger: Base64Bytes | None = None


class RegisterStoredRequest(PublicModel):
    """``POST /api/v1/models/stored``: a version whose files were uploaded to ``/blobs``.

    No scan report: the registry scans the stored files itself.
    """

    name: str
    version: str
    manifest: ManifestIn
    parents: list[str] = Field(default_factory=list)
    relation: ModelRelationField | None = None
    datasets: list[DatasetUseIn] = Field(default_factory=list)
    publisher: str | None = None
    source: str | None = None
    format: str | None = None
    team: str | None = None
    signature: str | None = None
    allow_duplicate_content: bool = False
    override: str | None = None
    #: An OpenSSF model-signing bundle (the signature file's JSON) to store with the
    #: model, verified with ``model_signing_public_key`` (EC P-256 PEM) against the manifest.
    model_signing_bundle: dict[str, Any] | None = None
    model_signing_public_key: str | None = Field(default=None, max_length=4000)
    #: The model's own behavioral scan profile: base64 of its self-describing reference
    #: ``.npz`` (``scanning.behavioral.profile.profile_to_npz``); descendants inherit it.
    profile: Base64Bytes | None = None


class RegisterModelRequest(RegisterStoredRequest):
    """``POST /api/v1/models``: a metadata-only version, with the scans its client ran.

    The scans are recorded as client-reported: a clean one never makes the model clean.
    """

    scan: dict[str, Any] | None = None
    #: The behavioral scan the client ran on admission.
    behavioral: BehavioralReportIn | None = None


class StoredScanRequest(PublicModel):
    """``POST /api/v1/models/{ref}/rescans`` and ``.../replays/run``: the sandbox's limits."""

    timeout_s: FiniteFloat = Field(default=300.0, gt=0, le=86400)
    memory_mb: int = Field(default=4096, ge=64, le=1_048_576)
    #: For replays: share of triggered references collapsing to one class that confirms.
    threshold: FiniteFloat = Field(default=0.5, ge=0.01, le=1.0)


class PullRequest(PublicModel):
    """``POST /api/v1/models/{ref}/pulls``."""

    team: str | None = None
    override: str | None = None


class AddParentsRequest(PublicModel):
    """``POST /api/v1/artifacts/{ref}/parents``."""

    parents: list[str] = Field(default_factory=list)
    relation: ModelRelationField | None = None
    datasets: list[DatasetUseIn] = Field(default_factory=list)


class RegisterDatasetRequest(PublicModel):
    """``POST /api/v1/datasets``."""

    name: str
    version: str
    digest: str | None = None
    manifest: ManifestIn | None = None
    source: str | None = None


class VerifyRequest(PublicModel):
    """``POST /api/v1/verify`` and ``/identify``."""

    manifest: ManifestIn
    ref: str | None = None
    accept_cleared: bool = False
    #: ``/verify`` only: an unsigned version passes (a bad signature never does).
    allow_unsigned: bool = False


class ModelSigningVerifyRequest(PublicModel):
    """``POST /api/v1/verify/model-signing``: files, an OpenSSF bundle and its EC public key."""

    manifest: ManifestIn
    bundle: dict[str, Any]
    public_key_pem: str = Field(max_length=4000)
    ref: str | None = None
    accept_cleared: bool = False


class ReasonRequest(PublicModel):
    """A body carrying only a reason (flag, unflag, clear)."""

    reason: str


class FlagRequest(ReasonRequest):
    """``POST /api/v1/artifacts/{ref}/flag``: the reason, and an advisory's trigger if any."""

    #: The backdoor trigger as a base64 ``.npz`` (arrays ``mask`` and ``pattern``).
    trigger: Base64Bytes | None = None


class DeployRequest(PublicModel):
    """``POST /api/v1/deployments`` and ``/deployments/undeploy``."""

    ref: str
    environment: str
    team: str
    override: str | None = None


class TeamRequest(PublicModel):
    """``POST /api/v1/teams``."""

    name: str
    require_approval: bool = False
    require_registry_scan: bool = False


class DecisionRequest(PublicModel):
    """``POST /api/v1/decisions``."""

    ref: str
    team: str
    verdict: DecisionVerdict
    reason: str
    all_versions: bool = False


class KeyRequest(PublicModel):
    """``POST /api/v1/keys``."""

    publisher: str
    public_key_pem: str


class TokenRequest(PublicModel):
    """``POST /api/v1/tokens``."""

    user: str
    role: Role
    team: str | None = None


class HfLink(PublicModel):
    """A base model or dataset a Hugging Face model card names, and what it was linked to."""

    repo_id: str
    kind: Kind
    ref: str
    relation: Relation
    #: True when this import created the placeholder.
    created: bool = False
    #: How a registered version was chosen when several exist.
    note: str | None = None


class HfImportResult(PublicModel):
    """What ``mbom import-hf`` registered: the model, its links and what the card said."""

    model: ArtifactPublic
    revision: str | None = None
    commit: str | None = None
    relation: Relation | None = None
    relation_basis: str | None = None
    links: list[HfLink] = Field(default_factory=list)
    #: The placeholder this import filled (its ref before filling), if any.
    filled_placeholder: str | None = None
    license: str | None = None
    pipeline_tag: str | None = None
    warnings: list[str] = Field(default_factory=list)


class HfImportRequest(PublicModel):
    """``POST /api/v1/models/hf``: a snapshot the client read, hashed and scanned."""

    plan: ImportPlan
    manifest: ManifestIn
    team: str | None = None
    publisher: str | None = None
    allow_duplicate_content: bool = False
    override: str | None = None
    scan: dict[str, Any] | None = None
    #: As for ``POST /models``: the snapshot's own scan profile and its admission scan.
    profile: Base64Bytes | None = None
    behavioral: BehavioralReportIn | None = None


class HfStoredImportRequest(PublicModel):
    """``POST /api/v1/models/hf/stored``: a snapshot whose files were uploaded to ``/blobs``."""

    plan: ImportPlan
    manifest: ManifestIn
    team: str | None = None
    publisher: str | None = None
    allow_duplicate_content: bool = False
    override: str | None = None
    #: The snapshot's own scan profile (base64 of its reference ``.npz``).
    profile: Base64Bytes | None = None


class Problem(PublicModel):
    """An RFC 9457 problem body, as the API returns it for every error."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    context: dict[str, Any] = Field(default_factory=dict)


def manifest_in(manifest: Manifest) -> ManifestIn:
    """A manifest in the shape clients submit."""
    return ManifestIn(
        entries=[
            ManifestEntryIn(path=e.path, size=e.size, sha256=e.sha256) for e in manifest.entries
        ]
    )


def manifest_of(submitted: ManifestIn) -> Manifest:
    """The validated manifest for a submitted one (bad paths or digests are refused)."""
    return Manifest(tuple(ManifestEntry(e.path, e.size, e.sha256) for e in submitted.entries))


class ReplayPublic(PublicModel):
    """A compromised source's trigger replayed on one model (``mbom replay``)."""

    source: str
    ref: str
    role: Literal["descendant", "baseline"]
    outcome: Literal["measured", "scan_error"]
    rate: float | None = None
    collapsed_class: int | None = None
    confirmed: bool = False
    threshold: float
    error: str | None = None
    measured_at: UtcDateTime


class ScanProfilePublic(PublicModel):
    """A behavioral scan profile: inputs, classes and the clean reference ``.npz``.

    ``origin`` is the model that gave it (the model itself or the nearest
    ancestor it is inherited from).
    """

    origin: str
    input_shape: list[int]
    value_range: tuple[float, float]
    num_classes: int
    reference_digest: str
    reference: Base64Bytes


class TriggerPublic(PublicModel):
    """A backdoor trigger stored with a model (mask and pattern as ``.npz``)."""

    id: int
    ref: str
    origin: Literal["scan", "analyst"]
    target_class: int | None = None
    digest: str
    data: Base64Bytes
    created_at: UtcDateTime


class ReplayTarget(PublicModel):
    """A model a trigger is to be replayed on, and where its files are."""

    ref: str
    depth: int | None = None
    status: Status
    location: str | None = None
    profile: str | None = None  # the reference digest of its (own or inherited) profile
    #: The registry holds its files: a replay reads them from the store.
    stored: bool = False


class ReplayPlan(PublicModel):
    """What ``mbom replay`` runs: the trigger, the descendants and clean relatives to try."""

    source: str
    trigger: TriggerPublic
    descendants: list[ReplayTarget]
    baseline: list[ReplayTarget]
    profiles: dict[str, ScanProfilePublic]


class ReplayIn(PublicModel):
    """One replay the client ran, to record."""

    ref: str
    role: Literal["descendant", "baseline"] = "descendant"
    report: FiniteJson


class RecordReplaysRequest(PublicModel):
    """``POST /api/v1/models/{ref}/replays``."""

    trigger_id: int = Field(ge=1, le=2**31 - 1)
    results: list[ReplayIn]


class ReplaySummary(PublicModel):
    """What a replay run recorded and which statuses it moved."""

    source: str
    results: list[ReplayPublic]
    confirmed: list[str]
    baseline_rates: list[float]
    #: What the result cannot say (e.g. no clean relative was measured).
    notes: list[str] = Field(default_factory=list)


class BehavioralScanPublic(PublicModel):
    """A stored behavioral scan of a model."""

    ref: str
    verdict: BehaviorVerdict
    report: dict[str, Any]
    trigger: TriggerPublic | None = None
    status: Status
    #: Who ran the scan (see :class:`ScanProvenance`).
    provenance: ScanProvenance = ScanProvenance.CLIENT


class InheritedProfileRequest(PublicModel):
    """``POST /api/v1/profiles/inherited``: the parents a new model will have."""

    parents: list[str] = Field(default_factory=list, max_length=1000)


class RescanRequest(PublicModel):
    """``POST /api/v1/models/{ref}/rescan``: a behavioral scan the client ran."""

    report: BehavioralReportIn
    #: The references the scan used (its profile's digest).
    reference_digest: ReferenceDigest | None = None


class AttachTriggerRequest(PublicModel):
    """``POST /api/v1/models/{ref}/triggers``: an analyst's trigger."""

    #: Base64 of a ``.npz`` with arrays ``mask`` and ``pattern``.
    data: Base64Bytes
    target_class: ClassIndex | None = None


class StoredReplayPublic(PublicModel):
    """A replay the registry ran on stored files, and the targets it could not read."""

    summary: ReplaySummary
    skipped: list[dict[str, str]] = Field(default_factory=list)


class BomImport(PublicModel):
    """``POST /api/v1/bom/import``: what a CycloneDX import registered, flagged and could not keep.

    ``registered``: the references newly registered or filled; ``flagged``: those
    the document reported compromised and the import flagged; ``warnings``: what
    the document says that the registry did not keep or decided (one line each).
    """

    registered: list[str]
    flagged: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
