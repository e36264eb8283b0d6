"""Behavioral scans and trigger replays, as the registry records them.

The scans themselves run where the model files are (the CLI, in the sandbox of
:mod:`scanning.behavioral`); the registry keeps what they need and what they
found:

- **scan profiles** (input shape, value range, classes, the clean reference
  ``.npz``) given at registration and inherited by descendants that give none;
- **behavioral scan records** and the **triggers** they recovered (or that an
  analyst attached); a ``compromised`` verdict flags the model like a
  malicious static scan does, a ``suspicious`` or failed one needs an override;
- **replay results**: a source's trigger stamped on a descendant's references.
  The newest result per (model, source) counts; when it confirms, the model's
  status is ``confirmed`` instead of ``infected`` (see
  :func:`registry.service.status.wanted_status`).

Calibration: the clean, already-admitted relatives of a model — models whose
scan used the same reference set — give the detector statistics the new
model is compared against (:func:`baseline`), and the clean relatives a trigger
replay measures beside the descendants (:func:`replay_plan`). Only scans the
registry ran itself count (``ScanRecord.provenance == "registry"``, see
:class:`~registry.schemas.ScanProvenance`): a report a client sends over the
API is recorded and decides that model's own finding, but a publisher who
forges clean reports with chosen detector statistics must not move the
threshold another model's scan is judged by.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from lineage import Status
from registry.errors import InvalidInput, MbomError, NotFound
from registry.identity import Actor
from registry.schemas import (
    MAX_CLASS_INDEX,
    BehavioralScanPublic,
    ReplayIn,
    ReplayPlan,
    ReplaySummary,
    ReplayTarget,
    ScanProfilePublic,
    ScanProvenance,
)
from registry.service import audit, policy
from registry.service._tx import mutation
from registry.service.authorization import (
    Operation,
    authorize,
    authorize_model,
    rescan_operation,
)
from registry.service.flags import mark_compromised
from registry.service.graph import ancestor_rows, descendant_rows, labels_of
from registry.service.refs import ref_of, resolve
from registry.service.replays import replays_public
from registry.service.status import refresh_one
from registry.service.triggers import store_trigger, trigger_public
from registry.tables import Artifact, ReplayResult, ScanProfile, ScanRecord, Trigger
from registry.vocabulary import Finding, Kind
from scanning.behavioral.inheritance import confirms_inheritance
from scanning.behavioral.report import (
    BehavioralReport,
    BehaviorVerdict,
    ReplayMeasure,
    ReplayReport,
)
from scanning.behavioral.report import ScanProfile as Profile

#: How many clean relatives a replay measures as the baseline. The rule compares with
#: the most susceptible one: with 3, a clean lineage was still confirmed in ~10% of
#: draws of relatives on the calibration zoo, with 8 in under 1% (benchmarks/README.md).
BASELINE_RELATIVES = 8
#: How many clean relatives' statistics calibrate a scan (most recent first).
CALIBRATION_RELATIVES = 20


def store_profile(session: Session, artifact: Artifact, profile: Profile) -> None:
    """Keep a model's own scan profile (its references as self-describing ``.npz``)."""
    from scanning.behavioral.profile import profile_to_npz, reference_digest

    data = profile_to_npz(profile)
    session.add(
        ScanProfile(
            artifact_id=artifact.id or 0,
            input_shape=list(profile.input_shape),
            value_min=profile.value_range[0],
            value_max=profile.value_range[1],
            num_classes=profile.num_classes,
            reference=data,
            reference_digest=reference_digest(data),
        )
    )


def admit(
    session: Session,
    artifact: Artifact,
    *,
    profile: Profile | None,
    report: BehavioralReport | None,
    actor: Actor,
    provenance: ScanProvenance = ScanProvenance.CLIENT,
) -> None:
    """At registration: keep the model's own profile and record its behavioral scan."""
    if profile is not None:
        store_profile(session, artifact, profile)
        session.flush()
    if report is not None:
        used = _profile_for(session, artifact.id or 0)
        record_scan(
            session,
            artifact,
            report,
            actor=actor,
            reference_digest=used.reference_digest if used else None,
            provenance=provenance,
            vouched=provenance is ScanProvenance.REGISTRY,
        )


