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
  by a finding the registry vouches for (quarantined by a scan the registry ran
  itself, flagged by an admin or an advisory — a flagged placeholder included:
  its digest names the content), or
- one of its files has the SHA-256 of a file that carried a *malicious*
  finding of a static scan the registry ran itself, in a model compromised so.

A client's own scan report compromises the model it came with, never the same
bytes elsewhere: otherwise a publisher could quarantine another team's model,
or every later import of a popular one, by registering its hashes first with a
forged verdict.

Only files with a malicious finding count, never the other files of a
compromised model: a ``config.json`` or tokenizer shared by many clean models
must not taint them. A model flagged for a backdoor in its weights is matched by
its whole digest only (which file holds the backdoor is not recorded). Such a
registration is *accepted and quarantined* — compromised, blocked everywhere,
the reason naming the original — like a malicious scan, rather than refused:
the registry keeps the record of where the bytes went, and descendants declared
later are infected. Unflagging the original (a false positive) stops the match
for later registrations; copies already flagged keep their own flag.

The other direction — an artifact flagged after copies of its files were
registered under other names — is :func:`registry.service.flags.mark_compromised`'s:
every flag also flags the registered artifacts with the same digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlmodel import Session, col, select

from registry.identity import Actor
from registry.schemas import ScanProvenance
from registry.service import policy
from registry.service.flags import mark_compromised, quarantine_known
from registry.service.refs import ref_of
from registry.tables import Artifact, Flag, ScanRecord
from registry.vocabulary import Finding, Kind
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
            session,
            artifact,
            actor=actor,
            reason=f"static scan: malicious: {summarise(report)}",
            vouched=provenance is ScanProvenance.REGISTRY,
        )
        return
    finding = Finding.CLEAN if report.verdict is Verdict.CLEAN else Finding.SUSPICIOUS
    if finding is Finding.CLEAN and provenance is not ScanProvenance.REGISTRY:
        finding = Finding.UNSCANNED  # a client's word never makes a model clean
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


def quarantine_known_content(
    session: Session, artifacts: Iterable[Artifact], *, actor: Actor
) -> None:
    """Flag each of ``artifacts`` whose content is known to be malicious (see the module).

    Every registration path calls this on what it stored, in its transaction;
    an artifact already compromised (say by its own scan) is left as it is.
    What is known is read once per call (a BOM import passes all its artifacts).
    """
    pending = [a for a in artifacts if a.finding != Finding.COMPROMISED and _has_content(a)]
    if not pending:
        return
    twins = _compromised_twins(session, pending)
    files = _malicious_files(session) if any(a.manifest for a in pending) else {}
    for artifact in pending:
        reason = twins.get((artifact.kind, artifact.digest or "")) or _carried_file(artifact, files)
        if reason is None:
            continue
        quarantine_known(session, artifact, actor=actor, why=reason)


def knows_malicious(
    session: Session, *, digests: Iterable[str], file_digests: Iterable[str]
) -> bool:
    """Whether any artifact digest or file SHA-256 here is known malicious (see the module).

    The question :func:`quarantine_known_content` answers per artifact, asked
    once for a whole batch before anything is stored (a bulk BOM import).
    """
    if _vouched_originals(session, set(digests)):
        return True
    files = set(file_digests)
    return bool(files) and not files.isdisjoint(_malicious_files(session))


#: How many digests one ``IN`` list holds (well under every backend's parameter limit).
_CHUNK = 500


def _has_content(artifact: Artifact) -> bool:
    return not artifact.placeholder and bool(artifact.digest)


def _compromised_twins(session: Session, pending: list[Artifact]) -> dict[tuple[str, str], str]:
    """(kind, digest) -> why, for each digest of ``pending`` a compromised artifact has."""
    found: dict[tuple[str, str], str] = {}
    for twin in _vouched_originals(session, {a.digest for a in pending if a.digest}):
        why = f"its files are those of quarantined {ref_of(twin)} ({twin.digest})"
        found.setdefault((twin.kind, twin.digest or ""), why)
    return found


def _vouched_originals(session: Session, digests: set[str]) -> list[Artifact]:
    """The compromised artifacts with one of ``digests`` whose flag the registry vouches for.

    A flag from a client's own scan report compromises its model only: were it
    to taint the same content elsewhere, anyone could quarantine a popular model
    for everyone by registering its public hashes first with a forged verdict.
    """
    wanted = sorted(digests)
    found: list[Artifact] = []
    for start in range(0, len(wanted), _CHUNK):
        found += session.exec(
            select(Artifact)
            .join(Flag, col(Flag.artifact_id) == col(Artifact.id))
            .where(
                col(Artifact.digest).in_(wanted[start : start + _CHUNK]),
                Artifact.finding == Finding.COMPROMISED,
                col(Flag.active).is_(True),
                col(Flag.vouched).is_(True),
            )
            .order_by(col(Artifact.id))
        ).all()
    return found


def _malicious_files(session: Session) -> dict[str, str]:
    """SHA-256 -> why, for each file that carried a malicious finding in a compromised model.

    Read from the active flags (few) down to their models' static scans.
    """
    rows = session.exec(
        select(Artifact, ScanRecord.report)
        .select_from(Flag)
        .join(Artifact, col(Artifact.id) == col(Flag.artifact_id))
        .join(ScanRecord, col(ScanRecord.artifact_id) == col(Artifact.id))
        .where(
            col(Flag.active).is_(True),
            col(Flag.vouched).is_(True),
            Artifact.finding == Finding.COMPROMISED,
            ScanRecord.kind == "static",
            ScanRecord.provenance == ScanProvenance.REGISTRY.value,
            ScanRecord.verdict == Verdict.MALICIOUS.value,
        )
        .order_by(col(ScanRecord.id))
    ).all()
    known: dict[str, str] = {}
    for origin, report in rows:
        for sha, detail in _findings_by_file(origin, report):
            known.setdefault(sha, f"the static scan of quarantined {ref_of(origin)} found {detail}")
    return known


def _findings_by_file(origin: Artifact, report: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(SHA-256, what was found) of each file of ``origin`` with a malicious finding."""
    digests = {str(path): str(sha) for path, _, sha in origin.manifest or []}
    for finding in ScanReport.from_json(report).findings:
        if finding.severity is Severity.MALICIOUS and finding.file in digests:
            yield digests[finding.file], f"{finding.detail} ({finding.kind})"


def _carried_file(artifact: Artifact, known: Mapping[str, str]) -> str | None:
    """Why one of ``artifact``'s files is known malicious (the first such file), else None."""
    if artifact.kind != Kind.MODEL:
        return None
    for path, _, sha in artifact.manifest or []:
        if str(sha) in known:
            return f"{path} (sha256:{sha}) is the file in which {known[str(sha)]}"
    return None
