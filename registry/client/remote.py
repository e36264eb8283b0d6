"""A client of ``mbom serve``: the registry's verbs over its REST API.

Imports nothing of the database stack: a CLI talking to a server starts fast.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Optional, TypeVar, cast
from urllib.parse import quote, urlsplit

from pydantic import TypeAdapter

from lineage import Relation
from registry import errors
from registry.client.protocol import VERBS
from registry.hf import ImportPlan
from registry.identity import Role
from registry.manifest import Manifest, ProgressCallback
from registry.schemas import (
    ArtifactPublic,
    AuditEventPublic,
    AuditVerification,
    BehavioralScanPublic,
    BlastRadius,
    BlobPublic,
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
    StoredReplayPublic,
    TeamPublic,
    TokenPublic,
    TriggerPublic,
    VerifyReport,
    manifest_in,
)
from registry.store import BlobInfo
from registry.vocabulary import Kind
from scanning.report import ScanReport

T = TypeVar("T")
#: A profile or None, as a type the answer is parsed into.
_OPTIONAL_PROFILE = cast("type[ScanProfilePublic | None]", Optional[ScanProfilePublic])  # noqa: UP045

if TYPE_CHECKING:
    import httpx

    from scanning.behavioral.api import Limits
    from scanning.behavioral.report import BehavioralReport, ScanProfile


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
        errors.AdmissionPending,
        errors.FilesNotStored,
        errors.LimitExceeded,
        errors.BlobMismatch,
        errors.BlobMissing,
        errors.BlobCorrupt,
    )
}


class RemoteRegistry:
    """A client of ``mbom serve``: the same verbs, over the REST API."""

    def __init__(self, server: str, token: str | None, *, timeout: float = 60.0) -> None:
        if not token:
            raise errors.ConfigurationError(
                "talking to a server needs a token", hint="set MBOM_TOKEN or pass --token"
            )
        self.server = server
        self._token = token
        self._timeout = timeout
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    @property
    def _http(self) -> httpx.Client:
        """The JSON verbs' client, made on first use: importing httpx and building its
        transport costs ~0.2 s that ``mbom pull`` (standard library only) never pays.
        Locked: an upload's threads ask for it at once, and a second would leak."""
        with self._client_lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    base_url=self.server.rstrip("/") + "/api/v1",
                    headers={"Authorization": f"Bearer {self._token}"},
                    timeout=self._timeout,
                )
            return self._client

    def close(self) -> None:
        """Close the connections to the server."""
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> RemoteRegistry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        """Deprecated: run a verb by name; ``reg.flag(...)`` is ``reg.flag(...)``."""
        if verb not in VERBS:
            raise AttributeError(verb)
        return getattr(self, verb)(*args, **kwargs)

    def _request(
        self, method: str, path: str, answer: type[T], *, absent: str | None = None, **options: Any
    ) -> T:
        """Call the API and parse the answer as ``answer``.

        With ``absent``, a 404 about that kind of thing is ``None`` (the caller's
        ``answer`` then includes ``None``, e.g. ``Optional[ScanProfilePublic]``).
        """
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
            return TypeAdapter(answer).validate_python(None)
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
        """Record the pull on the server, then stream the files (two at a time, biggest
        first), verifying each while it is written."""
        from concurrent.futures import ThreadPoolExecutor

        from registry.transfer import Staging, check_destination, staged, write_verified

        check_destination(dest)
        # As httpx encodes JSON: text that is not valid UTF-8 fails here, in the client.
        body = json.dumps(_drop_none({"team": team, "override": override}), ensure_ascii=False)
        try:
            with self._raw("POST", f"/models/{ref}/pulls", body.encode("utf-8")) as answer:
                ticket = PullTicket.model_validate_json(answer.read())
        except (OSError, http.client.HTTPException) as exc:
            raise errors.ConfigurationError(
                f"cannot reach the mbom server at {self.server}: {exc}",
                hint="check MBOM_SERVER / --server and that mbom serve is running",
            ) from exc
        if progress is not None:
            progress.start(sum(f.size for f in ticket.files), len(ticket.files))
        advance = progress.advance if progress is not None else None

        def fetch(staging: Staging, index: int) -> None:
            try:
                download(staging, index)
            except (OSError, http.client.HTTPException) as exc:  # cut short: network, corrupt blob
                path = ticket.files[index].path
                raise errors.RemoteError(
                    f"the download of {path} from {self.server} was cut short: {exc}",
                    hint="pull again; if it recurs the server's store may be damaged "
                    "(mbom store verify on its host)",
                ) from exc

        def download(staging: Staging, index: int) -> None:
            item = ticket.files[index]
            with self._raw("GET", f"/pulls/{ticket.id}/files/{index}") as answer:
                write_verified(
                    staging,
                    index,
                    item.path,
                    size=item.size,
                    sha256=item.sha256,
                    chunks=_read_into(answer),
                    advance=advance,
                )

        order = sorted(range(len(ticket.files)), key=lambda i: -ticket.files[i].size)
        with staged(dest) as staging, ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(fetch, staging, index) for index in order]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # no writer left in the staging
                raise
        return ticket

    @contextmanager
    def _raw(
        self, method: str, path: str, body: bytes | None = None
    ) -> Iterator[http.client.HTTPResponse]:
        """Call ``/api/v1{path}`` with the standard library's client (a JSON ``body``).

        What a pull uses: a body read in large ``readinto`` calls costs a fraction of
        a per-chunk HTTP parser (multi-GB files), and a pull needs no httpx at all.
        """
        base = urlsplit(self.server)
        connection_class = (
            http.client.HTTPSConnection if base.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(base.hostname or "", base.port, timeout=self._timeout)
        headers = {"Authorization": f"Bearer {self._token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            connection.request(
                method,
                base.path.rstrip("/") + "/api/v1" + quote(path, safe="/@:"),
                body=body,
                headers=headers,
            )
            answer = connection.getresponse()
            if answer.status >= 400:
                raise _problem_error(_RawAnswer(answer.status, answer.read()))
            yield answer
        finally:
            connection.close()

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

    def start_pull(
        self, ref: str, *, team: str | None = None, override: str | None = None
    ) -> PullTicket:
        return self._request(
            "POST",
            f"/models/{ref}/pulls",
            PullTicket,
            json=_drop_none({"team": team, "override": override}),
        )

    def pulls_of(self, ref: str) -> list[PullPublic]:
        return self._request("GET", f"/artifacts/{ref}/pulls", list[PullPublic])

    def list_pending(self) -> list[PendingAdmissionPublic]:
        return self._request("GET", "/admissions", list[PendingAdmissionPublic])

    def register_model(
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

    def import_hf(
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

    def add_parents(
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

    def register_dataset(
        self, *, manifest: Manifest | None = None, **fields: Any
    ) -> ArtifactPublic:
        body = {**fields, "manifest": manifest_in(manifest).model_dump() if manifest else None}
        return self._request("POST", "/datasets", ArtifactPublic, json=_drop_none(body))

    def show(self, ref: str, *, kind: Kind | None = None) -> ArtifactPublic:
        return self._request(
            "GET", f"/artifacts/{ref}", ArtifactPublic, params=_drop_none({"kind": kind})
        )

    def list_artifacts(self, *, kind: Kind = Kind.MODEL, **filters: Any) -> list[ArtifactPublic]:
        path = "/datasets" if kind == Kind.DATASET else "/models"
        return self._request("GET", path, list[ArtifactPublic], params=_drop_none(filters))

    def identify(self, manifest: Manifest) -> list[ArtifactPublic]:
        body = {"manifest": manifest_in(manifest).model_dump()}
        return self._request("POST", "/identify", list[ArtifactPublic], json=body)

    def verify(self, manifest: Manifest, **options: Any) -> VerifyReport:
        body = {"manifest": manifest_in(manifest).model_dump(), **options}
        return self._request("POST", "/verify", VerifyReport, json=_drop_none(body))

    def verify_model_signing(self, manifest: Manifest, **options: Any) -> ModelSigningVerifyReport:
        body = {"manifest": manifest_in(manifest).model_dump(), **options}
        return self._request(
            "POST", "/verify/model-signing", ModelSigningVerifyReport, json=_drop_none(body)
        )

    def model_signing_bundle(self, ref: str) -> ModelSigningBundlePublic:
        return self._request("GET", f"/artifacts/{ref}/model-signing", ModelSigningBundlePublic)

    def flag(self, ref: str, *, reason: str, trigger: bytes | None = None) -> StatusChange:
        body = {
            "reason": reason,
            "trigger": base64.b64encode(trigger).decode() if trigger else None,
        }
        return self._request("POST", f"/artifacts/{ref}/flag", StatusChange, json=_drop_none(body))

    def unflag(self, ref: str, *, reason: str) -> StatusChange:
        return self._request(
            "POST", f"/artifacts/{ref}/unflag", StatusChange, json={"reason": reason}
        )

    def clear(self, ref: str, *, reason: str) -> StatusChange:
        return self._request(
            "POST", f"/artifacts/{ref}/clear", StatusChange, json={"reason": reason}
        )

    def status_report(self, ref: str) -> StatusReport:
        return self._request("GET", f"/artifacts/{ref}/status", StatusReport)

    def descendants(self, ref: str, **filters: Any) -> list[LineageEntry]:
        return self._request(
            "GET", f"/artifacts/{ref}/descendants", list[LineageEntry], params=_drop_none(filters)
        )

    def deployed_descendants(self, ref: str, **filters: Any) -> list[DeploymentPublic]:
        return self._request(
            "GET",
            f"/artifacts/{ref}/deployments",
            list[DeploymentPublic],
            params=_drop_none(filters),
        )

    def blast_radius(self, ref: str, **filters: Any) -> BlastRadius:
        return self._request(
            "GET", f"/artifacts/{ref}/blast-radius", BlastRadius, params=_drop_none(filters)
        )

    def ancestors(self, ref: str, **filters: Any) -> list[LineageEntry]:
        return self._request(
            "GET", f"/artifacts/{ref}/ancestors", list[LineageEntry], params=_drop_none(filters)
        )

    def deploy(self, ref: str, **fields: Any) -> DeploymentPublic:
        return self._request(
            "POST", "/deployments", DeploymentPublic, json=_drop_none({"ref": ref, **fields})
        )

    def undeploy(self, ref: str, **fields: Any) -> DeploymentPublic:
        return self._request(
            "POST", "/deployments/undeploy", DeploymentPublic, json={"ref": ref, **fields}
        )

    def list_deployments(self, **filters: Any) -> list[DeploymentPublic]:
        return self._request(
            "GET", "/deployments", list[DeploymentPublic], params=_drop_none(filters)
        )

    def create_team(self, **fields: Any) -> TeamPublic:
        return self._request("POST", "/teams", TeamPublic, json=fields)

    def list_teams(self) -> list[TeamPublic]:
        return self._request("GET", "/teams", list[TeamPublic])

    def decide(self, **fields: Any) -> DecisionPublic:
        return self._request("POST", "/decisions", DecisionPublic, json=fields)

    def list_decisions(self, **filters: Any) -> list[DecisionPublic]:
        return self._request("GET", "/decisions", list[DecisionPublic], params=_drop_none(filters))

    def enroll_key(self, **fields: Any) -> KeyPublic:
        return self._request("POST", "/keys", KeyPublic, json=fields)

    def list_keys(self, **filters: Any) -> list[KeyPublic]:
        return self._request("GET", "/keys", list[KeyPublic], params=_drop_none(filters))

    def create_token(self, *, role: Role, **fields: Any) -> TokenPublic:
        return self._request("POST", "/tokens", TokenPublic, json={**fields, "role": role.value})

    def list_tokens(self) -> list[TokenPublic]:
        return self._request("GET", "/tokens", list[TokenPublic])

    def revoke_token(self, token_id: int) -> TokenPublic:
        return self._request("POST", f"/tokens/{token_id}/revoke", TokenPublic)

    def list_events(self, **filters: Any) -> list[AuditEventPublic]:
        return self._request("GET", "/audit", list[AuditEventPublic], params=_drop_none(filters))

    def verify_chain(self, **checkpoint: Any) -> AuditVerification:
        return self._request(
            "GET", "/audit/verify", AuditVerification, params=_drop_none(checkpoint)
        )

    def anchor_chain(self) -> AuditVerification:
        return self._request("POST", "/audit/anchor", AuditVerification)

    def export_cyclonedx(self, ref: str, *, spec_version: str = "1.6") -> dict[str, Any]:
        params = {"format": "cyclonedx", "spec_version": spec_version}
        return self._request("GET", f"/bom/{ref}", dict[str, Any], params=params)

    def export_spdx3(self, ref: str) -> dict[str, Any]:
        return self._request("GET", f"/bom/{ref}", dict[str, Any], params={"format": "spdx3"})

    def import_cyclonedx(
        self, document: Mapping[str, Any], *, team: str | None = None
    ) -> list[str]:
        return self.import_cyclonedx_report(document, team=team).registered

    def import_cyclonedx_report(
        self, document: Mapping[str, Any], *, team: str | None = None
    ) -> BomImport:
        params = {"team": team} if team is not None else None
        return self._request("POST", "/bom/import", BomImport, json=document, params=params)

    def find_inconsistencies(self) -> list[str]:
        return self._request("GET", "/consistency", list[str])

    def profile_of(self, ref: str) -> ScanProfilePublic | None:
        return self._request(
            "GET", f"/models/{ref}/profile", _OPTIONAL_PROFILE, absent="scan profile"
        )

    def inherited_profile(self, parents: Sequence[str]) -> ScanProfilePublic | None:
        return self._request(
            "POST",
            "/profiles/inherited",
            _OPTIONAL_PROFILE,
            json={"parents": list(parents)},
        )

    def behavior_baseline(self, reference_digest: str) -> list[dict[str, float | str]]:
        return self._request(
            "GET", f"/profiles/{reference_digest}/baseline", list[dict[str, float | str]]
        )

    def record_rescan(
        self,
        ref: str,
        *,
        report: BehavioralReport,
        reference_digest: str | None,
        provenance: ScanProvenance | None = None,
    ) -> BehavioralScanPublic:
        del provenance  # the server records what a client reports as client-reported
        body = {"report": _behavioral_json(report), "reference_digest": reference_digest}
        return self._request(
            "POST", f"/models/{ref}/rescan", BehavioralScanPublic, json=_drop_none(body)
        )

    def attach_trigger(
        self, ref: str, *, data: bytes, target_class: int | None = None
    ) -> TriggerPublic:
        body = {"data": _base64(data), "target_class": target_class}
        return self._request(
            "POST", f"/models/{ref}/triggers", TriggerPublic, json=_drop_none(body)
        )

    def replay_plan(self, ref: str) -> ReplayPlan:
        return self._request("GET", f"/models/{ref}/replay-plan", ReplayPlan)

    def record_replays(
        self, ref: str, *, trigger_id: int, results: Sequence[ReplayIn]
    ) -> ReplaySummary:
        body = {
            "trigger_id": trigger_id,
            "results": [item.model_dump(mode="json") for item in results],
        }
        return self._request("POST", f"/models/{ref}/replays", ReplaySummary, json=body)


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


class _RawAnswer:
    """An error answer read by ``http.client``, shaped as :func:`_problem_error` reads one."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.text = body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.text)


def _read_into(answer: http.client.HTTPResponse, size: int = 1 << 20) -> Iterator[memoryview]:
    """The body in views of one reused buffer (each consumed before the next is read).

    1 MiB: small enough to stay in the CPU's cache between the hash and the write.
    """
    buffer = bytearray(size)
    view = memoryview(buffer)
    while count := answer.readinto(view):
        yield view[:count]


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