def profile_of(session: Session, ref: str) -> ScanProfilePublic | None:
    """A model's scan profile: its own, else its nearest ancestor's; None without one."""
    artifact = resolve(session, ref, kind=Kind.MODEL)
    return _profile_for(session, artifact.id or 0)


def inherited_profile(session: Session, parents: Sequence[str]) -> ScanProfilePublic | None:
    """The profile a new child of ``parents`` inherits: the first parent's line that has one.

    Unknown parents are passed over: the registration itself refuses them, with
    the reason (unknown, a cycle, ...).
    """
    for parent in parents:
        try:
            known = resolve(session, parent, kind=Kind.MODEL)
        except MbomError:
            continue
        found = _profile_for(session, known.id or 0)
        if found is not None:
            return found
    return None


def _profile_for(session: Session, artifact_id: int) -> ScanProfilePublic | None:
    candidates = {artifact_id: 0} | {
        a: d for a, (d, _) in ancestor_rows(session, artifact_id).items()
    }
    rows = session.exec(
        select(ScanProfile).where(col(ScanProfile.artifact_id).in_(list(candidates)))
    ).all()
    if not rows:
        return None
    row = min(rows, key=lambda r: (candidates[r.artifact_id], r.artifact_id))
    origin = labels_of(session, [row.artifact_id])[row.artifact_id]
    return ScanProfilePublic(
        origin=ref_of(origin),
        input_shape=list(row.input_shape),
        value_range=(row.value_min, row.value_max),
        num_classes=row.num_classes,
        reference_digest=row.reference_digest,
        reference=base64.b64encode(row.reference),  # Base64Bytes decodes its input
    )


def baseline(session: Session, reference_digest: str) -> list[dict[str, float | str]]:
    """Detector statistics of clean relatives: clean models the registry scanned clean.

    Only scans on these references that the registry ran itself count (never a
    client-reported one). Each carries its architecture ``family`` when its scan
    recorded one: the scan of a model only calibrates against relatives of its
    own family.
    """
    rows = session.exec(
        select(ScanRecord.report)
        .join(Artifact, col(Artifact.id) == col(ScanRecord.artifact_id))
        .where(
            ScanRecord.kind == "behavioral",
            ScanRecord.provenance == ScanProvenance.REGISTRY.value,
            ScanRecord.verdict == BehaviorVerdict.CLEAN.value,
            Artifact.status == Status.CLEAN.value,
        )
        .order_by(col(ScanRecord.id).desc())
    ).all()
    relatives: list[dict[str, float | str]] = []
    for report in rows:
        if report.get("reference_digest") != reference_digest or not report.get("detectors"):
            continue
        stats: dict[str, float | str] = {
            d["name"]: float(d["statistic"]) for d in report["detectors"]
        }
        if report.get("family"):
            stats["family"] = str(report["family"])
        relatives.append(stats)
    return relatives[:CALIBRATION_RELATIVES]


def check_admission(
    session: Session,
    report: BehavioralReport | None,
    *,
    actor: Actor,
    override: str | None,
    team: str | None,
    subject: str,
) -> None:
    """Refuse a suspicious or unscannable model unless an approver overrides."""
    if report is None or report.verdict in (BehaviorVerdict.CLEAN, BehaviorVerdict.COMPROMISED):
        return
    what = (
        f"could not be scanned ({report.error})"
        if report.verdict is BehaviorVerdict.SCAN_ERROR
        else f"is suspicious: {summarise(report)}"
    )
    policy.enforce(
        session,
        actor=actor,
        violations=[f"the behavioral scan says {subject} {what}"],
        override=override,
        team=team,
        subject=subject,
    )


