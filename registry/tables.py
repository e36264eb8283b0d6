"""The registry's tables (SQLModel).

Models and datasets share one ``artifact`` table so that the lineage, the
status and the audit speak of one kind of node. ``edge`` holds every lineage
edge (model to model, dataset to model); ``lineage_closure`` materialises
every (ancestor, descendant) pair with the shortest depth and the parent on
that path, so graph questions are index look-ups in any database;
``infection`` materialises, for each tainted node, every compromised source
reaching it with the shortest path (as ``via`` pointers).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from registry.vocabulary import Finding, Status


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _time_field() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Artifact(SQLModel, table=True):
    """A model version or a dataset version."""

    __tablename__ = "artifact"
    __table_args__ = (
        UniqueConstraint("kind", "name", "version", name="uq_artifact_identity"),
        Index("ix_artifact_name", "name"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    name: str = Field(max_length=300)
    version: str = Field(max_length=128)
    publisher: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=2000)
    format: str | None = Field(default=None, max_length=64)
    team: str | None = Field(default=None, max_length=100)
    digest: str | None = Field(default=None, max_length=80, index=True)
    manifest: list[list[Any]] | None = Field(default=None, sa_column=Column(JSON))
    total_size: int | None = Field(default=None, sa_column=Column(BigInteger))
    finding: str = Field(default=Finding.UNSCANNED, max_length=16)
    status: str = Field(default=Status.CLEAN, max_length=16)
    placeholder: bool = False
    #: Whether the registry holds every file of the manifest in its artifact store
    #: (``stored_file`` lists them); a metadata-only version's files are held elsewhere.
    stored: bool = False
    created_at: datetime = _time_field()
    created_by: str = Field(max_length=200)


class Blob(SQLModel, table=True):
    """A file's content in the artifact store, by SHA-256: present once recorded here.

    A row is written only after its bytes are complete in the store, and the store
    object is deleted only in the transaction that deletes the row (``store gc``),
    so a recorded blob is a present blob. ``claimed_at`` is when a registration last
    relied on it: collection spares blobs claimed within its grace period.
    """

    __tablename__ = "blob"

    digest: str = Field(primary_key=True, max_length=80)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = _time_field()
    claimed_at: datetime = _time_field()


class StoredFile(SQLModel, table=True):
    """One file of a stored version: its path in the model and the blob holding it."""

    __tablename__ = "stored_file"
    __table_args__ = (Index("ix_stored_file_digest", "digest"),)

    artifact_id: int = Field(foreign_key="artifact.id", primary_key=True)
    path: str = Field(primary_key=True, max_length=1000)
    digest: str = Field(max_length=80)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class Pull(SQLModel, table=True):
    """Someone downloaded a stored version from the registry (``mbom pull``)."""

    __tablename__ = "pull"
    __table_args__ = (Index("ix_pull_artifact", "artifact_id"),)

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id")
    user: str = Field(max_length=200)
    team: str | None = Field(default=None, max_length=100)
    #: The manifest digest of what was handed out.
    digest: str = Field(max_length=80)
    #: The approver's reason when the pull was allowed despite a rule.
    override: str | None = Field(default=None, max_length=4000)
    created_at: datetime = _time_field()


class PendingAdmission(SQLModel, table=True):
    """A version being admitted: its files are stored, its scans are running.

    It is not an artifact yet (so nothing can pull it, deploy it or hang a child
    on it) but it holds its name: nobody else registers ``name@version`` while
    ``lease_until`` has not passed. The admitting process renews its lease;
    a row whose lease ran out was left by a
    process that died, and the next registration of the same name takes it over
    (``attempt`` counts the takeovers). Admission deletes the row in the
    transaction that records the version, or when it is refused.
    """

    __tablename__ = "pending_admission"
    __table_args__ = (
        UniqueConstraint("kind", "name", "version", name="uq_pending_admission_identity"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    name: str = Field(max_length=300)
    version: str = Field(max_length=128)
    #: The manifest digest of the files being admitted.
    digest: str = Field(max_length=80)
    user: str = Field(max_length=200)
    team: str | None = Field(default=None, max_length=100)
    #: What admission is doing now ("queued", "static scan", "behavioral scan", "recording").
    step: str = Field(max_length=40)
    attempt: int = 1
    started_at: datetime = _time_field()
    #: Until when the admitting process vouches it is alive (renewed by its heartbeat).
    lease_until: datetime = _time_field()


class Edge(SQLModel, table=True):
    """A lineage edge: ``parent`` (model or dataset) to ``child`` (a model)."""

    __tablename__ = "edge"
    __table_args__ = (Index("ix_edge_child_parent", "child_id", "parent_id"),)

    parent_id: int = Field(foreign_key="artifact.id", primary_key=True)
    child_id: int = Field(foreign_key="artifact.id", primary_key=True)
    relation: str = Field(max_length=32)


class LineageClosure(SQLModel, table=True):
    """Every (ancestor, descendant) pair: shortest depth and the last hop's parent."""

    __tablename__ = "lineage_closure"
    __table_args__ = (
        # Clustered by the key (SQLite WITHOUT ROWID; PostgreSQL's key carries the rest):
        # a path is a chain of key look-ups that each need ``via_id``.
        PrimaryKeyConstraint(
            "ancestor_id",
            "descendant_id",
            name="lineage_closure_pkey",
            postgresql_include=["depth", "via_id"],
        ),
        Index("ix_closure_descendant", "descendant_id", "ancestor_id"),
        {"sqlite_with_rowid": False},
    )

    ancestor_id: int = Field(foreign_key="artifact.id")
    descendant_id: int = Field(foreign_key="artifact.id")
    depth: int
    via_id: int


