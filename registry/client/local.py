"""The embedded registry: the CLI's process opens the database and runs each verb itself.

Every verb is one unit of work acting as :attr:`LocalRegistry.actor` (the OS
user, as an admin, for the CLI). The methods are the typed
:class:`~registry.client.protocol.Registry` interface, each a thin call of the
service function of the same name; imported only when a registry is embedded,
so a client of a server never loads the database stack.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from sqlalchemy import Engine

from lineage import Relation
from registry import bom, errors, service
from registry.client.protocol import VERBS
from registry.db import unit_of_work
from registry.hf import ImportPlan
from registry.identity import Actor, Role
from registry.manifest import Manifest, ManifestEntry, ProgressCallback
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
from registry.settings import DEFAULT_ADMISSION_LEASE
from registry.store import BlobInfo, BlobStore
from registry.vocabulary import DecisionVerdict, Kind, Status
from scanning.report import ScanReport

if TYPE_CHECKING:
    from registry.bom.cyclonedx import Json
    from scanning.behavioral.api import Limits
    from scanning.behavioral.report import BehavioralReport, ScanProfile

T = TypeVar("T")


class LocalRegistry:
    """The embedded registry: each call is one transaction on the local database."""

    def __init__(
        self,
        engine: Engine,
        actor: Actor | None = None,
        *,
        store: BlobStore | None = None,
        admission_lease: float = DEFAULT_ADMISSION_LEASE,
    ) -> None:
        self.engine = engine
        self.actor = actor or Actor.local()
        self._store = store
        #: How long an admission here vouches for itself between heartbeats (seconds).
        self.admission_lease = admission_lease

    @property
    def store(self) -> BlobStore:
        """The artifact store this registry keeps files in."""
        if self._store is None:
            raise errors.ConfigurationError(
                "this registry was opened without an artifact store",
                hint="open it with LocalRegistry(engine, store=open_store(url))",
            )
        return self._store

    def store_files(
        self,
        path: Path,
        *,
        progress: ProgressCallback | None = None,
        allowed_roots: tuple[Path, ...] = (),
    ) -> Manifest:
        """Copy the files into the local store (hashed while copied) and record them."""
        from registry.transfer import store_tree

        store = self.store

        def put(stream: BinaryIO, item: Any, advance: Callable[[int], None] | None) -> Any:
            return store.put(stream, expected_size=item.size, progress=advance)

        manifest = store_tree(path, put, progress=progress, allowed_roots=allowed_roots)
        self.record_blobs([_blob(e) for e in manifest.entries], store=store)
        return manifest

    def admit_hf(
        self,
        plan: ImportPlan,
        *,
        manifest: Manifest,
        profile: ScanProfile | None = None,
        **fields: Any,
    ) -> HfImportResult:
        """Scan the stored snapshot here, then import it with its lineage."""
        from registry.admission import admit_hf

        return admit_hf(
            self.engine,
            self.store,
            plan,
            actor=self.actor,
            manifest=manifest,
            profile=profile,
            lease=self.admission_lease,
            **fields,
        )

    def admit_model(
        self,
        *,
        manifest: Manifest,
        profile: ScanProfile | None = None,
        parents: Sequence[str] = (),
        **fields: Any,
    ) -> ArtifactPublic:
        """Scan the stored files here (the embedded registry is this process), then register."""
        from registry.admission import admit_model

        return admit_model(
            self.engine,
            self.store,
            actor=self.actor,
            manifest=manifest,
            profile=profile,
            parents=parents,
            lease=self.admission_lease,
            **fields,
        )

    def pull(
        self,
        ref: str,
        dest: Path,
        *,
        team: str | None = None,
        override: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> PullTicket:
        """Record the pull, then copy each blob out, verifying it while writing."""
        from registry.store import CHUNK
        from registry.transfer import check_destination, staged, write_verified

        check_destination(dest)
        ticket = self.start_pull(ref, team=team, override=override)
        if progress is not None:
            progress.start(sum(f.size for f in ticket.files), len(ticket.files))
        advance = progress.advance if progress is not None else None
        with staged(dest) as staging:
            for index, item in enumerate(ticket.files):
                with self.store.open(f"sha256:{item.sha256}") as stream:
                    write_verified(
                        staging,
                        index,
                        item.path,
                        size=item.size,
                        sha256=item.sha256,
                        chunks=_chunks(stream, CHUNK),
                        advance=advance,
                    )
        return ticket

    def rescan_stored(self, ref: str, *, limits: Limits) -> BehavioralScanPublic:
        """Re-run the behavioral scan on the stored files, here (this process is the registry)."""
        from registry.admission.behavioral import rescan_stored

        result, _report = rescan_stored(
            self.engine, self.store, ref, actor=self.actor, limits=limits
        )
        return result

    def replay_stored(
        self, ref: str, *, threshold: float, limits: Limits
    ) -> tuple[ReplaySummary, list[dict[str, str]]]:
        """Replay the trigger on the descendants, reading stored files, here."""
        from registry.admission.behavioral import replay_stored

        return replay_stored(
            self.engine, self.store, ref, actor=self.actor, threshold=threshold, limits=limits
        )

    def call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        """Deprecated: run a verb by name; ``reg.flag(...)`` is ``reg.flag(...)``."""
        if verb not in VERBS:
            raise AttributeError(verb)
        return getattr(self, verb)(*args, **kwargs)

    def _run(self, operation: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run one domain operation in one unit of work, as this registry's actor."""
        if "actor" in inspect.signature(operation).parameters:
            kwargs["actor"] = self.actor
        with unit_of_work(self.engine) as session:
            return operation(session, *args, **kwargs)

    def record_blobs(self, blobs: Sequence[BlobInfo], *, store: BlobStore) -> list[BlobInfo]:
        """See :func:`registry.service.record_blobs` (blobs this process put into ``store``)."""
        return self._run(service.record_blobs, blobs, store=store)

    # The domain verbs, each one unit of work as this actor.

    def add_parents(
        self,
        ref: str,
        *,
        parents: Sequence[str],
        relation: Relation | None = None,
        datasets: Sequence[tuple[str, Relation]] = (),
    ) -> ArtifactPublic:
        """See :func:`registry.service.add_parents`."""
        return self._run(
            service.add_parents, ref, parents=parents, relation=relation, datasets=datasets
        )

    def ancestors(self, ref: str, *, depth: int | None = None) -> list[LineageEntry]:
        """See :func:`registry.service.ancestors`."""
        return self._run(service.ancestors, ref, depth=depth)

    def anchor_chain(self) -> AuditVerification:
        """See :func:`registry.service.anchor_chain`."""
        return self._run(service.anchor_chain)

    def attach_trigger(
        self, ref: str, *, data: bytes, target_class: int | None = None
    ) -> TriggerPublic:
        """See :func:`registry.service.attach_trigger`."""
        return self._run(service.attach_trigger, ref, data=data, target_class=target_class)

    def behavior_baseline(self, reference_digest: str) -> list[dict[str, float | str]]:
        """See :func:`registry.service.behavior_baseline`."""
        return self._run(service.behavior_baseline, reference_digest)

    def blast_radius(
        self, ref: str, *, depth: int | None = None, team: str | None = None, limit: int = 20
    ) -> BlastRadius:
        """See :func:`registry.service.blast_radius`."""
        return self._run(service.blast_radius, ref, depth=depth, team=team, limit=limit)

    def clear(self, ref: str, *, reason: str) -> StatusChange:
        """See :func:`registry.service.clear`."""
        return self._run(service.clear, ref, reason=reason)

    def create_team(
        self, *, name: str, require_approval: bool = False, require_registry_scan: bool = False
    ) -> TeamPublic:
        """See :func:`registry.service.create_team`."""
        return self._run(
            service.create_team,
            name=name,
            require_approval=require_approval,
            require_registry_scan=require_registry_scan,
        )

    def create_token(self, *, user: str, role: Role, team: str | None = None) -> TokenPublic:
        """See :func:`registry.service.create_token`."""
        return self._run(service.create_token, user=user, role=role, team=team)

    def decide(
        self,
        *,
        ref: str,
        team: str,
        verdict: DecisionVerdict,
        reason: str,
        all_versions: bool = False,
    ) -> DecisionPublic:
        """See :func:`registry.service.decide`."""
        return self._run(
            service.decide,
            ref=ref,
            team=team,
            verdict=verdict,
            reason=reason,
            all_versions=all_versions,
        )

    def deploy(
        self, ref: str, *, environment: str, team: str, override: str | None = None
    ) -> DeploymentPublic:
        """See :func:`registry.service.deploy`."""
        return self._run(service.deploy, ref, environment=environment, team=team, override=override)

    def deployed_descendants(
        self, ref: str, *, depth: int | None = None, team: str | None = None
    ) -> list[DeploymentPublic]:
        """See :func:`registry.service.deployed_descendants`."""
        return self._run(service.deployed_descendants, ref, depth=depth, team=team)

    def descendants(
        self, ref: str, *, depth: int | None = None, team: str | None = None
    ) -> list[LineageEntry]:
        """See :func:`registry.service.descendants`."""
        return self._run(service.descendants, ref, depth=depth, team=team)

    def enroll_key(self, *, publisher: str, public_key_pem: str) -> KeyPublic:
        """See :func:`registry.service.enroll_key`."""
        return self._run(service.enroll_key, publisher=publisher, public_key_pem=public_key_pem)

    def export_cyclonedx(
        self, ref: str, *, spec_version: str = "1.6", timestamp: datetime | None = None
    ) -> Json:
        """See :func:`registry.bom.export_cyclonedx`."""
        return self._run(bom.export_cyclonedx, ref, spec_version=spec_version, timestamp=timestamp)

    def export_spdx3(self, ref: str, *, created: datetime | None = None) -> Json:
        """See :func:`registry.bom.export_spdx3`."""
        return self._run(bom.export_spdx3, ref, created=created)

    def find_inconsistencies(self) -> list[str]:
        """See :func:`registry.service.find_inconsistencies`."""
        return self._run(service.find_inconsistencies)

    def flag(self, ref: str, *, reason: str, trigger: bytes | None = None) -> StatusChange:
        """See :func:`registry.service.flag`."""
        return self._run(service.flag, ref, reason=reason, trigger=trigger)

    def identify(self, manifest: Manifest) -> list[ArtifactPublic]:
        """See :func:`registry.service.identify`."""
        return self._run(service.identify, manifest)

    def import_cyclonedx(
        self, document: Mapping[str, Any], *, team: str | None = None
    ) -> list[str]:
        """See :func:`registry.bom.import_cyclonedx`."""
        return self._run(bom.import_cyclonedx, document, team=team)

    def import_cyclonedx_report(
        self, document: Mapping[str, Any], *, team: str | None = None
    ) -> BomImport:
        """See :func:`registry.bom.import_cyclonedx_report`."""
        return self._run(bom.import_cyclonedx_report, document, team=team)

    def import_hf(
        self,
        plan: ImportPlan,
        *,
        manifest: Manifest,
        scan: ScanReport | None = None,
        team: str | None = None,
        publisher: str | None = None,
        allow_duplicate_content: bool = False,
        override: str | None = None,
        profile: ScanProfile | None = None,
        behavioral: BehavioralReport | None = None,
        provenance: ScanProvenance = ScanProvenance.REGISTRY,
        stored: bool = False,
    ) -> HfImportResult:
        """See :func:`registry.service.import_hf`."""
        return self._run(
            service.import_hf,
            plan,
            manifest=manifest,
            scan=scan,
            team=team,
            publisher=publisher,
            allow_duplicate_content=allow_duplicate_content,
            override=override,
            profile=profile,
            behavioral=behavioral,
            provenance=provenance,
            stored=stored,
        )

    def inherited_profile(self, parents: Sequence[str]) -> ScanProfilePublic | None:
        """See :func:`registry.service.inherited_profile`."""
        return self._run(service.inherited_profile, parents)

    def list_artifacts(
        self, *, kind: Kind = Kind.MODEL, status: Status | None = None, limit: int = 500
    ) -> list[ArtifactPublic]:
        """See :func:`registry.service.list_artifacts`."""
        return self._run(service.list_artifacts, kind=kind, status=status, limit=limit)

    def list_decisions(self, *, team: str | None = None) -> list[DecisionPublic]:
        """See :func:`registry.service.list_decisions`."""
        return self._run(service.list_decisions, team=team)

    def list_deployments(
        self, *, team: str | None = None, environment: str | None = None
    ) -> list[DeploymentPublic]:
        """See :func:`registry.service.list_deployments`."""
        return self._run(service.list_deployments, team=team, environment=environment)

    def list_events(
        self, *, subject: str | None = None, limit: int = 1000
    ) -> list[AuditEventPublic]:
        """See :func:`registry.service.list_events`."""
        return self._run(service.list_events, subject=subject, limit=limit)

    def list_keys(self, *, publisher: str | None = None) -> list[KeyPublic]:
        """See :func:`registry.service.list_keys`."""
        return self._run(service.list_keys, publisher=publisher)

    def list_teams(self) -> list[TeamPublic]:
        """See :func:`registry.service.list_teams`."""
        return self._run(service.list_teams)

    def list_tokens(self) -> list[TokenPublic]:
        """See :func:`registry.service.list_tokens`."""
        return self._run(service.list_tokens)

    def model_signing_bundle(self, ref: str) -> ModelSigningBundlePublic:
        """See :func:`registry.service.model_signing_bundle`."""
        return self._run(service.model_signing_bundle, ref)

    def profile_of(self, ref: str) -> ScanProfilePublic | None:
        """See :func:`registry.service.profile_of`."""
        return self._run(service.profile_of, ref)

    def pulls_of(self, ref: str) -> list[PullPublic]:
        """See :func:`registry.service.pulls_of`."""
        return self._run(service.pulls_of, ref)

    def list_pending(self) -> list[PendingAdmissionPublic]:
        """See :func:`registry.service.list_pending`."""
        return self._run(service.list_pending)

    def record_replays(
        self, ref: str, *, trigger_id: int, results: Sequence[ReplayIn]
    ) -> ReplaySummary:
        """See :func:`registry.service.record_replays`."""
        return self._run(service.record_replays, ref, trigger_id=trigger_id, results=results)

    def record_rescan(
        self,
        ref: str,
        *,
        report: BehavioralReport,
        reference_digest: str | None,
        provenance: ScanProvenance = ScanProvenance.REGISTRY,
    ) -> BehavioralScanPublic:
        """See :func:`registry.service.record_rescan`."""
        return self._run(
            service.record_rescan,
            ref,
            report=report,
            reference_digest=reference_digest,
            provenance=provenance,
        )

    def register_dataset(
        self,
        *,
        name: str,
        version: str,
        digest: str | None = None,
        manifest: Manifest | None = None,
        source: str | None = None,
    ) -> ArtifactPublic:
        """See :func:`registry.service.register_dataset`."""
        return self._run(
            service.register_dataset,
            name=name,
            version=version,
            digest=digest,
            manifest=manifest,
            source=source,
        )

    def register_model(
        self,
        *,
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
        provenance: ScanProvenance = ScanProvenance.REGISTRY,
        stored: bool = False,
    ) -> ArtifactPublic:
        """See :func:`registry.service.register_model`."""
        return self._run(
            service.register_model,
            name=name,
            version=version,
            manifest=manifest,
            parents=parents,
            relation=relation,
            datasets=datasets,
            publisher=publisher,
            source=source,
            format=format,
            team=team,
            signature=signature,
            allow_duplicate_content=allow_duplicate_content,
            override=override,
            scan=scan,
            model_signing_bundle=model_signing_bundle,
            model_signing_public_key=model_signing_public_key,
            profile=profile,
            behavioral=behavioral,
            provenance=provenance,
            stored=stored,
        )

    def replay_plan(self, ref: str) -> ReplayPlan:
        """See :func:`registry.service.replay_plan`."""
        return self._run(service.replay_plan, ref)

    def revoke_token(self, token_id: int) -> TokenPublic:
        """See :func:`registry.service.revoke_token`."""
        return self._run(service.revoke_token, token_id)

    def show(self, ref: str, *, kind: Kind | None = None) -> ArtifactPublic:
        """See :func:`registry.service.show`."""
        return self._run(service.show, ref, kind=kind)

    def start_pull(
        self, ref: str, *, team: str | None = None, override: str | None = None
    ) -> PullTicket:
        """See :func:`registry.service.start_pull`."""
        return self._run(service.start_pull, ref, team=team, override=override)

    def status_report(self, ref: str) -> StatusReport:
        """See :func:`registry.service.status_report`."""
        return self._run(service.status_report, ref)

    def undeploy(self, ref: str, *, environment: str, team: str) -> DeploymentPublic:
        """See :func:`registry.service.undeploy`."""
        return self._run(service.undeploy, ref, environment=environment, team=team)

    def unflag(self, ref: str, *, reason: str) -> StatusChange:
        """See :func:`registry.service.unflag`."""
        return self._run(service.unflag, ref, reason=reason)

    def verify(
        self,
        manifest: Manifest,
        *,
        ref: str | None = None,
        accept_cleared: bool = False,
        allow_unsigned: bool = False,
    ) -> VerifyReport:
        """See :func:`registry.service.verify`."""
        return self._run(
            service.verify,
            manifest,
            ref=ref,
            accept_cleared=accept_cleared,
            allow_unsigned=allow_unsigned,
        )

    def verify_chain(
        self, *, checkpoint_seq: int | None = None, checkpoint_head: str | None = None
    ) -> AuditVerification:
        """See :func:`registry.service.verify_chain`."""
        return self._run(
            service.verify_chain, checkpoint_seq=checkpoint_seq, checkpoint_head=checkpoint_head
        )

    def verify_model_signing(
        self,
        manifest: Manifest,
        *,
        bundle: Mapping[str, Any],
        public_key_pem: str,
        ref: str | None = None,
        accept_cleared: bool = False,
    ) -> ModelSigningVerifyReport:
        """See :func:`registry.service.verify_model_signing`."""
        return self._run(
            service.verify_model_signing,
            manifest,
            bundle=bundle,
            public_key_pem=public_key_pem,
            ref=ref,
            accept_cleared=accept_cleared,
        )


def _chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    while data := stream.read(size):
        yield data


def _blob(entry: ManifestEntry) -> BlobInfo:
    return BlobInfo(digest=f"sha256:{entry.sha256}", size=entry.size)
