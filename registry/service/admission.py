"""Admission: what a registration does with the static scan of its files.

A ``malicious`` scan registers the model quarantined: compromised, flagged by
the scan with its findings as the reason, blocked for every team, its files
never loaded. A ``suspicious`` scan — or one that could not finish
(``error``) — refuses admission unless an approver overrides (audited).

**Known-malicious content** stays malicious under any name: every registration
path (``register``, the API, Hugging Face import, CycloneDX import, datasets)
calls :func:`quarantine_known_content` on what it stored, whatever scan came
with it (or none: ``--skip-scan``, ``--allow-duplicate-content``). Content is
known to be malicious when

- its digest is that of an artifact of the same kind that is compromised now
  (quarantined by a scan, flagged by a person or an advisory — a flagged
  placeholder included: its digest names the content), or
- one of its files has the SHA-256 of a file that carried a *malicious*
  static-scan finding in a model that is compromised now.

Only files with a malicious finding count, never the other files of a
compromised model: a ``config.json`` or tokenizer shared by many clean models
must not taint them. A model flagged for a backdoor in its weights is matched by
its whole digest only (which file holds the backdoor is not recorded). Such a
registration is *accepted and quarantined* — compromised, blocked everywhere,
the reason naming the original — like a malicious scan, rather than refused:
the registry keeps the record of where the bytes went, and descendants declared
later are infected. Unflagging the original (a false positive) stops the match.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlmodel import Session, col, select

from registry.identity import Actor
from registry.schemas import ScanProvenance
from registry.service import audit, policy
from registry.service.flags import mark_compromised
from registry.service.refs import ref_of
from registry.tables import Artifact, Flag, ScanRecord
from scanning.report import ScanReport, Severity, Verdict

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
    session: Session,
    artifact: Artifact,
    report: ScanReport | None,
    *,
    actor: Actor,
    provenance: ScanProvenance = ScanProvenance.CLIENT,
) -> None:
    """Store the scan (with who ran it), set the finding, and quarantine a malicious model."""
    if report is None:
        return
    session.add(
        ScanRecord(
            artifact_id=artifact.id or 0,
            verdict=report.verdict.value,
            report=report.to_json(),
            actor=actor.user,
            provenance=provenance.value,
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
    """The newest stored static scan of an artifact (a behavioral one is no static report)."""
    row = _latest_record(session, artifact, "static")
    return ScanReport.from_json(row.report) if row else None


def latest_scan_json(session: Session, artifact: Artifact, kind: str) -> dict[str, Any] | None:
    """The newest ``kind`` scan (``static``, ``behavioral``) as JSON, with its ``provenance``."""
    row = _latest_record(session, artifact, kind)
    if row is None:
        return None
    report = ScanReport.from_json(row.report).to_json() if kind == "static" else dict(row.report)
    return {**report, "provenance": row.provenance}


def _latest_record(session: Session, artifact: Artifact, kind: str) -> ScanRecord | None:
    return session.exec(
        select(ScanRecord)
        .where(ScanRecord.artifact_id == artifact.id, ScanRecord.kind == kind)
        .order_by(col(ScanRecord.id).desc())
        .limit(1)
    ).first()


def quarantine_known_content(
    session: Session, artifacts: Iterable[Artifact], *, actor: Actor
) -> None:
    """Flag each of ``artifacts`` whose content is known to be malicious (see the module).

    Every registration path calls this on what it stored, in its transaction;
    an artifact already compromised (say by its own scan) is left as it is.
    """
    for artifact in artifacts:
        if artifact.finding == "compromised":
            continue
        reason = known_malicious(session, artifact)
        if reason is None:
            continue
        mark_compromised(
            session, artifact, actor=actor, reason=f"known malicious content: {reason}"
        )
        audit.record(
            session,
            actor=actor,
            operation="flag.known_content",
            subject=ref_of(artifact),
            details={"reason": reason, "digest": artifact.digest},
        )


def known_malicious(session: Session, artifact: Artifact) -> str | None:
    """Why ``artifact``'s content is known to be malicious, naming the original; else None."""
    if artifact.placeholder or not artifact.digest:
        return None
    twin = session.exec(
        select(Artifact)
        .where(
            Artifact.digest == artifact.digest,
            Artifact.kind == artifact.kind,
            Artifact.finding == "compromised",
            Artifact.id != artifact.id,
        )
        .order_by(col(Artifact.id))
        .limit(1)
    ).first()
    if twin is not None:
        return f"its files are those of quarantined {ref_of(twin)} ({artifact.digest})"
    if artifact.kind != "model" or not artifact.manifest:
        return None
    return _malicious_file(session, artifact)


def _malicious_file(session: Session, artifact: Artifact) -> str | None:
    """The first file of ``artifact`` that carried a malicious finding in a compromised model."""
    ours = {str(sha): str(path) for path, _, sha in artifact.manifest or []}
    rows = session.exec(
        select(Artifact, ScanRecord.report)
        .join(ScanRecord, col(ScanRecord.artifact_id) == col(Artifact.id))
        .where(
            ScanRecord.kind == "static",
            ScanRecord.verdict == Verdict.MALICIOUS.value,
            Artifact.finding == "compromised",
            Artifact.id != artifact.id,
        )
        .order_by(col(ScanRecord.id))
    ).all()
    for origin, report in rows:
        for sha, detail in _malicious_files(origin, report):
            if sha in ours:
                return (
                    f"{ours[sha]} (sha256:{sha}) is the file in which the static scan of "
                    f"quarantined {ref_of(origin)} found {detail}"
                )
    return None


def _malicious_files(origin: Artifact, report: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(SHA-256, what was found) of each file of ``origin`` with a malicious finding."""
    digests = {str(path): str(sha) for path, _, sha in origin.manifest or []}
    for finding in ScanReport.from_json(report).findings:
        if finding.severity is Severity.MALICIOUS and finding.file in digests:
            yield digests[finding.file], f"{finding.detail} ({finding.kind})"
