"""Routes that move model files: upload into the store, admission of a stored version, pull.

Bodies and answers stream: a multi-GB model never sits in the server's memory.
These routes stay off the JSON router's body checks (which read a body whole)
and hold no database transaction while bytes move: they authenticate in one
short unit of work, move the bytes, then record what happened in another.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from registry import service
from registry.api.deps import CurrentActor, SessionDep, check_text_inputs
from registry.db import unit_of_work
from registry.errors import AuthenticationRequired, BlobCorrupt, InvalidInput, LimitExceeded
from registry.identity import Actor
from registry.schemas import (
    ArtifactPublic,
    BehavioralScanPublic,
    BlobPublic,
    HfImportResult,
    HfStoredImportRequest,
    PendingAdmissionPublic,
    PullPublic,
    PullRequest,
    PullTicket,
    RegisterStoredRequest,
    StoredReplayPublic,
    StoredScanRequest,
    manifest_of,
)
from registry.service.authorization import Operation, authorize
from registry.service.pulls import pulled_file
from registry.store import BlobStore

if TYPE_CHECKING:
    from scanning.behavioral.api import Limits

log = logging.getLogger("mbom.api")
router = APIRouter(prefix="/api/v1")
json_router = APIRouter(prefix="/api/v1", dependencies=[Depends(check_text_inputs)])

#: The framework's own body limit for uploads: none to speak of (see ``upload_blob``).
_NO_BODY_LIMIT = 1 << 62
#: Bytes handed from the event loop to the storing thread at a time.
_BATCH = 1 << 20
#: Bytes read, hashed and sent at a time by a download.
_SEND = 4 << 20
#: Batches read ahead of the storing thread (bounds the memory of one upload).
_AHEAD = 8


def _store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.store
    return store


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _actor(request: Request) -> Actor:
    """The bearer token's actor, looked up in a transaction of its own."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationRequired(
            "this server needs a bearer token", hint="send Authorization: Bearer <token>"
        )
    with unit_of_work(_engine(request)) as session:
        return service.authenticate(session, token.strip())


