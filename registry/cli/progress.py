"""A rich progress bar for hashing, shown only on a terminal."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from registry.cli.render import err


class HashingProgress:
    """Implements :class:`registry.manifest.ProgressCallback` with a rich bar on stderr."""

    #: What the bar says is happening to the files.
    verb = "hashing"

    def __init__(self, label: str) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        self._label = label
        self._task: TaskID | None = None

    def __enter__(self) -> HashingProgress:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def start(self, total_bytes: int, files: int) -> None:
        """Create the bar once the total is known."""
        self._task = self._progress.add_task(
            f"{self.verb} {files} files of {self._label}", total=total_bytes
        )

    def advance(self, nbytes: int) -> None:
        """Advance the bar (thread-safe: rich takes a lock)."""
        if self._task is not None:
            self._progress.advance(self._task, nbytes)


class TransferProgress(HashingProgress):
    """The same bar for storing (uploading) or pulling: ``TransferProgress("pulling", ref)``."""

    def __init__(self, verb: str, label: str) -> None:
        super().__init__(label)
        self.verb = verb

    def __enter__(self) -> TransferProgress:
        super().__enter__()
        return self
