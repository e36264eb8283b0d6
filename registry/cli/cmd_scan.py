"""``mbom scan``: the static serialization scan, then (with ``--reference``) the behavioral one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from registry.cli import render
from registry.cli.main import JsonOpt, app
from registry.errors import InvalidInput
from registry.vocabulary import BehaviorVerdict, ScanVerdict

if TYPE_CHECKING:
    from scanning.behavioral.report import BehavioralReport, ScanProfile
    from scanning.report import ScanReport


def run_static_scan(path: Path) -> ScanReport:
    """Scan every file under ``path`` without loading anything."""
    from scanning.static import scan_path

    if not path.exists():
        raise InvalidInput(f"{path} does not exist", hint="give a model file or directory")
    with render.err.status(f"scanning {path}…"):
        return scan_path(path)


def print_report(report: ScanReport) -> None:
    """Findings as a table, then the verdict."""
    render.table(
        f"{len(report.findings)} findings",
        ["severity", "file", "member", "offset", "kind", "detail", "why"],
        [
            (f.severity.value, f.file, f.member, f.offset, f.kind, f.detail, f.why)
            for f in sorted(report.findings, key=lambda f: (-f.severity.rank, f.file))
        ],
    )
    for item in report.files:
        if not item.scanned:
            render.err.print(f"could not scan {item.path}: {item.error}")
    style = {"clean": "green", "suspicious": "yellow", "malicious": "bold red", "error": "red"}
    verdict = report.verdict.value
    render.out.print(
        Text(f"{len(report.files)} files scanned: ") + Text(verdict, style=style[verdict])
    )


@app.command()
def scan(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A model file or directory.")],
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            metavar="REF.npz",
            help="Clean reference inputs (x float32, y int64): also run the behavioral "
            "backdoor scan, in a sandboxed subprocess.",
        ),
    ] = None,
    trigger_out: Annotated[
        Path | None,
        typer.Option(
            "--trigger-out",
            metavar="DIR",
            help="Where to write the trigger of a found backdoor (trigger.npz, trigger.png); "
            "default ./NAME-trigger.",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", metavar="S", help="Behavioral scan wall-time limit (300)."),
    ] = None,
    memory_limit: Annotated[
        int | None,
        typer.Option("--memory-limit", metavar="MB", help="Behavioral scan memory limit (4096)."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Scan a model for code that runs when it is loaded; with --reference, for backdoors.

    Nothing is loaded or executed: pickles are read opcode by opcode, archives,
    NumPy, joblib, Keras, ONNX, safetensors and GGUF files are parsed.
    Exit 0 clean, 1 suspicious or malicious findings, 2 could not scan.

    With --reference, a model the static scan passes (a torch.export .pt2 or
    safetensors with a known config.json) is then loaded in a sandboxed subprocess
    and scanned for backdoors; the verdict is clean, suspicious, compromised or
    scan_error (exit 0, 1, 1, 2).
    """
    if reference is None:
        if (trigger_out, timeout, memory_limit) != (None, None, None):
            raise InvalidInput(
                "--trigger-out, --timeout and --memory-limit apply to the behavioral scan",
                hint="add --reference REF.npz",
            )
        report = run_static_scan(path)
        if json_:
            render.emit_json(report.to_json())
        else:
            print_report(report)
        raise typer.Exit(report.verdict.exit_code)
    result = run_full_scan(
        path, reference, trigger_out=trigger_out, timeout=timeout, memory_limit=memory_limit
    )
    if json_:
        render.emit_json(result.to_json())
    else:
        print_full_report(result)
    raise typer.Exit(result.exit_code)


# --- with --reference: the static scan, then the behavioral scan ----------------------------------

#: A static verdict that stops the behavioral scan, as the combined verdict.
_STATIC_STOPS = {
    ScanVerdict.MALICIOUS: BehaviorVerdict.COMPROMISED,
    ScanVerdict.SUSPICIOUS: BehaviorVerdict.SUSPICIOUS,
    ScanVerdict.ERROR: BehaviorVerdict.SCAN_ERROR,
}


@dataclass(frozen=True)
class FullScan:
    """The static report, the behavioral report (None when not run) and the combined verdict."""

    static: ScanReport
    behavioral: BehavioralReport | None
    verdict: BehaviorVerdict
    error: str | None
    trigger_files: tuple[Path, Path] | None

    @property
    def backdoor(self) -> BehavioralReport | None:
        """The behavioral report when it found a backdoor (its class and trigger are meant)."""
        if self.verdict in (BehaviorVerdict.SUSPICIOUS, BehaviorVerdict.COMPROMISED):
            return self.behavioral
        return None

    @property
    def exit_code(self) -> int:
        """0 clean, 1 suspicious or compromised, 2 scan_error."""
        return self.verdict.exit_code

    def to_json(self) -> dict[str, Any]:
        """The ``mbom scan --reference --json`` contract.

        ``verdict`` (clean | suspicious | compromised | scan_error), ``score``,
        ``detectors`` ({name: {statistic, threshold, flagged, suspected_classes}}),
        for a found backdoor (else null) ``target_class``, ``trigger`` ({npz, png}
        paths) and ``trigger_asr``,
        ``error`` (why there is no behavioral verdict, or null), ``static`` (the
        static report) and ``behavioral`` (the behavioral report, null when the
        static scan stopped it).
        """
        behavioral = self.behavioral
        files = self.trigger_files
        found = self.backdoor
        return {
            "verdict": self.verdict,
            "score": None if behavioral is None else behavioral.score,
            "detectors": {} if behavioral is None else _detectors_json(behavioral),
            "target_class": None if found is None else found.target_class,
            "trigger": None if files is None else {"npz": str(files[0]), "png": str(files[1])},
            "trigger_asr": None if found is None else found.trigger_asr,
            "error": self.error,
            "static": self.static.to_json(),
            "behavioral": None if behavioral is None else behavioral.to_json(),
        }


