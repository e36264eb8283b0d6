"""What the CLI asks of a registry: one typed interface, two implementations.

:class:`Registry` lists every verb with its parameters and answer, so mypy checks
each call the CLI makes. :class:`~registry.client.local.LocalRegistry` runs them
in-process; :class:`~registry.client.remote.RemoteRegistry` sends them to ``mbom
serve``. ``tests/registry/test_client_protocol.py`` checks both implement all of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lineage import Relation
    from registry.bom.cyclonedx import Json
    from registry.hf import ImportPlan
    from registry.identity import Role
    from registry.manifest import Manifest, ProgressCallback
    from registry.schemas import (
        ArtifactPublic,
        AuditEventPublic,
        AuditVerification,
        BehavioralScanPublic,
        BlastRadius,
        BomImport,
        DecisionPublic,
        DeploymentPublic,
        HfImportResult,
        KeyPublic,
        LineageEntry,
        ModelSigningBundlePublic,
        ModelSigningVerifyReport,
        PendingAdmissionPublic,
        PullPublic,
        PullTicket,
        ReplayIn,
        ReplayPlan,
        ReplaySummary,
        ScanProfilePublic,
        ScanProvenance,
        StatusChange,
        StatusReport,
        TeamPublic,
        TokenPublic,
        TriggerPublic,
        VerifyReport,
    )
    from registry.vocabulary import DecisionVerdict, Kind, Status
    from scanning.behavioral.api import Limits
    from scanning.behavioral.report import BehavioralReport, ScanProfile
    from scanning.report import ScanReport

#: The domain verbs every registry answers (``Registry.call`` accepts only these names).
VERBS = frozenset(
    {
        "add_parents",
        "ancestors",
        "anchor_chain",
        "attach_trigger",
        "behavior_baseline",
        "blast_radius",
        "clear",
        "create_team",
        "create_token",
        "decide",
        "deploy",
        "deployed_descendants",
        "descendants",
        "enroll_key",
        "export_cyclonedx",
        "export_spdx3",
        "find_inconsistencies",
        "flag",
        "identify",
        "import_cyclonedx",
        "import_cyclonedx_report",
        "import_hf",
        "inherited_profile",
        "list_artifacts",
        "list_decisions",
        "list_deployments",
        "list_events",
        "list_keys",
        "list_teams",
        "list_tokens",
        "model_signing_bundle",
        "profile_of",
        "list_pending",
        "pulls_of",
        "record_replays",
        "record_rescan",
        "register_dataset",
        "register_model",
        "replay_plan",
        "revoke_token",
        "show",
        "start_pull",
        "status_report",
        "undeploy",
        "unflag",
        "verify",
        "verify_chain",
        "verify_model_signing",
    }
)


class Registry(Protocol):
    """What the CLI asks of a registry (see :mod:`registry.service` for each verb).

    The typed methods move files and run admission; both the embedded registry
    and the server client implement them (``tests/registry/test_store_cli.py``
    drives both).
    """

    def call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        """Deprecated: run a verb by name (``reg.flag(...)`` is ``reg.flag(...)``)."""
        ...

    def store_files(
        self,
        path: Path,
        *,
        progress: ProgressCallback | None = None,
        allowed_roots: tuple[Path, ...] = (),
    ) -> Manifest:
        """Put every file under ``path`` into the registry's store; the manifest it received."""
        ...

    def admit_hf(
        self,
        plan: ImportPlan,
        *,
        manifest: Manifest,
        profile: ScanProfile | None = None,
        **fields: Any,
    ) -> HfImportResult:
        """Import a stored Hugging Face snapshot after the registry's own admission scans."""
        ...

    def admit_model(
        self,
        *,
        manifest: Manifest,
        profile: ScanProfile | None = None,
        parents: Sequence[str] = (),
        **fields: Any,
    ) -> ArtifactPublic:
        """Register a stored version after the registry's own admission scans."""
        ...

    def pull(
        self,
        ref: str,
        dest: Path,
        *,
        team: str | None = None,
        override: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> PullTicket:
        """Download a stored version into ``dest`` (recorded, policy-checked, hash-verified)."""
        ...

    def rescan_stored(self, ref: str, *, limits: Limits) -> BehavioralScanPublic:
        """Re-run the behavioral scan of a stored version on the registry's side."""
        ...

    def replay_stored(
        self, ref: str, *, threshold: float, limits: Limits
    ) -> tuple[ReplaySummary, list[dict[str, str]]]:
        """Replay a flagged model's trigger on its descendants' stored files."""
        ...

    # The domain verbs (generated from registry.service and registry.bom signatures).

    def add_parents(
        self,
        ref: str,
        *,
        parents: Sequence[str],
        relation: Relation | None = ...,
        datasets: Sequence[tuple[str, Relation]] = ...,
    ) -> ArtifactPublic:
        """See :func:`registry.service.add_parents`."""
        ...

    def ancestors(self, ref: str, *, depth: int | None = ...) -> list[LineageEntry]:
        """See :func:`registry.service.ancestors`."""
        ...

    def anchor_chain(self) -> AuditVerification:
        """See :func:`registry.service.anchor_chain`."""
        ...

    def attach_trigger(
        self, ref: str, *, data: bytes, target_class: int | None = ...
    ) -> TriggerPublic:
        """See :func:`registry.service.attach_trigger`."""
        ...

    def behavior_baseline(self, reference_digest: str) -> list[dict[str, float | str]]:
        """See :func:`registry.service.behavior_baseline`."""
        ...

    def blast_radius(
        self, ref: str, *, depth: int | None = ..., team: str | None = ..., limit: int = ...
    ) -> BlastRadius:
        """See :func:`registry.service.blast_radius`."""
        ...

    def clear(self, ref: str, *, reason: str) -> StatusChange:
        """See :func:`registry.service.clear`."""
        ...

    def create_team(
        self, *, name: str, require_approval: bool = ..., require_registry_scan: bool = ...
    ) -> TeamPublic:
        """See :func:`registry.service.create_team`."""
        ...

    def create_token(self, *, user: str, role: Role, team: str | None = ...) -> TokenPublic:
        """See :func:`registry.service.create_token`."""
        ...

    def decide(
        self,
        *,
        ref: str,
        team: str,
        verdict: DecisionVerdict,
        reason: str,
        all_versions: bool = ...,
    ) -> DecisionPublic:
        """See :func:`registry.service.decide`."""
        ...

    def deploy(
        self, ref: str, *, environment: str, team: str, override: str | None = ...
    ) -> DeploymentPublic:
        """See :func:`registry.service.deploy`."""
        ...

    def deployed_descendants(
        self, ref: str, *, depth: int | None = ..., team: str | None = ...
    ) -> list[DeploymentPublic]:
        """See :func:`registry.service.deployed_descendants`."""
        ...

    def descendants(
        self, ref: str, *, depth: int | None = ..., team: str | None = ...
    ) -> list[LineageEntry]:
        """See :func:`registry.service.descendants`."""
        ...

    def enroll_key(self, *, publisher: str, public_key_pem: str) -> KeyPublic:
        """See :func:`registry.service.enroll_key`."""
        ...

    def export_cyclonedx(self, ref: str, *, spec_version: str = ...) -> Json:
        """See :func:`registry.bom.export_cyclonedx`."""
        ...

    def export_spdx3(self, ref: str) -> Json:
        """See :func:`registry.bom.export_spdx3`."""
        ...

    def find_inconsistencies(self) -> list[str]:
        """See :func:`registry.service.find_inconsistencies`."""
        ...

    def flag(self, ref: str, *, reason: str, trigger: bytes | None = ...) -> StatusChange:
        """See :func:`registry.service.flag`."""
        ...

    def identify(self, manifest: Manifest) -> list[ArtifactPublic]:
        """See :func:`registry.service.identify`."""
        ...

    def import_cyclonedx(self, document: Mapping[str, Any], *, team: str | None = ...) -> list[str]:
        """See :func:`registry.bom.import_cyclonedx`."""
        ...

    def import_cyclonedx_report(
        self, document: Mapping[str, Any], *, team: str | None = ...
    ) -> BomImport:
        """See :func:`registry.bom.import_cyclonedx_report`."""
        ...

    def import_hf(
        self,
        plan: ImportPlan,
        *,
        manifest: Manifest,
        scan: ScanReport | None = ...,
        team: str | None = ...,
        publisher: str | None = ...,
        allow_duplicate_content: bool = ...,
        override: str | None = ...,
        profile: ScanProfile | None = ...,
        behavioral: BehavioralReport | None = ...,
        provenance: ScanProvenance = ...,
        stored: bool = ...,
    ) -> HfImportResult:
        """See :func:`registry.service.import_hf`."""
        ...

    def inherited_profile(self, parents: Sequence[str]) -> ScanProfilePublic | None:
        """See :func:`registry.service.inherited_profile`."""
        ...

    def list_artifacts(
        self, *, kind: Kind = ..., status: Status | None = ..., limit: int = ...
    ) -> list[ArtifactPublic]:
        """See :func:`registry.service.list_artifacts`."""
        ...

    def list_decisions(self, *, team: str | None = ...) -> list[DecisionPublic]:
        """See :func:`registry.service.list_decisions`."""
        ...

    def list_deployments(
        self, *, team: str | None = ..., environment: str | None = ...
    ) -> list[DeploymentPublic]:
        """See :func:`registry.service.list_deployments`."""
        ...

    def list_events(self, *, subject: str | None = ..., limit: int = ...) -> list[AuditEventPublic]:
        """See :func:`registry.service.list_events`."""
        ...

    def list_keys(self, *, publisher: str | None = ...) -> list[KeyPublic]:
        """See :func:`registry.service.list_keys`."""
        ...

    def list_teams(self) -> list[TeamPublic]:
        """See :func:`registry.service.list_teams`."""
        ...

    def list_tokens(self) -> list[TokenPublic]:
        """See :func:`registry.service.list_tokens`."""
        ...

    def model_signing_bundle(self, ref: str) -> ModelSigningBundlePublic:
        """See :func:`registry.service.model_signing_bundle`."""
        ...

    def profile_of(self, ref: str) -> ScanProfilePublic | None:
        """See :func:`registry.service.profile_of`."""
        ...

    def pulls_of(self, ref: str) -> list[PullPublic]:
        """See :func:`registry.service.pulls_of`."""
        ...

    def list_pending(self) -> list[PendingAdmissionPublic]:
        """See :func:`registry.service.list_pending`."""
        ...

    def record_replays(
        self, ref: str, *, trigger_id: int, results: Sequence[ReplayIn]
    ) -> ReplaySummary:
        """See :func:`registry.service.record_replays`."""
        ...

    def record_rescan(
        self,
        ref: str,
        *,
        report: BehavioralReport,
        reference_digest: str | None,
        provenance: ScanProvenance = ...,
    ) -> BehavioralScanPublic:
        """See :func:`registry.service.record_rescan`."""
        ...

    def register_dataset(
        self,
        *,
        name: str,
        version: str,
        digest: str | None = ...,
        manifest: Manifest | None = ...,
        source: str | None = ...,
    ) -> ArtifactPublic:
        """See :func:`registry.service.register_dataset`."""
        ...

    def register_model(
        self,
        *,
        name: str,
        version: str,
        manifest: Manifest,
        parents: Sequence[str] = ...,
        relation: Relation | None = ...,
        datasets: Sequence[tuple[str, Relation]] = ...,
        publisher: str | None = ...,
        source: str | None = ...,
        format: str | None = ...,
        team: str | None = ...,
        signature: str | None = ...,
        allow_duplicate_content: bool = ...,
        override: str | None = ...,
        scan: ScanReport | None = ...,
        model_signing_bundle: dict[str, Any] | None = ...,
        model_signing_public_key: str | None = ...,
        profile: ScanProfile | None = ...,
        behavioral: BehavioralReport | None = ...,
        provenance: ScanProvenance = ...,
    ) -> ArtifactPublic:
        """See :func:`registry.service.register_model`."""
        ...

    def replay_plan(self, ref: str) -> ReplayPlan:
        """See :func:`registry.service.replay_plan`."""
        ...

    def revoke_token(self, token_id: int) -> TokenPublic:
        """See :func:`registry.service.revoke_token`."""
        ...

    def show(self, ref: str, *, kind: Kind | None = ...) -> ArtifactPublic:
        """See :func:`registry.service.show`."""
        ...

    def start_pull(
        self, ref: str, *, team: str | None = ..., override: str | None = ...
    ) -> PullTicket:
        """See :func:`registry.service.start_pull`."""
        ...

    def status_report(self, ref: str) -> StatusReport:
        """See :func:`registry.service.status_report`."""
        ...

    def undeploy(self, ref: str, *, environment: str, team: str) -> DeploymentPublic:
        """See :func:`registry.service.undeploy`."""
        ...

    def unflag(self, ref: str, *, reason: str) -> StatusChange:
        """See :func:`registry.service.unflag`."""
        ...

    def verify(
        self,
        manifest: Manifest,
        *,
        ref: str | None = ...,
        accept_cleared: bool = ...,
        allow_unsigned: bool = ...,
    ) -> VerifyReport:
        """See :func:`registry.service.verify`."""
        ...

    def verify_chain(
        self, *, checkpoint_seq: int | None = ..., checkpoint_head: str | None = ...
    ) -> AuditVerification:
        """See :func:`registry.service.verify_chain`."""
        ...

    def verify_model_signing(
        self,
        manifest: Manifest,
        *,
        bundle: Mapping[str, Any],
        public_key_pem: str,
        ref: str | None = ...,
        accept_cleared: bool = ...,
    ) -> ModelSigningVerifyReport:
        """See :func:`registry.service.verify_model_signing`."""
        ...