def record_scan(
    session: Session,
    artifact: Artifact,
    report: BehavioralReport,
    *,
    actor: Actor,
    reference_digest: str | None,
    provenance: ScanProvenance = ScanProvenance.CLIENT,
    vouched: bool,
) -> Trigger | None:
    """Store a behavioral scan (with who ran it); compromised flags the model with its trigger.

    Only a scan that flags the model keeps its recovered trigger: the trigger a
    replay uses must come from the finding the registry acted on, never from a
    later report that flags nothing. ``vouched``: see
    :func:`registry.service.flags.mark_compromised`.
    """
    session.add(
        ScanRecord(
            artifact_id=artifact.id or 0,
            kind="behavioral",
            verdict=report.verdict.value,
            report={**report.to_json(), "reference_digest": reference_digest},
            actor=actor.user,
            provenance=provenance.value,
        )
    )
    trigger = None
    flags = (
        report.verdict is BehaviorVerdict.COMPROMISED and artifact.finding != Finding.COMPROMISED
    )
    if report.trigger is not None and report.verdict is BehaviorVerdict.COMPROMISED:
        trigger = store_trigger(
            session,
            artifact,
            report.trigger,
            origin="scan",
            actor=actor,
            details={"trigger_asr": report.trigger_asr, "score": report.score},
        )
    if flags:
        mark_compromised(
            session,
            artifact,
            actor=actor,
            reason=f"behavioral scan: {summarise(report)}",
            vouched=vouched,
        )
    elif report.verdict is BehaviorVerdict.CLEAN and artifact.finding in (
        Finding.UNSCANNED,
        Finding.CLEAN,
    ):
        artifact.finding = Finding.CLEAN
    elif report.verdict is not BehaviorVerdict.CLEAN and artifact.finding != Finding.COMPROMISED:
        artifact.finding = Finding.SUSPICIOUS
    session.flush()
    return trigger


def summarise(report: BehavioralReport) -> str:
    """The verdict's evidence in one line."""
    parts = [f"verdict {report.verdict.value}"]
    if report.score is not None:
        parts.append(f"score {report.score:.2f}")
    if report.target_class is not None:
        parts.append(f"backdoor suspected toward class {report.target_class}")
    if report.trigger_asr is not None:
        parts.append(f"recovered trigger sends {report.trigger_asr:.0%} of references there")
    flagged = [d.name for d in report.detectors if d.flagged]
    if flagged:
        parts.append("flagged by " + ", ".join(flagged))
    if report.error:
        parts.append(report.error)
    return "; ".join(parts)


@mutation
def record_rescan(
    session: Session,
    ref: str,
    *,
    actor: Actor,
    report: BehavioralReport,
    reference_digest: str | None,
    provenance: ScanProvenance = ScanProvenance.CLIENT,
) -> BehavioralScanPublic:
    """Record ``mbom rescan``: the stored verdict, trigger and (if compromised) the flag.

    ``provenance`` says who ran the scan: the API records what a client reports
    as ``client`` (the default), the embedded registry its own as ``registry``.
    """
    artifact = resolve(session, ref, kind=Kind.MODEL)
    flags = report.verdict is BehaviorVerdict.COMPROMISED  # a flag: it needs the flag role
    authorize_model(session, actor, rescan_operation(flags=flags), artifact=artifact)
    trigger = record_scan(
        session,
        artifact,
        report,
        actor=actor,
        reference_digest=reference_digest,
        provenance=provenance,
        vouched=True,  # a compromised verdict needed the flag permission
    )
    audit.record(
        session,
        actor=actor,
        operation="scan.behavioral",
        subject=ref_of(artifact),
        details={
            "verdict": report.verdict.value,
            "score": report.score,
            "provenance": provenance.value,
        },
    )
    session.refresh(artifact)
    return BehavioralScanPublic(
        ref=ref_of(artifact),
        verdict=report.verdict.value,
        report=report.to_json(),
        trigger=trigger_public(artifact, trigger) if trigger else None,
        status=artifact.status,
        provenance=provenance.value,
    )