def _detectors_json(report: BehavioralReport) -> dict[str, dict[str, Any]]:
    return {
        d.name: {
            "statistic": d.statistic,
            "threshold": d.threshold,
            "flagged": d.flagged,
            "suspected_classes": list(d.suspected_classes),
        }
        for d in report.detectors
    }


def run_full_scan(
    path: Path,
    reference: Path,
    *,
    trigger_out: Path | None,
    timeout: float | None,
    memory_limit: int | None,
) -> FullScan:
    """The static scan, then (only if it is clean) the sandboxed behavioral scan."""
    from scanning.behavioral.api import DEFAULT_LIMITS, Limits, scan_model

    try:
        limits = Limits(
            timeout_s=DEFAULT_LIMITS.timeout_s if timeout is None else timeout,
            memory_mb=DEFAULT_LIMITS.memory_mb if memory_limit is None else memory_limit,
        )
    except ValueError as exc:
        raise InvalidInput(str(exc), hint="check --timeout and --memory-limit") from exc
    if not path.exists():
        raise InvalidInput(f"{path} does not exist", hint="give a model file or directory")
    if not reference.is_file():
        raise InvalidInput(f"{reference} is not a file", hint="give the reference .npz")
    static = run_static_scan(path)
    if static.verdict in _STATIC_STOPS:
        # Decided without loading: the references (and the model's config) are not even read.
        why = f"not loaded: the static scan of {path} is {static.verdict.value}"
        return FullScan(static, None, _STATIC_STOPS[static.verdict], why, None)
    profile = read_profile_option(reference, path)
    with BehavioralProgress(path.name or str(path)) as progress:
        behavioral = scan_model(path, profile, limits=limits, progress=progress)
    verdict = behavioral.verdict
    found = verdict in (BehaviorVerdict.SUSPICIOUS, BehaviorVerdict.COMPROMISED)
    files = None
    # A clean model's best candidate trigger is noise: only a found backdoor's is written.
    if behavioral.trigger is not None and found:
        from scanning.behavioral.api import save_trigger

        directory = trigger_out or Path.cwd() / f"{path.resolve().name}-trigger"
        files = save_trigger(behavioral.trigger, directory.resolve())
    return FullScan(static, behavioral, verdict, behavioral.error, files)


def read_profile_option(reference: Path, model: Path) -> ScanProfile:
    """The --reference .npz as a scan profile; a bad file is one clear InvalidInput line."""
    from scanning.behavioral.api import read_profile

    hint = "the reference .npz needs x (float32, (N, *input_shape)) and y (int64 labels)"
    try:
        return read_profile(reference, model=model)
    except OSError as exc:
        raise InvalidInput(f"cannot read {reference}: {exc.strerror or exc}", hint=hint) from exc
    except ValueError as exc:
        raise InvalidInput(f"{reference}: {exc}", hint=hint) from exc


class BehavioralProgress:
    """A ``progress(fraction, message)`` callback drawing a rich bar on stderr (terminals only)."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=render.err,
            transient=True,
            disable=not render.err.is_terminal,
        )
        self._task = self._progress.add_task(f"scanning {label}", total=1.0)

    def __enter__(self) -> BehavioralProgress:
        self._progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._progress.stop()

    def __call__(self, fraction: float, message: str) -> None:
        self._progress.update(
            self._task, completed=fraction, description=f"scanning {self._label}: {message}"
        )


def print_full_report(result: FullScan) -> None:
    """The static findings, then the behavioral detectors and the combined verdict."""
    print_report(result.static)
    behavioral = result.behavioral
    if behavioral is not None and behavioral.detectors:
        render.table(
            "behavioral detectors",
            ["detector", "statistic", "threshold", "flagged", "suspected classes"],
            [
                (
                    d.name,
                    f"{d.statistic:.3g}",
                    f"{d.threshold:.3g}",
                    "yes" if d.flagged else "no",
                    ", ".join(map(str, d.suspected_classes)),
                )
                for d in behavioral.detectors
            ],
        )
    style = {"clean": "green", "suspicious": "yellow", "compromised": "bold red"}
    line = Text("behavioral scan: ") + Text(result.verdict, style=style.get(result.verdict, "red"))
    if behavioral is not None and behavioral.score is not None:
        line += Text(f" (score {behavioral.score:.3g})")
    render.out.print(line)
    if result.error:
        render.out.print(Text(result.error))
    found = result.backdoor
    if found is not None and found.target_class is not None:
        asr = found.trigger_asr
        rate = "" if asr is None else f", trigger attack success rate {asr:.0%}"
        render.out.print(f"suspected target class {found.target_class}{rate}")
    if result.trigger_files is not None:
        npz_path, png_path = result.trigger_files
        render.out.print(f"recovered trigger written to {npz_path} and {png_path}")