class Infection(SQLModel, table=True):
    """A compromised ``source`` reaches ``artifact`` along a shortest path through ``via``."""

    __tablename__ = "infection"
    __table_args__ = (Index("ix_infection_source", "source_id"),)

    # No foreign keys: derived rows the service rebuilds; the checks cost more than the rows.
    artifact_id: int = Field(primary_key=True)
    source_id: int = Field(primary_key=True)
    depth: int
    via_id: int


class Flag(SQLModel, table=True):
    """A direct compromise finding on an artifact; inactive once unflagged."""

    __tablename__ = "flag"

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id", index=True)
    reason: str = Field(max_length=4000)
    actor: str = Field(max_length=200)
    previous_finding: str = Field(max_length=16)
    active: bool = True
    #: Whether the registry vouches for the finding (an admin's flag, a scan it ran
    #: itself): only such flags make the same content malicious under other names.
    vouched: bool = False
    created_at: datetime = _time_field()
    resolved_by: str | None = Field(default=None, max_length=200)
    resolution: str | None = Field(default=None, max_length=4000)


class Clearance(SQLModel, table=True):
    """An approver's sign-off that ``source``'s infection does not affect ``artifact``."""

    __tablename__ = "clearance"

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id", index=True)
    source_id: int = Field(foreign_key="artifact.id")
    reason: str = Field(max_length=4000)
    actor: str = Field(max_length=200)
    active: bool = True
    created_at: datetime = _time_field()


class Team(SQLModel, table=True):
    """A team that registers and deploys models; may require approval of bases."""

    __tablename__ = "team"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    require_approval: bool = False
    #: Bases must be stored in the registry and scanned by it (no metadata-only parents).
    require_registry_scan: bool = False
    created_at: datetime = _time_field()


