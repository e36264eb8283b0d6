"""The admission pipeline: scan a version's stored files, then register it with the verdicts.

:func:`scan_stored` runs the scans on files the registry holds: the static scan
always (it never loads a file), then, unless that found malicious content, the
behavioral scan in the sandboxed subprocess when the model has a profile of its
own or inherits one from a parent. :func:`admit_model` wraps it between two
short transactions (look up the inherited profile and the calibration baseline;
record the registration with ``provenance=registry``), so no database lock is
held while a scan runs.

What a client says it found is never an input here: the server ignores a
submitted report for a stored version, and a metadata-only version (files held
elsewhere) is recorded with the client's report as ``client``-provenance,
which never makes it clean.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from registry.admission.files import materialized
from registry.admission.slot import holding
from registry.db import unit_of_work
from registry.errors import InvalidInput
from registry.hf import ImportPlan
from registry.identity import Actor
from registry.manifest import Manifest
from registry.schemas import ArtifactPublic, HfImportResult, ScanProvenance
from registry.service import artifacts, behavior, hf_import, pending, stored
from registry.service.authorization import Operation, authorize
from registry.store import BlobStore
from registry.vocabulary import Kind
from scanning.report import ScanReport, Verdict

if TYPE_CHECKING:
    from scanning.behavioral.api import Limits
    from scanning.behavioral.report import BehavioralReport, ScanProfile
    from scanning.behavioral.sandbox import Progress


@dataclass(frozen=True)
class AdmissionScans:
    """What admission found: the static scan, the model's own profile (kept for its
    descendants) and the behavioral scan (``None`` when it did not run)."""

    static: ScanReport | None
    profile: ScanProfile | None
    behavioral: BehavioralReport | None


T = TypeVar("T")

#: Called with each step's name as admission moves on ("static scan", "behavioral scan").
StepCallback = Callable[[str], None]


def _inherited(
    engine: Engine, parents: Sequence[str]
) -> tuple[ScanProfile | None, str | None, list[dict[str, float | str]]]:
    """The profile a child of ``parents`` inherits, its reference digest and its baseline."""
    from scanning.behavioral.profile import profile_from_npz

    with unit_of_work(engine) as session:
        found = behavior.inherited_profile(session, parents) if parents else None
        if found is None:
            return None, None, []
        try:
            profile = profile_from_npz(found.reference)
        except ValueError as exc:
            raise InvalidInput(f"the stored profile of {found.origin} is unusable: {exc}") from exc
        return profile, found.reference_digest, behavior.baseline(session, found.reference_digest)


def _baseline(engine: Engine, digest: str) -> list[dict[str, float | str]]:
    with unit_of_work(engine) as session:
        return behavior.baseline(session, digest)


def scan_stored(
    engine: Engine,
    store: BlobStore,
    manifest: Manifest,
    *,
    profile: ScanProfile | None,
    parents: Sequence[str],
    limits: Limits | None = None,
    progress: Progress | None = None,
    on_step: StepCallback | None = None,
    behavioral_scan: bool = True,
    verify: Collection[str] = (),
) -> AdmissionScans:
    """Run the admission scans on the stored files of ``manifest``.

    ``behavioral_scan=False`` is the registry operator's choice (behavioral scans
    not switched on for this admission); no client can ask for it.
    """
    from scanning.behavioral.api import DEFAULT_LIMITS, scan_model
    from scanning.behavioral.profile import profile_to_npz, reference_digest
    from scanning.static import scan_path

    with materialized(store, manifest, verify=verify) as path:
        if on_step is not None:
            on_step("static scan")
        static = scan_path(path)
        if static.verdict is Verdict.MALICIOUS or not behavioral_scan:
            return AdmissionScans(static, profile, None)
        if profile is not None:
            scan_profile, baseline = (
                profile,
                _baseline(engine, reference_digest(profile_to_npz(profile))),
            )
        else:
            inherited, _digest, baseline = _inherited(engine, parents)
            if inherited is None:
                return AdmissionScans(static, None, None)
            scan_profile = inherited
        if on_step is not None:
            on_step("behavioral scan")
        report = scan_model(
            path,
            scan_profile,
            baseline=baseline,
            limits=limits or DEFAULT_LIMITS,
            progress=progress,
        )
        return AdmissionScans(static, profile, report)


def admit_model(
    engine: Engine,
    store: BlobStore,
    *,
    actor: Actor,
    manifest: Manifest,
    profile: ScanProfile | None = None,
    parents: Sequence[str] = (),
    limits: Limits | None = None,
    progress: Progress | None = None,
    on_step: StepCallback | None = None,
    behavioral_scan: bool = True,
    lease: float = pending.DEFAULT_LEASE,
    **fields: Any,
) -> ArtifactPublic:
    """Register a version whose files the store holds, with the registry's own scans.

    Refused before any scan when a file is missing from the store (upload it
    first). ``fields`` are :func:`registry.service.register_model`'s other
    arguments (name, version, relation, team, override, ...); a ``scan`` or
    ``behavioral`` report given there is a client's and is not accepted.
    """
    # Who may register, before any file is read: a refusal costs no scan.
    authorize(actor, Operation.REGISTER_MODEL, team=fields.get("team"))
    for claimed in ("scan", "behavioral", "provenance", "stored"):
        if fields.get(claimed) is not None:
            raise InvalidInput(
                f"{claimed!r} is decided by the registry for a stored version",
                hint="leave it out: the registry scans the files it holds",
            )
        fields.pop(claimed, None)

    def record(session: Session, scans: AdmissionScans | None) -> ArtifactPublic:
        return artifacts.register_model(
            session,
            actor=actor,
            manifest=manifest,
            parents=parents,
            provenance=ScanProvenance.REGISTRY,
            stored=True,
            **_verdicts(scans),
            **fields,
        )

    def scan(
        verify: Collection[str], _parents: Sequence[str], step: StepCallback
    ) -> AdmissionScans:
        return scan_stored(
            engine,
            store,
            manifest,
            verify=verify,
            profile=profile,
            parents=parents,
            limits=limits,
            progress=progress,
            on_step=_also(step, on_step),
            behavioral_scan=behavioral_scan,
        )

    return _admit(
        engine,
        actor=actor,
        name=str(fields["name"]),
        version=str(fields["version"]),
        manifest=manifest,
        team=fields.get("team"),
        lease=lease,
        parents=lambda _session: parents,
        scan=scan,
        record=record,
    )


def admit_hf(
    engine: Engine,
    store: BlobStore,
    plan: ImportPlan,
    *,
    actor: Actor,
    manifest: Manifest,
    profile: ScanProfile | None = None,
    limits: Limits | None = None,
    lease: float = pending.DEFAULT_LEASE,
    **fields: Any,
) -> HfImportResult:
    """Import a Hugging Face snapshot whose files the store holds, with the registry's scans.

    The registry becomes the internal mirror of the Hub models it vetted. Without a
    profile of its own, the snapshot inherits one from the registered versions its
    card's bases stand for (as a registration inherits from its parents).
    """
    authorize(actor, Operation.IMPORT_HF, team=fields.get("team"))  # before any file is read

    def record(session: Session, scans: AdmissionScans | None) -> HfImportResult:
        return hf_import.import_hf(
            session,
            plan,
            actor=actor,
            manifest=manifest,
            provenance=ScanProvenance.REGISTRY,
            stored=True,
            **_verdicts(scans),
            **fields,
        )

    def scan(verify: Collection[str], bases: Sequence[str], step: StepCallback) -> AdmissionScans:
        return scan_stored(
            engine,
            store,
            manifest,
            profile=profile,
            parents=bases,
            limits=limits,
            verify=verify,
            on_step=step,
        )

    return _admit(
        engine,
        actor=actor,
        name=plan.repo_id,
        version=plan.version,
        manifest=manifest,
        team=fields.get("team"),
        lease=lease,
        # The card's bases that are registered pass their profile down, as parents do.
        parents=lambda session: hf_import.registered_bases(session, plan),
        scan=scan,
        record=record,
    )


def _admit(
    engine: Engine,
    *,
    actor: Actor,
    name: str,
    version: str,
    manifest: Manifest,
    team: str | None,
    lease: float,
    parents: Callable[[Session], Sequence[str]],
    scan: Callable[[Collection[str], Sequence[str], StepCallback], AdmissionScans],
    record: Callable[[Session, AdmissionScans | None], T],
) -> T:
    """Admission's three steps around ``scan`` and ``record``.

    Checked and rehearsed (``record`` without verdicts, rolled back), the version is
    held as pending; ``scan`` runs with no transaction open (given the blobs to
    re-hash, the parents a profile is inherited from, and the step callback);
    ``record`` with the verdicts commits the version and releases the hold.
    """
    verify: set[str] = set()
    found: list[str] = []

    def preflight(session: Session) -> None:  # before minutes of scanning
        verify.update(_check_new(session, manifest))
        found.extend(parents(session))
        _rehearse(session, lambda: record(session, None))

    with holding(
        engine,
        actor=actor,
        kind=Kind.MODEL,
        name=name,
        version=version,
        digest=manifest.digest,
        team=team,
        lease=lease,
        preflight=preflight,
    ) as slot:
        scans = scan(verify, found, slot.step)
        slot.step("recording")
        with unit_of_work(engine) as session:
            slot.finish(session)
            return record(session, scans)


def _verdicts(scans: AdmissionScans | None) -> dict[str, Any]:
    """The registry's verdicts as registration arguments (none in a rehearsal)."""
    if scans is None:
        return {}
    return {"scan": scans.static, "profile": scans.profile, "behavioral": scans.behavioral}


def _check_new(session: Session, manifest: Manifest) -> set[str]:
    """Refuse files the store does not hold (or not at the manifest's sizes); the blobs
    to re-hash before they are scanned."""
    stored.check_held(session, manifest)
    return set(stored.stale_blobs(session, manifest))


class _Rehearsed(Exception):
    """Ends a rehearsal: what it wrote is rolled back."""


def _rehearse(session: Session, registration: Callable[[], object]) -> None:
    """Run ``registration`` without the scans' results, then undo it.

    Every rule that does not depend on what the scans find (the name is free,
    parents and datasets exist, team policy, duplicate content, signatures)
    refuses here, in a savepoint rolled back afterwards, before minutes of
    scanning and before the version is held as pending. The real registration
    after the scans checks all of them again.
    """
    try:
        with session.begin_nested():
            registration()
            raise _Rehearsed
    except _Rehearsed:
        pass
    session.expire_all()


def _also(step: StepCallback, also: StepCallback | None) -> StepCallback:
    """``step``, then ``also`` (the caller's own callback), for each step."""

    def both(name: str) -> None:
        step(name)
        if also is not None:
            also(name)

    return both
