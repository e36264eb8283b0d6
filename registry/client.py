"""The two ways the CLI reaches a registry: in-process, or over HTTP.

:class:`LocalRegistry` opens the database itself and runs each call as one
unit of work, acting as the OS user with the admin role. :class:`RemoteRegistry`
calls a running ``mbom serve`` with a bearer token. Both expose the same
methods and return the same :mod:`registry.schemas` views, so the CLI is
written once.
"""

from __future__ import annotations

import base64
import inspect
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol
from urllib.parse import quote

from pydantic import TypeAdapter
from sqlalchemy import Engine

from lineage import Relation
from registry import bom, errors, service
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
    BlobPublic,
    DecisionPublic,
    DeploymentPublic,
    HfImportResult,
    KeyPublic,
    LineageEntry,
    ModelSigningBundlePublic,
    ModelSigningVerifyReport,
    PullPublic,
    PullTicket,
    ReplayIn,
    ReplayPlan,
    ReplaySummary,
    ScanProfilePublic,
    ScanProvenance,
    StatusChange,
    StatusReport,
    StoredReplayPublic,
    TeamPublic,
    TokenPublic,
    TriggerPublic,
    VerifyReport,
    manifest_in,
)
from registry.store import BlobInfo, BlobStore
from scanning.report import ScanReport

if TYPE_CHECKING:  # NumPy is imported only by the verbs that send arrays
    from scanning.behavioral.api import Limits
    from scanning.behavioral.report import BehavioralReport, ScanProfile


class Registry(Protocol):
    """What the CLI asks of a registry (see :mod:`registry.service` for each verb).

    The typed methods move files and run admission; both the embedded registry
    and the server client implement them (``tests/registry/test_store_cli.py``
    drives both).
    """

    def call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        """Run one domain operation by name."""
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