class Decision(SQLModel, table=True):
    """A team's approval or block of a model version, or of every version of a name.

    ``team`` is null for decisions that apply to every team (a flag blocks the
    flagged model everywhere); ``version`` is null for a whole model name.
    """

    __tablename__ = "decision"
    __table_args__ = (Index("ix_decision_subject", "name", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    team: str | None = Field(default=None, max_length=100, index=True)
    name: str = Field(max_length=300)
    version: str | None = Field(default=None, max_length=128)
    verdict: str = Field(max_length=16)
    reason: str = Field(max_length=4000)
    actor: str = Field(max_length=200)
    origin: str = Field(default="person", max_length=16)
    active: bool = True
    created_at: datetime = _time_field()


class Deployment(SQLModel, table=True):
    """A model version running in an environment for a team."""

    __tablename__ = "deployment"
    __table_args__ = (Index("ix_deployment_artifact", "artifact_id"),)

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id")
    environment: str = Field(max_length=100)
    team: str = Field(max_length=100)
    active: bool = True
    created_at: datetime = _time_field()
    created_by: str = Field(max_length=200)


class DeployedPath(SQLModel, table=True):
    """An active deployment seen from one ancestor of its version (or the version itself).

    Derived from the closure by ``registry.service.deployed_paths`` in the same
    transaction as every change it depends on; no foreign keys, like ``infection``.
    """

    __tablename__ = "deployed_path"
    __table_args__ = (
        Index("ix_deployed_path_deployment", "deployment_id"),
        {"sqlite_with_rowid": False},
    )

    ancestor_id: int = Field(primary_key=True)
    deployment_id: int = Field(primary_key=True)
    depth: int
    #: The shortest path from the ancestor down to the deployed version, as references.
    path: list[str] = Field(sa_column=Column(JSON, nullable=False))


class PublisherKey(SQLModel, table=True):
    """A publisher's enrolled Ed25519 public key."""

    __tablename__ = "publisher_key"

    id: int | None = Field(default=None, primary_key=True)
    publisher: str = Field(max_length=200, index=True)
    fingerprint: str = Field(max_length=80, unique=True)
    public_key_pem: str = Field(max_length=2000)
    created_at: datetime = _time_field()
    created_by: str = Field(max_length=200)


class Signature(SQLModel, table=True):
    """A signature over an artifact's manifest digest by an enrolled key."""

    __tablename__ = "signature"

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id", index=True)
    fingerprint: str = Field(max_length=80)
    signature: str = Field(max_length=400)
    created_at: datetime = _time_field()


class ApiToken(SQLModel, table=True):
    """A bearer token for the server, stored as its SHA-256 only."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user: str = Field(max_length=200)
    role: str = Field(max_length=16)
    team: str | None = Field(default=None, max_length=100)
    token_hash: str = Field(max_length=64, unique=True)
    revoked: bool = False
    created_at: datetime = _time_field()


class AuditEvent(SQLModel, table=True):
    """One change, append-only, chained to the previous event by ``prev_hash``."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(unique=True)
    at: datetime = _time_field()
    actor: str = Field(max_length=200)
    operation: str = Field(max_length=64)
    subject: str = Field(max_length=500, index=True)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    #: The HMAC key's id for a keyed event; None for a legacy (unkeyed SHA-256) one.
    key_id: str | None = Field(default=None, max_length=16)
    #: Digests of the state tables as this event's transaction left them (keyed events).
    state: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class ScanRecord(SQLModel, table=True):
    """The result of an admission scan of an artifact (the report as JSON)."""

    __tablename__ = "scan_record"

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id", index=True)
    kind: str = Field(default="static", max_length=32)
    verdict: str = Field(max_length=16)
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    actor: str = Field(max_length=200)
    created_at: datetime = _time_field()
    #: Who ran the scan: ``registry`` (the registry itself, in its own process tree)
    #: or ``client`` (reported over the API). Only registry-run scans calibrate.
    provenance: str = Field(default="client", max_length=16)


class ModelSigningBundle(SQLModel, table=True):
    """An OpenSSF model-signing signature (a Sigstore bundle, JSON) stored with a model."""

    __tablename__ = "model_signing_bundle"

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id", index=True)
    key_fingerprint: str = Field(max_length=80)
    bundle: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _time_field()


class ScanProfile(SQLModel, table=True):
    """What a behavioral scan needs: input shape, value range, classes, clean references.

    ``reference`` is the ``.npz`` (``x`` float32, ``y`` int64) as given. A model
    without a row inherits its nearest ancestor's profile.
    """

    __tablename__ = "scan_profile"

    artifact_id: int = Field(foreign_key="artifact.id", primary_key=True)
    input_shape: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    value_min: float
    value_max: float
    num_classes: int
    reference: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    reference_digest: str = Field(max_length=80)
    created_at: datetime = _time_field()


class Trigger(SQLModel, table=True):
    """A backdoor trigger (mask and pattern, ``.npz``) recovered from or attached to a model."""

    __tablename__ = "trigger"

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id", index=True)
    target_class: int | None = None
    origin: str = Field(max_length=16)  # "scan" or "analyst"
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    digest: str = Field(max_length=80)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    actor: str = Field(max_length=200)
    created_at: datetime = _time_field()


class ReplayResult(SQLModel, table=True):
    """A trigger replayed on a model: the share of triggered references sent to one class."""

    __tablename__ = "replay_result"

    id: int | None = Field(default=None, primary_key=True)
    trigger_id: int = Field(foreign_key="trigger.id", index=True)
    #: The model the trigger was recovered from or attached to (the compromised source).
    source_id: int = Field(foreign_key="artifact.id")
    artifact_id: int = Field(foreign_key="artifact.id", index=True)
    role: str = Field(default="descendant", max_length=16)  # or "baseline" (a clean relative)
    #: A newer replay of the same source on the same model replaces this one.
    superseded: bool = False
    outcome: str = Field(max_length=16)  # "measured" or "scan_error"
    rate: float | None = None
    collapsed_class: int | None = None
    confirmed: bool = False
    threshold: float = 0.5
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    actor: str = Field(max_length=200)
    created_at: datetime = _time_field()
