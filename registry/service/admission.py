"""Admission: what a registration does with the static scan of its files.

A ``malicious`` scan registers the model quarantined: compromised, flagged by
the scan with its findings as the reason, blocked for every team, its files
never loaded. A ``suspicious`` scan — or one that could not finish
(``error``) — refuses admission unless an approver overrides (audited).
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from registry.identity import Actor
from registry.service import policy
from registry.service.flags import mark_compromised
from registry.tables import Artifact, Flag, ScanRecord
from scanning.report import ScanReport, Verdict

MAX_REASON_FINDINGS = 5


def check_admission(
    session: Session,
    report: ScanReport | None,
    *,
    actor: Actor,
    override: str | None,
    team: str | None,
    subject: str,
) -> None:
    """Refuse a suspicious or unscannable model unless an approver overrides."""
    if report is None or report.verdict in (Verdict.CLEAN, Verdict.MALICIOUS):
        return
    what = "could not be scanned" if report.verdict is Verdict.ERROR else "is suspicious"
    policy.enforce(
        session,
        actor=actor,
        violations=[f"the static scan says {subject} {what}: {summarise(report)}"],
        override=override,
        team=team,
        subject=subject,
    )


def record_scan(
    session: Session, artifact: Artifact, report: ScanReport | None, *, actor: Actor
) -> None:
    """Store the scan, set the finding, and quarantine a malicious model."""
    if report is None:
        return
    session.add(
        ScanRecord(
            artifact_id=artifact.id or 0,
            verdict=report.verdict.value,
            report=report.to_json(),
            actor=actor.user,
        )
    )
    if report.verdict is Verdict.MALICIOUS:
        mark_compromised(
            session, artifact, actor=actor, reason=f"static scan: malicious: {summarise(report)}"
        )
        return
    finding = {Verdict.CLEAN: "clean"}.get(report.verdict, "suspicious")
    flagged = session.exec(select(Flag).where(Flag.artifact_id == artifact.id, Flag.active)).first()
    if flagged is not None:  # a placeholder flagged before its files came: the flag stands
        flagged.previous_finding = finding  # and unflagging restores what the scan found
        return
    artifact.finding = finding


def summarise(report: ScanReport) -> str:
    """The worst findings in one line: what, where."""
    worst = sorted(report.findings, key=lambda f: -f.severity.rank)[:MAX_REASON_FINDINGS]
    parts = [
        f"{f.detail} ({f.kind}) in {f.file}{'!' + f.member if f.member else ''}" for f in worst
    ]
    more = len(report.findings) - len(worst)
    errors = [f"{r.path}: {r.error}" for r in report.files if not r.scanned]
    text = "; ".join(parts + errors[:2]) or "no details"
    return text + (f"; and {more} more findings" if more > 0 else "")


def latest_scan(session: Session, artifact: Artifact) -> ScanReport | None:
    """The newest stored scan of an artifact."""
    row = session.exec(
        select(ScanRecord)
        .where(ScanRecord.artifact_id == artifact.id)
        .order_by(col(ScanRecord.id).desc())
        .limit(1)
    ).first()
    return ScanReport.from_json(row.report) if row else None