def location_of(source: str | None) -> str | None:
    """Where a model's files are, when its ``source`` is a local path or ``file://`` URI."""
    if not source:
        return None
    if source.startswith("file://"):
        return source[len("file://") :] or None
    return source if source.startswith("/") else None


def replay_plan(session: Session, ref: str) -> ReplayPlan:
    """The newest trigger of ``ref``, its descendants and clean relatives with their profiles."""
    source = resolve(session, ref, kind=Kind.MODEL)
    trigger = session.exec(
        select(Trigger).where(Trigger.artifact_id == source.id).order_by(col(Trigger.id).desc())
    ).first()
    if trigger is None:
        raise NotFound(
            "trigger",
            ref_of(source),
            message=f"{ref_of(source)} has no recovered or attached backdoor trigger",
            hint="scan it (mbom rescan) or give the analyst's: mbom replay --trigger T.npz",
        )
    below = descendant_rows(session, source.id or 0)
    descendants = [_target(session, node, depth) for node, (depth, _) in sorted(below.items())]
    profiles = {
        t.profile: p
        for t in descendants
        if t.profile and (p := _profile_by_digest(session, t.profile))
    }
    relatives = _clean_relatives(session, source.id or 0, set(below), set(profiles))
    return ReplayPlan(
        source=ref_of(source),
        trigger=trigger_public(source, trigger),
        descendants=[t for t in descendants if t.profile],
        baseline=relatives,
        profiles=profiles,
    )


def _target(session: Session, node: int, depth: int | None) -> ReplayTarget:
    artifact = session.get_one(Artifact, node)
    profile = _profile_for(session, node) if artifact.kind == Kind.MODEL else None
    return ReplayTarget(
        ref=ref_of(artifact),
        depth=depth,
        status=artifact.status,
        location=location_of(artifact.source),
        profile=profile.reference_digest if profile else None,
        stored=artifact.stored,
    )


def _profile_by_digest(session: Session, digest: str) -> ScanProfilePublic | None:
    row = session.exec(select(ScanProfile).where(ScanProfile.reference_digest == digest)).first()
    return _profile_for(session, row.artifact_id) if row else None


def _clean_relatives(
    session: Session, source: int, below: set[int], digests: set[str]
) -> list[ReplayTarget]:
    """Clean models outside the source's line the registry scanned on the same references."""
    if not digests:
        return []
    above = set(ancestor_rows(session, source))
    candidates = session.exec(
        select(ScanRecord.artifact_id, ScanRecord.report)
        .join(Artifact, col(Artifact.id) == col(ScanRecord.artifact_id))
        .where(
            ScanRecord.kind == "behavioral",
            ScanRecord.provenance == ScanProvenance.REGISTRY.value,
            Artifact.status == Status.CLEAN.value,
        )
        .order_by(col(ScanRecord.id).desc())
    ).all()
    related = below | above | {source}
    chosen: list[int] = []  # newest scan first; a model scanned twice counts once
    for node, report in candidates:
        fits = node not in related and report.get("reference_digest") in digests
        if fits and node not in chosen:
            chosen.append(node)
    return [_target(session, node, None) for node in chosen[:BASELINE_RELATIVES]]


