"""The behavioral scan's verdict, apart from the report so that it imports without NumPy.

The registry's request and response schemas are typed with it, and the CLI loads
those schemas on every start; :mod:`scanning.behavioral.report` (NumPy arrays)
re-exports it for everything else.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BehaviorVerdict"]


class BehaviorVerdict(StrEnum):
    """The verdict of a behavioral scan; ``scan_error`` is never treated as clean."""

    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    COMPROMISED = "compromised"
    SCAN_ERROR = "scan_error"

    @property
    def exit_code(self) -> int:
        """``mbom scan`` exit code: 0 clean, 1 suspicious or compromised, 2 could not scan."""
        return {"clean": 0, "suspicious": 1, "compromised": 1, "scan_error": 2}[self.value]