class _BodyReader:
    """A blocking, file-like view of the request body, for the storing thread.

    :meth:`produce` runs on the event loop and reads the body ahead into a
    bounded stream of batches of about :data:`_BATCH` bytes (at most
    :data:`_AHEAD` batches waiting: bounded memory), so the network keeps
    flowing while the thread hashes and writes; the thread crosses into the
    loop once per batch, not once per network chunk.
    """

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[bytes](_AHEAD)
        self._pending = b""
        self._done = False
        self._cut: str | None = None

    async def produce(self, body: AsyncIterator[bytes]) -> None:
        """Read the body into batches; the stream ends when the body does.

        A body that fails (the client hung up) is remembered, never raised here:
        the storing thread then refuses the upload, so nothing cut short is stored.
        """
        async with self._send:
            batch: list[bytes] = []
            size = 0
            try:
                async for chunk in body:
                    batch.append(chunk)
                    size += len(chunk)
                    if size >= _BATCH:
                        await self._send.send(b"".join(batch))
                        batch, size = [], 0
                if batch:
                    await self._send.send(b"".join(batch))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the storing thread stopped reading: it has its own error
            except Exception as exc:  # the client went away mid-body  # noqa: BLE001
                self._cut = type(exc).__name__

    def _next_batch(self) -> bytes:
        if self._done:
            return b""
        try:
            return anyio.from_thread.run(self._receive.receive)
        except anyio.EndOfStream:
            self._done = True
            if self._cut is not None:
                raise InvalidInput(
                    f"the upload was cut short ({self._cut}); nothing was stored",
                    hint="upload the file again",
                ) from None
            return b""

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (fewer only at the end of the body)."""
        wanted = _BATCH if size is None or size < 0 else size
        if not self._pending:
            self._pending = self._next_batch()
        data, self._pending = self._pending[:wanted], self._pending[wanted:]
        return data

    def close(self) -> None:
        """Stop taking batches (the producer then stops too)."""
        self._receive.close()


@router.post(
    "/blobs",
    status_code=status.HTTP_201_CREATED,
    tags=["files"],
    # The app's JSON limit does not apply: store.put enforces MBOM_MAX_UPLOAD_BYTES.
    max_body_size=_NO_BODY_LIMIT,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_blob(
    request: Request,
    content_length: Annotated[int | None, Header()] = None,
    x_mbom_sha256: Annotated[str | None, Header()] = None,
) -> BlobPublic:
    """Stream one file's bytes into the artifact store (publishers).

    The server hashes what it receives; ``X-Mbom-Sha256`` (``sha256:<hex>``),
    when sent, must match or nothing is stored. Answers the digest and size
    the registry recorded; the file becomes part of a version only when a
    registration names it.
    """
    actor = await anyio.to_thread.run_sync(_actor, request)
    authorize(actor, Operation.UPLOAD_FILES)
    limit = request.app.state.settings.max_upload_bytes
    if content_length is not None and content_length > limit:
        raise LimitExceeded(
            "the uploaded file",
            f"{content_length} bytes; this server takes at most {limit} per file",
            hint="raise MBOM_MAX_UPLOAD_BYTES on the server",
        )
    store = _store(request)
    reader = _BodyReader()

    def put() -> Any:
        try:
            return store.put(
                reader,  # type: ignore[arg-type]  # only read() is used
                expected=x_mbom_sha256,
                expected_size=content_length,
                max_bytes=limit,
            )
        finally:
            reader.close()

    failure: Exception | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(reader.produce, request.stream())
        try:
            info = await anyio.to_thread.run_sync(put)
        except Exception as exc:  # raised below, outside the group (which would wrap it)
            failure = exc
        group.cancel_scope.cancel()  # the body was read, or the upload is refused
    if failure is not None:
        raise failure

    def record() -> None:
        with unit_of_work(_engine(request)) as session:
            service.record_blobs(session, [info], actor=actor, store=store)

    await anyio.to_thread.run_sync(record)
    return BlobPublic(digest=info.digest, size=info.size)


@json_router.post("/models/stored", status_code=status.HTTP_201_CREATED, tags=["files"])
def register_stored(body: RegisterStoredRequest, request: Request) -> ArtifactPublic:
    """Register a version whose files were uploaded: the registry scans them itself.

    Refused (409 ``files-not-stored``) naming the files the store does not hold.
    The static scan, and the behavioral scan when the model has or inherits a
    scan profile, run here on the stored files before the version is recorded.
    """
    from lineage import Relation
    from registry.admission import admit_model
    from registry.api.routes import scan_profile

    actor = _actor(request)
    fields = body.model_dump(exclude={"manifest", "relation", "datasets", "profile"})
    return admit_model(
        _engine(request),
        _store(request),
        actor=actor,
        manifest=manifest_of(body.manifest),
        relation=Relation(body.relation) if body.relation else None,
        datasets=[(d.ref, Relation(d.use)) for d in body.datasets],
        profile=scan_profile(body.profile) if body.profile is not None else None,
        lease=request.app.state.settings.admission_lease,
        **fields,
    )


@json_router.post("/models/hf/stored", status_code=status.HTTP_201_CREATED, tags=["files"])
def import_hf_stored(body: HfStoredImportRequest, request: Request) -> HfImportResult:
    """Import a Hugging Face snapshot whose files were uploaded; the registry scans them."""
    from registry.admission import admit_hf
    from registry.api.routes import scan_profile

    fields = body.model_dump(exclude={"plan", "manifest", "profile"})
    return admit_hf(
        _engine(request),
        _store(request),
        body.plan,
        actor=_actor(request),
        manifest=manifest_of(body.manifest),
        profile=scan_profile(body.profile) if body.profile is not None else None,
        lease=request.app.state.settings.admission_lease,
        **fields,
    )


@json_router.post("/models/{ref:path}/pulls", status_code=status.HTTP_201_CREATED, tags=["files"])
def start_pull(ref: str, body: PullRequest, session: SessionDep, actor: CurrentActor) -> PullTicket:
    """Check and record a pull (readers of the team); the ticket lists the files to fetch."""
    return service.start_pull(session, ref, actor=actor, team=body.team, override=body.override)


@json_router.get("/artifacts/{ref:path}/pulls", tags=["files"])
def pulls(ref: str, session: SessionDep, _actor: CurrentActor) -> list[PullPublic]:
    """Who pulled this version or any version derived from it, newest first."""
    return service.pulls_of(session, ref)


@json_router.get("/admissions", tags=["files"])
def admissions(session: SessionDep, _actor: CurrentActor) -> list[PendingAdmissionPublic]:
    """Versions being admitted, oldest first: files stored, the registry's scans running.

    Not registered yet: they can be neither pulled, deployed nor used as a
    parent. ``stalled`` marks one whose admitting process died; registering the
    same version again takes it over.
    """
    return service.list_pending(session)


@router.get(
    "/pulls/{pull_id}/files/{index}",
    tags=["files"],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file's bytes; ``X-Mbom-Sha256`` is what they must hash to.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
def download(pull_id: int, index: int, request: Request) -> StreamingResponse:
    """Stream one file of a recorded pull (only its puller, while the version is untainted)."""
    actor = _actor(request)
    with unit_of_work(_engine(request)) as session:
        item = pulled_file(session, pull_id, index, actor=actor)
    store = _store(request)
    digest = f"sha256:{item.sha256}"
    if not store.exists(digest):
        from registry.errors import BlobMissing

        raise BlobMissing(digest, store=store.url)

    def chunks() -> Iterator[bytes | memoryview]:
        """The blob's bytes; the store holds the last chunk back until it knows the blob
        intact (hashed on the way, or unchanged since it last hashed it), so a corrupt
        blob never arrives complete."""
        try:
            yield from store.read_verified(digest, item.size, chunk=_SEND)
        except BlobCorrupt:
            log.error("pull %s: blob %s in %s is corrupt; download cut", pull_id, digest, store.url)
            raise

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(item.size),
            "X-Mbom-Sha256": digest,
        },
    )


def _limits(body: StoredScanRequest) -> Limits:
    from scanning.behavioral.api import Limits

    return Limits(timeout_s=body.timeout_s, memory_mb=body.memory_mb)


@json_router.post("/models/{ref:path}/rescans", tags=["behavior"])
def rescan_stored(ref: str, body: StoredScanRequest, request: Request) -> BehavioralScanPublic:
    """Re-run the behavioral scan of a stored version here, on the files the registry holds.

    Recorded as the registry's own scan; a compromised verdict flags the model
    (admins only, as any flag).
    """
    from registry.admission.behavioral import rescan_stored as rescan

    result, _report = rescan(
        _engine(request), _store(request), ref, actor=_actor(request), limits=_limits(body)
    )
    return result


@json_router.post("/models/{ref:path}/replays/run", tags=["behavior"])
def replay_stored(ref: str, body: StoredScanRequest, request: Request) -> StoredReplayPublic:
    """Replay a flagged model's trigger on its descendants' stored files, here (admins)."""
    from registry.admission.behavioral import replay_stored as replay

    actor = _actor(request)
    authorize(actor, Operation.RECORD_REPLAYS)  # before minutes of sandboxed work
    summary, skipped = replay(
        _engine(request),
        _store(request),
        ref,
        actor=actor,
        threshold=body.threshold,
        limits=_limits(body),
        sources=False,  # never a path on this server that a publisher typed as --source
    )
    return StoredReplayPublic(summary=summary, skipped=skipped)
