"""The stored scans of an artifact, newest first: what a status report and a BOM show.

Below :mod:`registry.service.admission` (which records scans and quarantines on
them, through :mod:`registry.service.flags`) so that the status report in
``flags`` can read scans without importing admission back.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from registry.tables import Artifact, ScanRecord
from scanning.report import ScanReport

__all__ = ["latest_scan", "latest_scan_json"]


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
