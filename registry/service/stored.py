"""The registry's side of the artifact store: which blobs it holds and which versions use them.

The bytes live in a :class:`~registry.store.BlobStore`; the database says which
of them the registry vouches for. The two stay consistent under concurrency by
one rule: a ``blob`` row is written only after its bytes are complete in the
store, and the bytes are deleted only inside the transaction that deletes the
row. A registration claims each blob it names (``UPDATE ... claimed_at``) in its
own transaction, so it and a collection of the same blob serialise on that row:
either the registration sees the row and the collection spares the blob (it is
claimed, then referenced), or the row is gone and the registration is refused
as naming files the registry does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import CursorResult, Engine, delete, exists, func, update
from sqlmodel import Session, col, select

from registry.db import lock_for_write, unit_of_work
from registry.errors import FilesNotStored, InvalidInput
from registry.identity import Actor
from registry.manifest import Manifest, ManifestEntry, check_layable
from registry.service import audit
from registry.service._tx import mutation
from registry.service.authorization import Operation, authorize
from registry.service.refs import ref_of
from registry.store import BlobInfo, BlobStore
from registry.tables import Artifact, Blob, StoredFile, utcnow

#: Blobs unreferenced for less than this long survive ``store gc``: an upload whose
#: registration has not come yet is not garbage.
DEFAULT_GRACE = timedelta(hours=1)
_CHUNK = 500


def blob_digest(entry: ManifestEntry) -> str:
    """The store's name for a manifest entry's content."""
    return f"sha256:{entry.sha256}"


@mutation
def record_blobs(
    session: Session, blobs: Sequence[BlobInfo], *, actor: Actor, store: BlobStore
) -> list[BlobInfo]:
    """Record blobs the store now holds (after an upload), refreshing their claim.

    Each row is written, then the store is asked again while this transaction
    holds the row: a collection that deleted the bytes a moment before makes
    this a clear error (upload again) rather than a row for absent bytes.
    """
    authorize(actor, Operation.UPLOAD_FILES)
    now = utcnow()
    for info in blobs:
        row = session.get(Blob, info.digest)
        if row is None:
            session.add(Blob(digest=info.digest, size=info.size, created_at=now, claimed_at=now))
        elif row.size != info.size:
            raise InvalidInput(
                f"blob {info.digest} is recorded with {row.size} bytes, not {info.size}"
            )
        else:
            row.claimed_at = now
        session.flush()
        if store.size(info.digest) != info.size:
            raise FilesNotStored([info.digest])
    return list(blobs)


def check_held(session: Session, manifest: Manifest, *, claim: bool = False) -> None:
    """Refuse a manifest naming files the registry does not hold, or holds with another size.

    Raises :class:`~registry.errors.FilesNotStored` listing the missing files, and
    :class:`~registry.errors.InvalidInput` when a recorded blob's size differs from
    the manifest's (a client that lies about sizes). With ``claim``, each blob's
    claim is refreshed first (in this transaction: see the module docstring).
    """
    check_layable(manifest)
    sizes = {blob_digest(entry): entry.size for entry in manifest.entries}
    wanted = sorted(sizes)
    held: dict[str, int] = {}
    now = utcnow()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        if claim:
            session.execute(update(Blob).where(col(Blob.digest).in_(chunk)).values(claimed_at=now))
        held.update(
            (digest, size)
            for digest, size in session.exec(
                select(Blob.digest, Blob.size).where(col(Blob.digest).in_(chunk))
            ).all()
        )
    missing = [digest for digest in wanted if digest not in held]
    if missing:
        raise FilesNotStored(missing)
    for digest, size in sizes.items():
        if held[digest] != size:
            raise InvalidInput(
                f"the manifest says {digest} has {size} bytes; "
                f"the registry received {held[digest]}",
                hint="hash the files again: they changed or the manifest is wrong",
            )


#: A blob uploaded this recently was hashed on the way in moments ago: admission reads it
#: as it is. An older one (content shared with earlier versions) is re-hashed first.
FRESH_UPLOAD = timedelta(minutes=10)


def stale_blobs(
    session: Session, manifest: Manifest, *, fresh: timedelta = FRESH_UPLOAD
) -> set[str]:
    """The digests of ``manifest``'s blobs recorded longer than ``fresh`` ago."""
    wanted = sorted({blob_digest(entry) for entry in manifest.entries})
    cutoff = utcnow() - fresh
    stale: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        stale.update(
            session.exec(
                select(Blob.digest).where(
                    col(Blob.digest).in_(chunk), col(Blob.created_at) < cutoff
                )
            ).all()
        )
    return stale


def claim_files(session: Session, artifact: Artifact, manifest: Manifest) -> None:
    """Make ``artifact`` a stored version: every file's blob claimed and recorded as used.

    Refused as :func:`check_held` refuses (files not held, sizes that differ).
    """
    check_held(session, manifest, claim=True)
    session.add_all(
        StoredFile(
            artifact_id=artifact.id or 0,
            path=entry.path,
            digest=blob_digest(entry),
            size=entry.size,
        )
        for entry in manifest.entries
    )
    artifact.stored = True


def stored_manifest(session: Session, artifact: Artifact) -> Manifest:
    """The files the registry holds for a stored version, as a manifest."""
    rows = session.exec(
        select(StoredFile)
        .where(StoredFile.artifact_id == artifact.id)
        .order_by(col(StoredFile.path))
    ).all()
    return Manifest(
        tuple(ManifestEntry(row.path, row.size, row.digest.removeprefix("sha256:")) for row in rows)
    )


