"""Per-file scan state: limits and budgets, and the sink findings go to."""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from scanning._static.limits import ScanLimits
from scanning.report import Finding, Severity

__all__ = ["LimitExceeded", "ScanContext", "TimeExceeded", "Where"]


class LimitExceeded(Exception):
    """A :class:`ScanLimits` bound was hit; the rest of the part is not scanned."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class TimeExceeded(LimitExceeded):
    """The time budget is spent: the whole file's scan stops."""


@dataclass(frozen=True)
class Where:
    """Which part of the scanned file a finding is about.

    ``member`` is the archive path (``outer.zip!inner.pkl`` when nested), ``depth``
    how many archives or compressed wrappers deep the part sits, ``hint`` the
    part's name (file or member name), used only to choose strictness, never to
    decide a format.
    """

    member: str | None = None
    depth: int = 0
    hint: str = ""

    def inside(self, name: str) -> Where:
        """The location of member ``name`` of the archive at this location."""
        member = name if self.member is None else f"{self.member}!{name}"
        return Where(member=member, depth=self.depth + 1, hint=name)


@dataclass
class ScanContext:
    """What one file's scan shares: its display path, limits, budgets and findings."""

    file: str
    limits: ScanLimits
    findings: list[Finding] = field(default_factory=list)
    decompressed: int = 0
    opcodes: int = 0
    deadline: float = 0.0
    dropped: int = 0
    cleanup: ExitStack = field(default_factory=ExitStack)
    directory: Path | None = None  # the scanned file's real directory (ONNX external data)

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.limits.time_budget

    def report(
        self,
        where: Where,
        kind: str,
        detail: str,
        severity: Severity,
        why: str,
        *,
        offset: int | None = None,
    ) -> None:
        """Record one finding (past the per-file cap, only count it).

        Malicious and error findings get a second allowance, so a flood of minor
        findings cannot push the one that decides the verdict out of the report.
        """
        cap = self.limits.max_findings_per_file
        if severity in (Severity.MALICIOUS, Severity.ERROR):
            cap *= 2
        if len(self.findings) >= cap:
            self.dropped += 1
            return
        self.findings.append(
            Finding(
                file=self.file,
                kind=kind,
                detail=detail,
                severity=severity,
                why=why,
                member=where.member,
                offset=offset,
            )
        )

    def check_time(self) -> None:
        """Raise :class:`LimitExceeded` once the time budget is spent."""
        if time.monotonic() > self.deadline:
            raise TimeExceeded(f"time budget of {self.limits.time_budget:g} s spent")

    def count_decompressed(self, n: int) -> None:
        """Charge ``n`` decompressed bytes to the zip-bomb budget."""
        self.decompressed += n
        if self.decompressed > self.limits.max_decompressed_bytes:
            raise LimitExceeded(
                f"more than {self.limits.max_decompressed_bytes} decompressed bytes"
            )

    def count_opcodes(self, n: int) -> None:
        """Charge ``n`` simulated pickle opcodes to the file's budget."""
        self.opcodes += n
        if self.opcodes > self.limits.max_pickle_opcodes:
            raise LimitExceeded(f"more than {self.limits.max_pickle_opcodes} pickle opcodes")
        self.check_time()
