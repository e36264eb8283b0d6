"""How far the static scanner may go on one input before it gives up."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ScanLimits"]

_MIB = 1024 * 1024


@dataclass(frozen=True)
class ScanLimits:
    """Bounds that keep a hostile file from hanging the scanner or exhausting memory.

    Hitting a limit never yields "clean": the part that could not be scanned is
    reported as a :attr:`~scanning.report.Severity.ERROR` finding.

    ``max_read_bytes``: largest file or member read whole into memory (JSON
    configs, headers, small archives); pickles are streamed and never read whole.
    ``max_members``: members examined per archive. ``max_depth``: archives nested
    in archives (and compressed wrappers) followed. ``max_decompressed_bytes``:
    bytes produced by decompression per scanned file, all members and levels
    together (zip-bomb guard). ``max_pickle_opcodes``: opcodes simulated per
    file. ``max_findings_per_file``: findings kept per file (then one summary).
    ``max_kept_string``: longest pickle string kept for analysis (longer ones are
    skipped over). ``time_budget``: seconds per scanned file.
    """

    max_read_bytes: int = 256 * _MIB
    max_members: int = 100_000
    max_depth: int = 6
    max_decompressed_bytes: int = 4 * 1024 * _MIB
    max_pickle_opcodes: int = 10_000_000
    max_findings_per_file: int = 1_000
    max_kept_string: int = 64 * 1024
    time_budget: float = 300.0

    def __post_init__(self) -> None:
        for name in (
            "max_read_bytes",
            "max_members",
            "max_decompressed_bytes",
            "max_pickle_opcodes",
            "max_findings_per_file",
            "max_kept_string",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"ScanLimits.{name} must be at least 1, got {getattr(self, name)}")
        if self.max_depth < 0:
            raise ValueError(f"ScanLimits.max_depth must be at least 0, got {self.max_depth}")
        if self.time_budget <= 0:
            raise ValueError(f"ScanLimits.time_budget must be positive, got {self.time_budget}")
