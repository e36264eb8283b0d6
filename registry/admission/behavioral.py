"""Rescans and trigger replays on the files the registry holds.

``mbom rescan N@V`` and ``mbom replay N@V`` need no path for a stored version:
its files come out of the artifact store into a temporary directory the
sandboxed scan reads. Run by the embedded CLI (this process is the registry)
and by the server for its clients, the scans are recorded as the registry's own.
Metadata-only versions still need their files named (``--path``, or a local
``--source``), and such scans stay client-side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from registry.admission.files import materialized
from registry.db import unit_of_work
from registry.errors import InvalidInput, NotFound
from registry.identity import Actor
from registry.manifest import Manifest
from registry.schemas import (
    BehavioralScanPublic,
    ReplayIn,
    ReplayPlan,
    ReplaySummary,
    ReplayTarget,
    ScanProfilePublic,
    ScanProvenance,
)
from registry.service import behavior
from registry.service.authorization import Operation, authorize_model
from registry.service.refs import ref_of, resolve
from registry.service.stored import stored_manifest
from registry.store import BlobStore
from registry.vocabulary import Kind

if TYPE_CHECKING:
    from scanning.behavioral.api import Limits
    from scanning.behavioral.report import BehavioralReport, ScanProfile, TriggerPattern
    from scanning.behavioral.sandbox import Progress

#: A progress callback per model scanned: called with the model's label, returns the callback.
ProgressFactory = Callable[[str], AbstractContextManager["Progress | None"]]


def _no_progress(_label: str) -> AbstractContextManager[Progress | None]:
    return nullcontext(None)


def stored_files(engine: Engine, ref: str) -> Manifest:
    """The manifest of a stored version (InvalidInput for a metadata-only one)."""
    with unit_of_work(engine) as session:
        artifact = resolve(session, ref, kind=Kind.MODEL)
        if not artifact.stored:
            raise InvalidInput(
                f"{ref_of(artifact)} is metadata-only: the registry does not hold its files",
                hint="give the model's files as PATH",
            )
        return stored_manifest(session, artifact)


def profile_from_public(found: ScanProfilePublic) -> ScanProfile:
    """A stored profile back as a validated :class:`ScanProfile`."""
    from scanning.behavioral.profile import profile_from_npz

    try:
        return profile_from_npz(found.reference)
    except ValueError as exc:
        raise InvalidInput(f"the stored profile of {found.origin} is unusable: {exc}") from exc


def rescan_stored(
    engine: Engine,
    store: BlobStore,
    ref: str,
    *,
    actor: Actor,
    limits: Limits,
    progress: ProgressFactory = _no_progress,
) -> tuple[BehavioralScanPublic, BehavioralReport]:
    """Re-run the behavioral scan of a stored version on its stored files and record it."""
    from scanning.behavioral.api import scan_model

    manifest = stored_files(engine, ref)
    with unit_of_work(engine) as session:  # who may rescan, before minutes of sandboxed work
        authorize_model(
            session, actor, Operation.RESCAN, artifact=resolve(session, ref, kind=Kind.MODEL)
        )
        found = behavior.profile_of(session, ref)
        if found is None:
            raise NotFound(
                "scan profile",
                ref,
                message=f"{ref} has no behavioral scan profile, nor has any ancestor",
                hint="register it (or a base) with --reference REF.npz",
            )
        baseline = behavior.baseline(session, found.reference_digest)
    profile = profile_from_public(found)
    with materialized(store, manifest) as path, progress(ref) as callback:
        report = scan_model(path, profile, baseline=baseline, limits=limits, progress=callback)
    with unit_of_work(engine) as session:
        result = behavior.record_rescan(
            session,
            ref,
            actor=actor,
            report=report,
            reference_digest=found.reference_digest,
            provenance=ScanProvenance.REGISTRY,
        )
    return result, report


@contextmanager
def _target_files(
    target: ReplayTarget,
    store: BlobStore | None,
    engine: Engine | None,
    locations: Mapping[str, Path],
    *,
    sources: bool = True,
) -> Iterator[Path | None]:
    """Where a replay target's files are: named by the user, stored, or its local source.

    ``sources=False`` (a server replaying for a client) reads stored files only: a
    source path a publisher typed is not a place on the server to read from.
    """
    named = locations.get(target.ref)
    if named is not None:
        yield named if named.exists() else None
        return
    if target.stored and store is not None and engine is not None:
        with materialized(store, stored_files(engine, target.ref)) as path:
            yield path
        return
    where = Path(target.location) if target.location and sources else None
    yield where if where is not None and where.exists() else None


def run_replays(
    plan: ReplayPlan,
    pattern: TriggerPattern,
    *,
    threshold: float,
    limits: Limits,
    locations: Mapping[str, Path],
    store: BlobStore | None = None,
    engine: Engine | None = None,
    progress: ProgressFactory = _no_progress,
    sources: bool = True,
) -> tuple[list[ReplayIn], list[dict[str, str]]]:
    """Replay ``pattern`` on each descendant and baseline relative the plan names.

    Returns the measured results and the targets skipped because their files
    are nowhere to be read.
    """
    from scanning.behavioral.api import replay_trigger

    targets = [("descendant", t) for t in plan.descendants] + [
        ("baseline", t) for t in plan.baseline
    ]
    results: list[ReplayIn] = []
    skipped: list[dict[str, str]] = []
    for index, (role, target) in enumerate(targets, 1):
        with _target_files(target, store, engine, locations, sources=sources) as where:
            if where is None:
                skipped.append(
                    {"ref": target.ref, "role": role, "why": "its files are not available"}
                )
                continue
            assert target.profile is not None
            profile = profile_from_public(plan.profiles[target.profile])
            with progress(f"{target.ref} ({index}/{len(targets)})") as callback:
                report = replay_trigger(
                    where, profile, pattern, threshold=threshold, limits=limits, progress=callback
                )
        results.append(ReplayIn(ref=target.ref, role=role, report=report.to_json()))
    return results, skipped


def replay_stored(
    engine: Engine,
    store: BlobStore,
    ref: str,
    *,
    actor: Actor,
    threshold: float,
    limits: Limits,
    locations: Mapping[str, Path] | None = None,
    progress: ProgressFactory = _no_progress,
    sources: bool = True,
) -> tuple[ReplaySummary, list[dict[str, str]]]:
    """Replay a flagged model's trigger on its descendants, reading stored files, and record it.

    ``sources``: also read metadata-only descendants from their local ``--source``
    (the embedded registry, on its user's machine); a server passes ``False``.
    """
    from scanning.behavioral.report import TriggerPattern

    with unit_of_work(engine) as session:
        plan = behavior.replay_plan(session, ref)
    pattern = TriggerPattern.from_npz(plan.trigger.data)
    results, skipped = run_replays(
        plan,
        pattern,
        threshold=threshold,
        limits=limits,
        locations=locations or {},
        store=store,
        engine=engine,
        progress=progress,
        sources=sources,
    )
    with unit_of_work(engine) as session:
        summary = behavior.record_replays(
            session, plan.source, actor=actor, trigger_id=plan.trigger.id, results=results
        )
    return summary, skipped