@mutation
def record_replays(
    session: Session,
    ref: str,
    *,
    actor: Actor,
    trigger_id: int,
    results: Sequence[ReplayIn],
) -> ReplaySummary:
    """Record replays of ``ref``'s trigger; confirmed descendants become ``confirmed``."""
    authorize(actor, Operation.RECORD_REPLAYS)
    source = resolve(session, ref, kind=Kind.MODEL)
    trigger = session.get(Trigger, trigger_id)
    if trigger is None or trigger.artifact_id != source.id:
        raise NotFound("trigger", f"{trigger_id} of {ref_of(source)}")
    below = descendant_rows(session, source.id or 0)
    checked = [(item, _replay_target(session, source, item, below)) for item in results]
    # Clean relatives first: each descendant is judged against them (same run, same trigger).
    checked.sort(key=lambda pair: pair[0].role != "baseline")
    stored: list[ReplayResult] = []
    baseline: list[ReplayMeasure] = []
    for item, (target, report) in checked:
        if item.role == "baseline":
            confirmed = False
            if report.measure is not None:
                baseline.append(report.measure)
        else:
            confirmed = report.measure is not None and confirms_inheritance(
                report.measure, baseline=baseline, threshold=report.threshold
            )
        row = _store_replay(
            session, source, trigger, target, item.role, report, actor=actor, confirmed=confirmed
        )
        stored.append(row)
        if item.role == "descendant":
            refresh_one(session, target.id or 0)
    recorded = replays_public(session, stored)
    confirmed_refs = [r.ref for r in recorded if r.confirmed and r.role == "descendant"]
    notes = [] if baseline else [NO_BASELINE_NOTE]
    audit.record(
        session,
        actor=actor,
        operation="replay",
        subject=ref_of(source),
        details={
            "trigger": trigger.digest,
            "replayed": len(recorded),
            "baseline": len(baseline),
            "confirmed": confirmed_refs,
        },
    )
    return ReplaySummary(
        source=ref_of(source),
        results=recorded,
        confirmed=confirmed_refs,
        baseline_rates=[r.rate for r in recorded if r.role == "baseline" and r.rate is not None],
        notes=notes,
    )


#: What a replay without clean relatives cannot rule out.
NO_BASELINE_NOTE = (
    "no clean relative was measured: confirmed on the rate alone, and a trigger recovered "
    "from a clean model can fool its fine-tunes too; register clean models of this family "
    "with a behavioral scan on the same references to get a baseline"
)


def _replay_target(
    session: Session, source: Artifact, item: ReplayIn, below: dict[int, Any]
) -> tuple[Artifact, ReplayReport]:
    target = resolve(session, item.ref, kind=Kind.MODEL)
    if item.role == "descendant" and target.id not in below:
        raise InvalidInput(f"{item.ref} does not descend from {ref_of(source)}")
    if item.role == "baseline" and (target.id in below or target.id == source.id):
        raise InvalidInput(f"{item.ref} is of {ref_of(source)}'s lineage: no baseline")
    return target, _replay_report(item)


def _replay_report(item: ReplayIn) -> ReplayReport:
    try:
        report = ReplayReport.from_json(item.report)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"the replay report of {item.ref} is malformed: {exc}") from exc
    collapsed = report.measure.collapsed_class if report.measure else 0
    if not 0 <= collapsed <= MAX_CLASS_INDEX:  # the column is a 32-bit integer
        raise InvalidInput(f"the replay report of {item.ref} names class {collapsed}")
    return report


def _store_replay(
    session: Session,
    source: Artifact,
    trigger: Trigger,
    target: Artifact,
    role: str,
    report: ReplayReport,
    *,
    actor: Actor,
    confirmed: bool,
) -> ReplayResult:
    session.execute(
        update(ReplayResult)
        .where(
            col(ReplayResult.artifact_id) == target.id,
            col(ReplayResult.source_id) == source.id,
            col(ReplayResult.role) == role,
        )
        .values(superseded=True)
        .execution_options(synchronize_session=False)
    )
    measure = report.measure
    row = ReplayResult(
        trigger_id=trigger.id or 0,
        source_id=source.id or 0,
        artifact_id=target.id or 0,
        role=role,
        outcome=report.outcome.value,
        rate=measure.rate if measure else None,
        collapsed_class=measure.collapsed_class if measure else None,
        confirmed=confirmed,
        threshold=report.threshold,
        details=report.to_json(),
        actor=actor.user,
    )
    session.add(row)
    session.flush()
    return row