def versions_using(session: Session, digests: Iterable[str]) -> dict[str, list[str]]:
    """For each digest, the references of the stored versions holding a file with it."""
    wanted = sorted(set(digests))
    found: dict[str, list[str]] = {digest: [] for digest in wanted}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = session.exec(
            select(StoredFile.digest, Artifact)
            .join(Artifact, col(Artifact.id) == StoredFile.artifact_id)
            .where(col(StoredFile.digest).in_(chunk))
        ).all()
        for digest, artifact in rows:
            if ref_of(artifact) not in found[digest]:
                found[digest].append(ref_of(artifact))
    return found


BlobState = Literal["ok", "missing", "corrupt"]


@dataclass(frozen=True)
class BlobProblem:
    """A recorded blob that is not what the registry vouches for, and what it breaks."""

    digest: str
    state: BlobState
    versions: list[str]


@dataclass(frozen=True)
class StoreReport:
    """What ``mbom store verify`` found."""

    store: str
    checked: int
    bytes: int
    problems: list[BlobProblem]


def verify_store(
    session: Session,
    *,
    store: BlobStore,
    progress: Callable[[int, int], None] | None = None,
) -> StoreReport:
    """Re-hash every recorded blob; list missing or corrupt ones with the versions they break."""
    rows = session.exec(select(Blob).order_by(col(Blob.digest))).all()
    problems: list[tuple[str, BlobState]] = []
    total = 0
    for index, row in enumerate(rows, 1):
        check = store.check(row.digest)
        if check.state != "ok":
            problems.append((row.digest, check.state))
        total += row.size
        if progress is not None:
            progress(index, len(rows))
    using = versions_using(session, [digest for digest, _ in problems])
    return StoreReport(
        store=store.url,
        checked=len(rows),
        bytes=total,
        problems=[BlobProblem(digest, state, using.get(digest, [])) for digest, state in problems],
    )


@dataclass(frozen=True)
class CollectReport:
    """What ``mbom store gc`` removed (or would remove, with ``dry_run``)."""

    store: str
    removed: list[str]
    bytes: int
    dry_run: bool
    #: Temporary files of uploads a crash or a cut connection left behind, removed.
    stale_uploads: int = 0


def collectable(session: Session, *, grace: timedelta = DEFAULT_GRACE) -> list[Blob]:
    """Recorded blobs no version uses and nobody claimed within ``grace``."""
    used = exists().where(col(StoredFile.digest) == col(Blob.digest))
    return list(
        session.exec(
            select(Blob)
            .where(~used, col(Blob.claimed_at) < utcnow() - grace)
            .order_by(col(Blob.digest))
        ).all()
    )


def collect_one(session: Session, digest: str, *, store: BlobStore, grace: timedelta) -> bool:
    """Delete one unreferenced blob: its row (if still collectable), then its bytes.

    Run in its own transaction per blob: the row stays locked until the bytes are
    gone and the transaction commits, so a concurrent registration either claimed
    it first (the delete matches nothing) or finds it gone (and is refused).
    """
    used = exists().where(col(StoredFile.digest) == col(Blob.digest))
    deleted: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        delete(Blob).where(
            col(Blob.digest) == digest, ~used, col(Blob.claimed_at) < utcnow() - grace
        )
    )
    if not deleted.rowcount:
        return False
    store.delete(digest)
    return True


def store_totals(session: Session) -> tuple[int, int]:
    """How many blobs the registry holds, and their bytes."""
    count, size = session.exec(select(func.count(), func.coalesce(func.sum(Blob.size), 0))).one()
    return int(count), int(size)


def audit_collection(session: Session, *, actor: Actor, report: CollectReport) -> None:
    """One audit event for a collection that removed something."""
    authorize(actor, Operation.COLLECT_STORE)
    if report.removed and not report.dry_run:
        audit.record(
            session,
            actor=actor,
            operation="store.gc",
            subject=report.store,
            details={"removed": len(report.removed), "bytes": report.bytes},
        )


def collect_garbage(
    engine: Engine,
    *,
    actor: Actor,
    store: BlobStore,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
) -> CollectReport:
    """Remove blobs no version uses and nobody claimed within ``grace`` (``mbom store gc``).

    One transaction per blob (:func:`collect_one`), so a registration racing with
    the collection is either served or refused cleanly, never left pointing at
    deleted bytes.
    """
    authorize(actor, Operation.COLLECT_STORE)
    with unit_of_work(engine) as session:
        candidates = [(blob.digest, blob.size) for blob in collectable(session, grace=grace)]
    removed: list[str] = []
    freed = 0
    for digest, size in candidates:
        if dry_run:
            removed.append(digest)
            freed += size
            continue
        with unit_of_work(engine) as session:
            lock_for_write(session)
            if collect_one(session, digest, store=store, grace=grace):
                removed.append(digest)
                freed += size
    stale = 0
    clean_temp = getattr(store, "clean_temp", None)  # the local store keeps partial uploads
    if callable(clean_temp) and not dry_run:
        stale = int(clean_temp(older_than=max(grace.total_seconds(), 60.0)))
    report = CollectReport(
        store=store.url, removed=removed, bytes=freed, dry_run=dry_run, stale_uploads=stale
    )
    with unit_of_work(engine) as session:
        lock_for_write(session)
        audit_collection(session, actor=actor, report=report)
    return report
