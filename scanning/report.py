"""What a static scan reports: findings, per-file results and one verdict.

This is the contract between the scanner and everything that consumes it
(``mbom scan --json``, admission on ``mbom register``, the API, the
benchmarks). The JSON shape is documented on :meth:`ScanReport.to_json`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """How bad one finding is, from harmless note to proof of code execution."""

    INFO = "info"  # worth knowing, not a reason to refuse (e.g. an unusual but inert global)
    SUSPICIOUS = "suspicious"  # not known to be safe: a person must look (unknown import)
    MALICIOUS = "malicious"  # a known code-execution route (os.system, eval, ...)
    ERROR = "error"  # this part could not be scanned: never treated as clean

    @property
    def rank(self) -> int:
        """Order for comparisons: info < suspicious < error < malicious."""
        return {"info": 0, "suspicious": 1, "error": 2, "malicious": 3}[self.value]


class Verdict(StrEnum):
    """The verdict of a whole scan."""

    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"
    ERROR = "error"  # could not scan (some file or member): exit code 2

    @property
    def exit_code(self) -> int:
        """``mbom scan`` exit code: 0 clean, 1 any finding, 2 could not scan."""
        return {"clean": 0, "suspicious": 1, "malicious": 1, "error": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    """One thing the scanner found, precise enough to act on without a hex editor.

    ``file`` is relative to the scanned root; ``member`` the path inside an
    archive (``outer.zip!inner.pkl`` for nested ones) or None; ``offset`` the
    byte offset inside that file or member (of the opcode, header field, ...)
    or None; ``kind`` a stable identifier (``pickle.global``,
    ``pickle.truncated``, ``safetensors.overlap``, ``keras.lambda`` ...);
    ``detail`` what exactly (``os.system``); ``why`` the reason it matters.
    """

    file: str
    kind: str
    detail: str
    severity: Severity
    why: str
    member: str | None = None
    offset: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The finding as the JSON object ``mbom scan --json`` prints."""
        return {
            "file": self.file,
            "member": self.member,
            "offset": self.offset,
            "kind": self.kind,
            "detail": self.detail,
            "severity": self.severity.value,
            "why": self.why,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        """Rebuild a finding from :meth:`to_json` output."""
        return cls(
            file=str(data["file"]),
            kind=str(data["kind"]),
            detail=str(data["detail"]),
            severity=Severity(data["severity"]),
            why=str(data["why"]),
            member=data.get("member"),
            offset=data.get("offset"),
        )


@dataclass(frozen=True)
class FileResult:
    """One scanned file: its detected format and whether it could be scanned."""

    path: str
    format: str
    size: int
    scanned: bool = True
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The file as JSON."""
        return {
            "path": self.path,
            "format": self.format,
            "size": self.size,
            "scanned": self.scanned,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileResult:
        """Rebuild from :meth:`to_json` output."""
        return cls(
            path=str(data["path"]),
            format=str(data["format"]),
            size=int(data["size"]),
            scanned=bool(data.get("scanned", True)),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class ScanReport:
    """The result of scanning a file or a directory."""

    findings: tuple[Finding, ...] = ()
    files: tuple[FileResult, ...] = field(default=())

    @property
    def verdict(self) -> Verdict:
        """malicious > error > suspicious > clean: one malicious finding decides.

        A file that could not be scanned makes the verdict ``error`` unless a
        malicious finding was already made: an unscannable file is never clean.
        """
        severities = {f.severity for f in self.findings}
        if Severity.MALICIOUS in severities:
            return Verdict.MALICIOUS
        if Severity.ERROR in severities or any(not f.scanned for f in self.files):
            return Verdict.ERROR
        if Severity.SUSPICIOUS in severities:
            return Verdict.SUSPICIOUS
        return Verdict.CLEAN

    def to_json(self) -> dict[str, Any]:
        """``{"verdict", "findings": [...], "files": [...]}`` as ``mbom scan --json`` prints."""
        return {
            "verdict": self.verdict.value,
            "findings": [f.to_json() for f in self.findings],
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScanReport:
        """Rebuild a report (the verdict is recomputed, never trusted)."""
        return cls(
            findings=tuple(Finding.from_json(f) for f in data.get("findings", ())),
            files=tuple(FileResult.from_json(f) for f in data.get("files", ())),
        )

    @classmethod
    def merge(cls, reports: Iterable[ScanReport]) -> ScanReport:
        """One report from several (e.g. one per file)."""
        findings: list[Finding] = []
        files: list[FileResult] = []
        for report in reports:
            findings.extend(report.findings)
            files.extend(report.files)
        return cls(tuple(findings), tuple(files))