class LocalRegistry:
    """The embedded registry: each call is one transaction on the local database."""

    def __init__(
        self, engine: Engine, actor: Actor | None = None, *, store: BlobStore | None = None
    ) -> None:
        self.engine = engine
        self.actor = actor or Actor.local()
        self._store = store

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
        self.call("record_blobs", [_blob(e) for e in manifest.entries], store=store)
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
        from registry.transfer import check_destination, write_verified

        check_destination(dest)
        ticket: PullTicket = self.call("start_pull", ref, team=team, override=override)
        if progress is not None:
            progress.start(sum(f.size for f in ticket.files), len(ticket.files))
        advance = progress.advance if progress is not None else None
        for item in ticket.files:
            with self.store.open(f"sha256:{item.sha256}") as stream:
                write_verified(
                    dest,
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
        """Run ``registry.service.<verb>`` (or ``registry.bom.<verb>``) in one unit of work."""
        module = next((m for m in _VERB_MODULES if verb in m.__all__), None)
        if module is None:
            raise AttributeError(verb)
        operation: Callable[..., Any] = getattr(module, verb)
        parameters = inspect.signature(operation).parameters
        if "actor" in parameters:
            kwargs["actor"] = self.actor
        if "provenance" in parameters:  # the embedded registry ran these scans itself
            kwargs.setdefault("provenance", ScanProvenance.REGISTRY)
        with unit_of_work(self.engine) as session:
            return operation(session, *args, **kwargs)


#: Where :meth:`LocalRegistry.call` finds its verbs: the domain operations and the bills
#: of materials built on them (the service layer does not re-export the layer above it).
_VERB_MODULES = (service, bom)

_PROBLEM_CLASSES: dict[str, type[errors.MbomError]] = {
    cls.code: cls
    for cls in (
        errors.InvalidInput,
        errors.NotFound,
        errors.AlreadyExists,
        errors.AmbiguousReference,
        errors.DuplicateContent,
        errors.UnsafePath,
        errors.SignatureError,
        errors.MalformedBundle,
        errors.LineageCycle,
        errors.PolicyViolation,
        errors.PermissionDenied,
        errors.AuthenticationRequired,
        errors.ConfigurationError,
        errors.Conflict,
        errors.LimitExceeded,
        errors.BlobMismatch,
        errors.BlobMissing,
        errors.BlobCorrupt,
    )
}


class RemoteRegistry:
    """A client of ``mbom serve``: the same verbs, over the REST API."""

    def __init__(self, server: str, token: str | None, *, timeout: float = 60.0) -> None:
        import httpx

        if not token:
            raise errors.ConfigurationError(
                "talking to a server needs a token", hint="set MBOM_TOKEN or pass --token"
            )
        self._http = httpx.Client(
            base_url=server.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
        self.server = server

    def close(self) -> None:
        """Close the connections to the server."""
        self._http.close()

    def __enter__(self) -> RemoteRegistry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        """Run one verb on the server."""
        handler = getattr(self, f"_{verb}", None)
        if handler is None:
            raise AttributeError(verb)
        return handler(*args, **kwargs)

    def _request(
        self, method: str, path: str, answer: Any, *, absent: str | None = None, **options: Any
    ) -> Any:
        """Call the API and parse the answer; None for a 404 about an ``absent`` thing."""
        import httpx

        # Names may hold '#', '?' or '%': escape everything but the path separators.
        path = quote(path, safe="/@:")
        try:
            response = self._http.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise errors.ConfigurationError(
                f"cannot reach the mbom server at {self.server}: {exc}",
                hint="check MBOM_SERVER / --server and that mbom serve is running",
            ) from exc
        if absent is not None and _not_found(response) == absent:
            return None
        if response.status_code >= 400:
            raise _problem_error(response)
        return TypeAdapter(answer).validate_python(response.json())

    def store_files(
        self,
        path: Path,
        *,
        progress: ProgressCallback | None = None,
        allowed_roots: tuple[Path, ...] = (),
    ) -> Manifest:
        """Upload each file (streamed, hashed while sent); the server must hash it the same."""
        from registry.transfer import HashingReader, store_tree

        def put(stream: BinaryIO, item: Any, advance: Callable[[int], None] | None) -> BlobInfo:
            reader = HashingReader(stream)
            answer: BlobPublic = self._request(
                "POST",
                "/blobs",
                BlobPublic,
                content=reader.chunks(advance),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(item.size),
                },
                timeout=None,
            )
            if answer.digest != reader.digest or answer.size != reader.size:
                raise errors.BlobMismatch(reader.digest, answer.digest)
            return BlobInfo(digest=answer.digest, size=answer.size)

        return store_tree(path, put, progress=progress, allowed_roots=allowed_roots)

    def admit_hf(
        self,
        plan: ImportPlan,
        *,
        manifest: Manifest,
        profile: ScanProfile | None = None,
        **fields: Any,
    ) -> HfImportResult:
        """Ask the server to scan the uploaded snapshot and import it."""
        body = {
            **fields,
            "plan": plan.to_json(),
            "manifest": manifest_in(manifest).model_dump(),
            "profile": _profile_json(profile) if profile is not None else None,
        }
        return self._request(
            "POST", "/models/hf/stored", HfImportResult, json=_drop_none(body), timeout=None
        )

    def admit_model(
        self,
        *,
        manifest: Manifest,
        profile: ScanProfile | None = None,
        parents: Sequence[str] = (),
        relation: Relation | None = None,
        datasets: Sequence[tuple[str, Relation]] = (),
        **fields: Any,
    ) -> ArtifactPublic:
        """Ask the server to scan the uploaded files and register the version."""
        body = {
            **fields,
            "parents": list(parents),
            "manifest": manifest_in(manifest).model_dump(),
            "relation": relation.value if relation else None,
            "datasets": [{"ref": ref, "use": use.value} for ref, use in datasets],
            "profile": _profile_json(profile) if profile is not None else None,
        }
        return self._request(
            "POST", "/models/stored", ArtifactPublic, json=_drop_none(body), timeout=None
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
        """Record the pull on the server, then stream each file, verifying it while writing."""
        from registry.store import CHUNK
        from registry.transfer import check_destination, write_verified

        check_destination(dest)
        ticket: PullTicket = self._request(
            "POST",
            f"/models/{ref}/pulls",
            PullTicket,
            json=_drop_none({"team": team, "override": override}),
        )
        if progress is not None:
            progress.start(sum(f.size for f in ticket.files), len(ticket.files))
        advance = progress.advance if progress is not None else None
        for index, item in enumerate(ticket.files):
            with self._http.stream(
                "GET", f"/pulls/{ticket.id}/files/{index}", timeout=None
            ) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise _problem_error(answer)
                write_verified(
                    dest,
                    item.path,
                    size=item.size,
                    sha256=item.sha256,
                    chunks=answer.iter_bytes(CHUNK),
                    advance=advance,
                )
        return ticket

    def rescan_stored(self, ref: str, *, limits: Limits) -> BehavioralScanPublic:
        """Ask the server to rescan the files it holds."""
        body = {"timeout_s": limits.timeout_s, "memory_mb": limits.memory_mb}
        return self._request(
            "POST", f"/models/{ref}/rescans", BehavioralScanPublic, json=body, timeout=None
        )

    def replay_stored(
        self, ref: str, *, threshold: float, limits: Limits
    ) -> tuple[ReplaySummary, list[dict[str, str]]]:
        """Ask the server to replay the trigger on the stored descendants."""
        body = {
            "threshold": threshold,
            "timeout_s": limits.timeout_s,
            "memory_mb": limits.memory_mb,
        }
        answer: StoredReplayPublic = self._request(
            "POST", f"/models/{ref}/replays/run", StoredReplayPublic, json=body, timeout=None
        )
        return answer.summary, [dict(item) for item in answer.skipped]

    def _record_blobs(self, *_args: Any, **_kwargs: Any) -> Any:
        raise errors.ConfigurationError("blobs are recorded by the server when they are uploaded")

    def _start_pull(
        self, ref: str, *, team: str | None = None, override: str | None = None
    ) -> PullTicket:
        return self._request(
            "POST",
            f"/models/{ref}/pulls",
            PullTicket,
            json=_drop_none({"team": team, "override": override}),
        )

    def _pulls_of(self, ref: str) -> list[PullPublic]:
        return self._request("GET", f"/artifacts/{ref}/pulls", list[PullPublic])

    def _register_model(
        self,
        *,
        manifest: Manifest,
        relation: Relation | None = None,
        datasets: Sequence[tuple[str, Relation]] = (),
        scan: ScanReport | None = None,
        profile: ScanProfile | None = None,
        behavioral: BehavioralReport | None = None,
        provenance: ScanProvenance | None = None,
        **fields: Any,
    ) -> ArtifactPublic:
        del provenance  # the server records what a client sends as client-reported
        body = {
            **fields,
            "scan": scan.to_json() if scan else None,
            "manifest": manifest_in(manifest).model_dump(),
            "relation": relation.value if relation else None,
            "datasets": [{"ref": ref, "use": use.value} for ref, use in datasets],
            "profile": _profile_json(profile) if profile is not None else None,
            "behavioral": _behavioral_json(behavioral) if behavioral is not None else None,
        }
        return self._request("POST", "/models", ArtifactPublic, json=_drop_none(body))

    def _import_hf(
        self,
        plan: ImportPlan,
        *,
        manifest: Manifest,
        scan: ScanReport | None = None,
        profile: ScanProfile | None = None,
        behavioral: BehavioralReport | None = None,
        **fields: Any,
    ) -> HfImportResult:
        body = {
            **fields,
            "plan": plan.to_json(),
            "manifest": manifest_in(manifest).model_dump(),
            "scan": scan.to_json() if scan else None,
            "profile": _profile_json(profile) if profile is not None else None,
            "behavioral": _behavioral_json(behavioral) if behavioral is not None else None,
        }
        return self._request("POST", "/models/hf", HfImportResult, json=_drop_none(body))

    def _add_parents(
        self,
        ref: str,
        *,
        parents: Sequence[str] = (),
        relation: Relation | None = None,
        datasets: Sequence[tuple[str, Relation]] = (),
    ) -> ArtifactPublic:
        body = {
            "parents": list(parents),
            "relation": relation.value if relation else None,
            "datasets": [{"ref": r, "use": use.value} for r, use in datasets],
        }
        return self._request(
            "POST", f"/artifacts/{ref}/parents", ArtifactPublic, json=_drop_none(body)
        )

    def _register_dataset(
        self, *, manifest: Manifest | None = None, **fields: Any
    ) -> ArtifactPublic:
        body = {**fields, "manifest": manifest_in(manifest).model_dump() if manifest else None}
        return self._request("POST", "/datasets", ArtifactPublic, json=_drop_none(body))

    def _show(self, ref: str, *, kind: str | None = None) -> ArtifactPublic:
        return self._request(
            "GET", f"/artifacts/{ref}", ArtifactPublic, params=_drop_none({"kind": kind})
        )

    def _list_artifacts(self, *, kind: str = "model", **filters: Any) -> list[ArtifactPublic]:
        path = "/datasets" if kind == "dataset" else "/models"
        return self._request("GET", path, list[ArtifactPublic], params=_drop_none(filters))

    def _identify(self, manifest: Manifest) -> list[ArtifactPublic]:
        body = {"manifest": manifest_in(manifest).model_dump()}
        return self._request("POST", "/identify", list[ArtifactPublic], json=body)

    def _verify(self, manifest: Manifest, **options: Any) -> VerifyReport:
        body = {"manifest": manifest_in(manifest).model_dump(), **options}
        return self._request("POST", "/verify", VerifyReport, json=_drop_none(body))

    def _verify_model_signing(self, manifest: Manifest, **options: Any) -> ModelSigningVerifyReport:
        body = {"manifest": manifest_in(manifest).model_dump(), **options}
        return self._request(
            "POST", "/verify/model-signing", ModelSigningVerifyReport, json=_drop_none(body)
        )

    def _model_signing_bundle(self, ref: str) -> ModelSigningBundlePublic:
        return self._request("GET", f"/artifacts/{ref}/model-signing", ModelSigningBundlePublic)

    def _flag(self, ref: str, *, reason: str, trigger: bytes | None = None) -> StatusChange:
        body = {
            "reason": reason,
            "trigger": base64.b64encode(trigger).decode() if trigger else None,
        }
        return self._request("POST", f"/artifacts/{ref}/flag", StatusChange, json=_drop_none(body))

    def _unflag(self, ref: str, *, reason: str) -> StatusChange:
        return self._request(
            "POST", f"/artifacts/{ref}/unflag", StatusChange, json={"reason": reason}
        )

    def _clear(self, ref: str, *, reason: str) -> StatusChange:
        return self._request(
            "POST", f"/artifacts/{ref}/clear", StatusChange, json={"reason": reason}
        )

    def _status_report(self, ref: str) -> StatusReport:
        return self._request("GET", f"/artifacts/{ref}/status", StatusReport)

    def _descendants(self, ref: str, **filters: Any) -> list[LineageEntry]:
        return self._request(
            "GET", f"/artifacts/{ref}/descendants", list[LineageEntry], params=_drop_none(filters)
        )

    def _deployed_descendants(self, ref: str, **filters: Any) -> list[DeploymentPublic]:
        return self._request(
            "GET",
            f"/artifacts/{ref}/deployments",
            list[DeploymentPublic],
            params=_drop_none(filters),
        )

    def _blast_radius(self, ref: str, **filters: Any) -> BlastRadius:
        return self._request(
            "GET", f"/artifacts/{ref}/blast-radius", BlastRadius, params=_drop_none(filters)
        )

    def _ancestors(self, ref: str, **filters: Any) -> list[LineageEntry]:
        return self._request(
            "GET", f"/artifacts/{ref}/ancestors", list[LineageEntry], params=_drop_none(filters)
        )

    def _deploy(self, ref: str, **fields: Any) -> DeploymentPublic:
        return self._request(
            "POST", "/deployments", DeploymentPublic, json=_drop_none({"ref": ref, **fields})
        )

    def _undeploy(self, ref: str, **fields: Any) -> DeploymentPublic:
        return self._request(
            "POST", "/deployments/undeploy", DeploymentPublic, json={"ref": ref, **fields}
        )

    def _list_deployments(self, **filters: Any) -> list[DeploymentPublic]:
        return self._request(
            "GET", "/deployments", list[DeploymentPublic], params=_drop_none(filters)
        )

    def _create_team(self, **fields: Any) -> TeamPublic:
        return self._request("POST", "/teams", TeamPublic, json=fields)

    def _list_teams(self) -> list[TeamPublic]:
        return self._request("GET", "/teams", list[TeamPublic])

    def _decide(self, **fields: Any) -> DecisionPublic:
        return self._request("POST", "/decisions", DecisionPublic, json=fields)

    def _list_decisions(self, **filters: Any) -> list[DecisionPublic]:
        return self._request("GET", "/decisions", list[DecisionPublic], params=_drop_none(filters))

    def _enroll_key(self, **fields: Any) -> KeyPublic:
        return self._request("POST", "/keys", KeyPublic, json=fields)

    def _list_keys(self, **filters: Any) -> list[KeyPublic]:
        return self._request("GET", "/keys", list[KeyPublic], params=_drop_none(filters))

    def _create_token(self, *, role: Role, **fields: Any) -> TokenPublic:
        return self._request("POST", "/tokens", TokenPublic, json={**fields, "role": role.value})

    def _list_tokens(self) -> list[TokenPublic]:
        return self._request("GET", "/tokens", list[TokenPublic])

    def _revoke_token(self, token_id: int) -> TokenPublic:
        return self._request("POST", f"/tokens/{token_id}/revoke", TokenPublic)

    def _list_events(self, **filters: Any) -> list[AuditEventPublic]:
        return self._request("GET", "/audit", list[AuditEventPublic], params=_drop_none(filters))

    def _verify_chain(self, **checkpoint: Any) -> AuditVerification:
        return self._request(
            "GET", "/audit/verify", AuditVerification, params=_drop_none(checkpoint)
        )

    def _anchor_chain(self) -> AuditVerification:
        return self._request("POST", "/audit/anchor", AuditVerification)

    def _export_cyclonedx(self, ref: str, *, spec_version: str = "1.6") -> dict[str, Any]:
        params = {"format": "cyclonedx", "spec_version": spec_version}
        return self._request("GET", f"/bom/{ref}", dict[str, Any], params=params)

    def _export_spdx3(self, ref: str) -> dict[str, Any]:
        return self._request("GET", f"/bom/{ref}", dict[str, Any], params={"format": "spdx3"})

    def _import_cyclonedx(self, document: dict[str, Any], *, team: str | None = None) -> list[str]:
        params = {"team": team} if team is not None else None
        answer = self._request(
            "POST", "/bom/import", dict[str, list[str]], json=document, params=params
        )
        return answer["registered"]

    def _find_inconsistencies(self) -> list[str]:
        return self._request("GET", "/consistency", list[str])

    def _profile_of(self, ref: str) -> ScanProfilePublic | None:
        return self._request(
            "GET", f"/models/{ref}/profile", ScanProfilePublic, absent="scan profile"
        )

    def _inherited_profile(self, parents: Sequence[str]) -> ScanProfilePublic | None:
        return self._request(
            "POST",
            "/profiles/inherited",
            ScanProfilePublic | None,
            json={"parents": list(parents)},
        )

    def _behavior_baseline(self, reference_digest: str) -> list[dict[str, float | str]]:
        return self._request(
            "GET", f"/profiles/{reference_digest}/baseline", list[dict[str, float | str]]
        )

    def _record_rescan(
        self, ref: str, *, report: BehavioralReport, reference_digest: str | None
    ) -> BehavioralScanPublic:
        body = {"report": _behavioral_json(report), "reference_digest": reference_digest}
        return self._request(
            "POST", f"/models/{ref}/rescan", BehavioralScanPublic, json=_drop_none(body)
        )

    def _attach_trigger(
        self, ref: str, *, data: bytes, target_class: int | None = None
    ) -> TriggerPublic:
        body = {"data": _base64(data), "target_class": target_class}
        return self._request(
            "POST", f"/models/{ref}/triggers", TriggerPublic, json=_drop_none(body)
        )

    def _replay_plan(self, ref: str) -> ReplayPlan:
        return self._request("GET", f"/models/{ref}/replay-plan", ReplayPlan)

    def _record_replays(
        self, ref: str, *, trigger_id: int, results: Sequence[ReplayIn]
    ) -> ReplaySummary:
        body = {
            "trigger_id": trigger_id,
            "results": [item.model_dump(mode="json") for item in results],
        }
        return self._request("POST", f"/models/{ref}/replays", ReplaySummary, json=body)


def _chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    while data := stream.read(size):
        yield data


def _blob(entry: ManifestEntry) -> BlobInfo:
    return BlobInfo(digest=f"sha256:{entry.sha256}", size=entry.size)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _profile_json(profile: ScanProfile) -> str:
    """A scan profile as the API takes it: base64 of its self-describing ``.npz``."""
    from scanning.behavioral.profile import profile_to_npz

    return _base64(profile_to_npz(profile))


def _behavioral_json(report: BehavioralReport) -> dict[str, Any]:
    """A behavioral report as the API takes it: its JSON plus the trigger's base64 ``.npz``."""
    trigger = _base64(report.trigger.to_npz()) if report.trigger is not None else None
    return {**report.to_json(), "trigger": trigger}


def _not_found(response: Any) -> str | None:
    """What a 404 problem says is missing (its ``context.what``), else None."""
    if response.status_code != 404:
        return None
    try:
        what = response.json()["context"]["what"]
    except (ValueError, KeyError, TypeError):
        return None
    return what if isinstance(what, str) else None


def _problem_error(response: Any) -> errors.MbomError:
    try:
        body = response.json()
        detail, code = str(body["detail"]), str(body.get("code", "remote"))
    except (ValueError, KeyError, TypeError):
        detail, code = f"HTTP {response.status_code}: {response.text[:200]}", "remote"
    cls = _PROBLEM_CLASSES.get(code, errors.RemoteError)
    error = cls.__new__(cls)
    errors.MbomError.__init__(error, detail)
    return error
