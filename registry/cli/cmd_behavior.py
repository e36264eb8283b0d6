"""``mbom rescan`` and ``mbom replay``, and the behavioral scan on ``mbom register``.

The scans run here, next to the model files, each in the sandboxed worker of
:mod:`scanning.behavioral`; the registry is told what they found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from registry.cli import render
from registry.cli.cmd_scan import BehavioralProgress, read_profile_option, run_static_scan
from registry.cli.context import CliContext
from registry.cli.main import JsonOpt, RefArg, app, ctx_of, hash_path
from registry.errors import InvalidInput, NotFound
from registry.vocabulary import BehaviorVerdict, Kind, ScanVerdict, Status

if TYPE_CHECKING:
    from registry.schemas import (
        BehavioralScanPublic,
        ReplayPlan,
        ReplaySummary,
        ScanProfilePublic,
    )
    from scanning.behavioral.api import Limits
    from scanning.behavioral.report import BehavioralReport, ScanProfile
    from scanning.report import ScanReport

TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", metavar="S", help="Wall-time limit per sandboxed scan (300)."),
]
MemoryOpt = Annotated[
    int | None,
    typer.Option("--memory-limit", metavar="MB", help="Memory limit per sandboxed scan (4096)."),
]


def limits_of(timeout: float | None, memory_limit: int | None) -> Limits:
    """Sandbox limits from the options (defaults where not given)."""
    from scanning.behavioral.api import DEFAULT_LIMITS, Limits

    try:
        return Limits(
            timeout_s=DEFAULT_LIMITS.timeout_s if timeout is None else timeout,
            memory_mb=DEFAULT_LIMITS.memory_mb if memory_limit is None else memory_limit,
        )
    except ValueError as exc:
        raise InvalidInput(str(exc), hint="check --timeout and --memory-limit") from exc


def stored_profile(found: ScanProfilePublic) -> ScanProfile:
    """A profile the registry keeps, back as a validated :class:`ScanProfile`."""
    from scanning.behavioral.profile import profile_from_npz

    try:
        return profile_from_npz(found.reference)
    except ValueError as exc:
        raise InvalidInput(f"the stored profile of {found.origin} is unusable: {exc}") from exc


def admission_scan(
    cli: CliContext,
    path: Path,
    *,
    reference: Path | None,
    parents: Sequence[str],
    limits: Limits,
) -> tuple[ScanProfile | None, BehavioralReport | None]:
    """The behavioral scan a registration runs: with its own profile or an inherited one.

    Returns ``(own profile, report)``; ``(None, None)`` when the model has no
    profile at all (no ``--reference`` and no ancestor with one).
    """
    from scanning.behavioral.api import scan_model
    from scanning.behavioral.profile import profile_to_npz, reference_digest

    if reference is None and not parents:
        return None, None  # nothing to inherit from
    own = read_profile_option(reference, path) if reference is not None else None
    if own is not None:
        profile, digest = own, reference_digest(profile_to_npz(own))
    else:
        inherited: ScanProfilePublic | None = cli.registry().inherited_profile(list(parents))
        if inherited is None:
            return None, None
        profile, digest = stored_profile(inherited), inherited.reference_digest
    baseline = cli.registry().behavior_baseline(digest)
    with BehavioralProgress(path.name or str(path)) as progress:
        report = scan_model(path, profile, baseline=baseline, limits=limits, progress=progress)
    return own, report


@dataclass(frozen=True)
class Admission:
    """What a registration's scans found: static, then the model's own profile and the
    behavioral scan (``None`` when it did not run)."""

    static: ScanReport | None
    profile: ScanProfile | None
    behavioral: BehavioralReport | None

    def exit_if_quarantined(self, ref: str, status: Status) -> None:
        """One error line and exit 1 when the registration was quarantined."""
        if status != Status.COMPROMISED:
            return
        if self.behavioral is not None and self.behavioral.verdict is BehaviorVerdict.COMPROMISED:
            why = "the behavioral scan found a backdoor"
        elif self.static is not None and self.static.verdict is ScanVerdict.MALICIOUS:
            why = "the static scan found malicious content"
        else:  # known-malicious content, or a placeholder flagged before its files came
            why = f"its content is known to be malicious or it was flagged (mbom status {ref})"
        render.error_line(
            f"{ref} is quarantined: {why} "
            "(it is recorded as compromised and blocked for every team)"
        )
        raise typer.Exit(1)


def exit_if_quarantined(cli: CliContext, ref: str, status: Status) -> None:
    """One error line and exit 1 when admission quarantined ``ref``, naming which scan did."""
    if status == Status.COMPROMISED:
        report = cli.registry().status_report(ref)
        reasons = [flag.reason for flag in report.flags if flag.active]
        if any(reason.startswith("behavioral scan:") for reason in reasons):
            why = "the behavioral scan found a backdoor"
        elif any(reason.startswith("static scan:") for reason in reasons):
            why = "the static scan found malicious content"
        else:
            why = f"its content is known to be malicious or it was flagged (mbom status {ref})"
        render.error_line(
            f"{ref} is quarantined: {why} "
            "(it is recorded as compromised and blocked for every team)"
        )
        raise typer.Exit(1)


def admission_scans(
    cli: CliContext,
    path: Path,
    *,
    skip_scan: bool,
    reference: Path | None,
    parents: Sequence[str],
    scan_timeout: float | None,
) -> Admission:
    """The scans ``register`` and ``import-hf`` run before they call the registry.

    The static scan first; unless it found malicious content, the behavioral scan
    with ``--reference`` or a profile inherited from ``parents``. With
    ``skip_scan`` neither runs, but a ``--reference`` is still kept as the
    model's profile (for ``mbom rescan`` and ``mbom replay``).
    """
    if skip_scan:
        profile = read_profile_option(reference, path) if reference is not None else None
        return Admission(None, profile, None)
    static = run_static_scan(path)
    if static.verdict is ScanVerdict.MALICIOUS:
        return Admission(static, None, None)
    profile, behavioral = admission_scan(
        cli, path, reference=reference, parents=parents, limits=limits_of(scan_timeout, None)
    )
    return Admission(static, profile, behavioral)


@app.command()
def rescan(
    ctx: typer.Context,
    ref: RefArg,
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[PATH]",
            help="The model's files (default: its --source, when that is a local path).",
        ),
    ] = None,
    timeout: TimeoutOpt = None,
    memory_limit: MemoryOpt = None,
    trigger_out: Annotated[
        Path | None,
        typer.Option("--trigger-out", metavar="DIR", help="Where a recovered trigger is written."),
    ] = None,
    replay_descendants: Annotated[
        bool,
        typer.Option(
            "--replay/--no-replay",
            help="When the verdict flags the model, replay its trigger on the descendants.",
        ),
    ] = True,
    json_: JsonOpt = False,
) -> None:
    """Re-run the behavioral backdoor scan of a registered model and record it.

    The files must be the registered ones (their digest is checked first). The
    scan uses the model's profile (its own or its nearest ancestor's) and the
    clean relatives scanned on the same references as calibration. A
    compromised verdict flags the model (and infects its descendants) with the
    recovered trigger, then replays it on the descendants as mbom replay does
    (--no-replay to skip). Exit 0 clean, 1 suspicious or
    compromised, 2 the scan could not run.
    """
    from scanning.behavioral.api import scan_model

    cli = ctx_of(ctx)
    shown = cli.registry().show(ref, kind=Kind.MODEL)
    if path is None and shown.stored:
        _rescan_stored(
            cli,
            shown.ref,
            shown.name,
            limits_of(timeout, memory_limit),
            trigger_out,
            replay_descendants=replay_descendants,
            json_=json_,
        )
        return
    files = _model_files(ref, path, shown.source)
    manifest = hash_path(files)
    if manifest.digest != shown.digest:
        raise InvalidInput(
            f"{files} is not {shown.ref}: digest {manifest.digest} != {shown.digest}",
            hint=f"see mbom verify {files} {shown.ref}",
        )
    found = cli.registry().profile_of(shown.ref)
    if found is None:
        raise NotFound(
            "scan profile",
            shown.ref,
            message=f"{shown.ref} has no behavioral scan profile, nor has any ancestor",
            hint="register it (or a base) with --reference REF.npz",
        )
    baseline = cli.registry().behavior_baseline(found.reference_digest)
    with BehavioralProgress(shown.ref) as progress:
        report = scan_model(
            files,
            stored_profile(found),
            baseline=baseline,
            limits=limits_of(timeout, memory_limit),
            progress=progress,
        )
    result: BehavioralScanPublic = cli.registry().record_rescan(
        shown.ref, report=report, reference_digest=found.reference_digest
    )
    replayed = (
        replay_after_flag(cli, shown.ref)
        if report.verdict is BehaviorVerdict.COMPROMISED and replay_descendants
        else None
    )
    _finish_rescan(result, report, replayed, shown.name, trigger_out, json_=json_)


def _finish_rescan(
    result: BehavioralScanPublic,
    report: BehavioralReport,
    replayed: tuple[ReplaySummary, list[dict[str, str]]] | None,
    name: str,
    trigger_out: Path | None,
    *,
    json_: bool,
) -> None:
    """Write a recovered trigger, print (or emit) the rescan and its replay, exit by verdict."""
    from scanning.behavioral.api import save_trigger

    trigger_files = None
    if report.trigger is not None and report.verdict is not BehaviorVerdict.CLEAN:
        directory = trigger_out or Path.cwd() / f"{name.replace('/', '_')}-trigger"
        trigger_files = save_trigger(report.trigger, directory.resolve())
    if json_:
        data = result.model_dump(mode="json", exclude={"trigger"})
        data["trigger"] = (
            {"npz": str(trigger_files[0]), "png": str(trigger_files[1])} if trigger_files else None
        )
        data["replay"] = None if replayed is None else replayed[0].model_dump(mode="json")
        render.emit_json(data)
    else:
        _print_rescan(result, report, trigger_files)
        if replayed is not None:
            print_replays(*replayed)
    raise typer.Exit(report.verdict.exit_code)


def _rescan_stored(
    cli: CliContext,
    ref: str,
    name: str,
    limits: Limits,
    trigger_out: Path | None,
    *,
    replay_descendants: bool,
    json_: bool,
) -> None:
    """``mbom rescan N@V`` of a stored version: the registry scans the files it holds."""
    from scanning.behavioral.report import BehavioralReport, TriggerPattern

    with render.err.status(f"rescanning {ref} on the registry's side (sandboxed)…"):
        result = cli.registry().rescan_stored(ref, limits=limits)
    trigger = TriggerPattern.from_npz(result.trigger.data) if result.trigger is not None else None
    report = BehavioralReport.from_json(result.report, trigger=trigger)
    replayed = None
    if report.verdict is BehaviorVerdict.COMPROMISED and replay_descendants:
        replayed = _replay_after_flag_stored(cli, ref)
    _finish_rescan(result, report, replayed, name, trigger_out, json_=json_)


def _replay_after_flag_stored(
    cli: CliContext, ref: str
) -> tuple[ReplaySummary, list[dict[str, str]]] | None:
    try:
        plan: ReplayPlan = cli.registry().replay_plan(ref)
    except NotFound:
        return None
    if not plan.descendants:
        return None
    return cli.registry().replay_stored(ref, threshold=0.5, limits=limits_of(None, None))


def _model_files(ref: str, path: Path | None, source: str | None) -> Path:
    from registry.service.behavior import location_of

    where = path or (Path(found) if (found := location_of(source)) else None)
    if where is None:
        raise InvalidInput(
            f"where are the files of {ref}?", hint="give PATH (its source is not a local path)"
        )
    if not where.exists():
        raise InvalidInput(f"{where} does not exist", hint="give the model's files as PATH")
    return where


#: How a scan's provenance reads in the human output (see ``ScanProvenance``).
PROVENANCE_TEXT = {
    "registry": "scan run by the registry (it calibrates later scans)",
    "client": "scan reported by a client (recorded; it never calibrates other scans)",
}


def _print_rescan(
    result: BehavioralScanPublic, report: BehavioralReport, files: tuple[Path, Path] | None
) -> None:
    from registry.service.behavior import summarise

    render.out.print(f"{result.ref}: {summarise(report)}")
    render.out.print(f"status {result.status}; {PROVENANCE_TEXT.get(result.provenance, '')}")
    if files is not None:
        render.out.print(f"recovered trigger written to {files[0]} and {files[1]}")


@app.command()
def replay(
    ctx: typer.Context,
    ref: RefArg,
    trigger: Annotated[
        Path | None,
        typer.Option(
            "--trigger",
            metavar="T.npz",
            help="An analyst's trigger (arrays mask and pattern) to attach and replay.",
        ),
    ] = None,
    target_class: Annotated[
        int | None,
        typer.Option("--target-class", min=0, help="The class the --trigger sends inputs to."),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            min=0.01,
            max=1.0,
            help="Share of triggered references collapsing to one class that confirms.",
        ),
    ] = 0.5,
    path: Annotated[
        list[str] | None,
        typer.Option(
            "--path",
            metavar="N@V=DIR",
            help="Where a model's files are, when its --source is not a local path (repeat).",
        ),
    ] = None,
    timeout: TimeoutOpt = None,
    memory_limit: MemoryOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Replay a compromised model's backdoor trigger on every descendant.

    Uses the trigger its behavioral scan recovered (or --trigger). Each
    descendant with a scan profile is loaded in the sandbox and fed its clean
    references stamped with the trigger. Up to 8 clean relatives scanned on the
    same references (outside this lineage) are measured too, as the baseline:
    a descendant is confirmed (status confirmed) when at least --threshold of
    its references go to the trigger's class and it beats every clean
    relative's rate by 35 points — a trigger recovered from a clean model fools
    unrelated models too, a backdoor's does not. Otherwise it stays infected
    with the measured rate recorded. Exit 0 when every replay ran, 1 when some
    could not.
    """
    cli = ctx_of(ctx)
    locations = _parse_paths(path or [])
    if trigger is not None:
        if not trigger.is_file():
            raise InvalidInput(f"{trigger} is not a file", hint="give the trigger .npz")
        cli.registry().attach_trigger(ref, data=trigger.read_bytes(), target_class=target_class)
    elif target_class is not None:
        raise InvalidInput("--target-class goes with --trigger")
    limits = limits_of(timeout, memory_limit)
    if locations:  # files named here: replayed here, as a client
        plan: ReplayPlan = cli.registry().replay_plan(ref)
        summary, skipped = run_replay(cli, plan, threshold, limits, locations)
    else:  # stored descendants are read from the registry's store, on its side
        summary, skipped = cli.registry().replay_stored(ref, threshold=threshold, limits=limits)
    if json_:
        data = summary.model_dump(mode="json")
        data["skipped"] = skipped
        render.emit_json(data)
    else:
        print_replays(summary, skipped)
    failed = skipped or any(r.outcome != "measured" for r in summary.results)
    raise typer.Exit(1 if failed else 0)


def run_replay(
    cli: CliContext,
    plan: ReplayPlan,
    threshold: float,
    limits: Limits,
    locations: dict[str, Path] | None = None,
) -> tuple[ReplaySummary, list[dict[str, str]]]:
    """Replay the plan's trigger in the sandbox and record the results in the registry."""
    from registry.admission.behavioral import run_replays
    from scanning.behavioral.report import TriggerPattern

    pattern = TriggerPattern.from_npz(plan.trigger.data)
    results, skipped = run_replays(
        plan,
        pattern,
        threshold=threshold,
        limits=limits,
        locations=locations or {},
        progress=BehavioralProgress,
    )
    summary: ReplaySummary = cli.registry().record_replays(
        plan.source, trigger_id=plan.trigger.id, results=results
    )
    return summary, skipped


def replay_after_flag(
    cli: CliContext, ref: str
) -> tuple[ReplaySummary, list[dict[str, str]]] | None:
    """When a flagged model has a trigger and descendants with a profile: replay it now."""
    try:
        plan: ReplayPlan = cli.registry().replay_plan(ref)
    except NotFound:  # no trigger recovered or attached: nothing to replay
        return None
    if not plan.descendants:
        return None
    return run_replay(cli, plan, 0.5, limits_of(None, None))


def _parse_paths(items: Sequence[str]) -> dict[str, Path]:
    found = {}
    for item in items:
        ref, sep, where = item.partition("=")
        if not sep or not ref or not where:
            raise InvalidInput(f"--path {item!r} is not N@V=DIR")
        found[ref] = Path(where)
    return found


def print_replays(summary: ReplaySummary, skipped: list[dict[str, str]]) -> None:
    """The replay table, the baseline and the notes."""
    rows = [
        (
            r.ref,
            r.role,
            "-" if r.rate is None else f"{r.rate:.0%}",
            "-" if r.collapsed_class is None else r.collapsed_class,
            "yes" if r.confirmed else "no",
            r.error or "",
        )
        for r in summary.results
    ]
    render.table(
        f"trigger of {summary.source} replayed",
        ["model", "role", "rate", "class", "confirmed", "error"],
        rows,
    )
    if summary.baseline_rates:
        rates = ", ".join(f"{rate:.0%}" for rate in summary.baseline_rates)
        render.out.print(f"baseline (clean relatives): {rates}")
    else:
        render.out.print("baseline: no clean relative scanned on the same references")
    for item in skipped:
        render.err.print(f"not replayed on {item['ref']}: {item['why']}")
    for note in summary.notes:
        render.out.print(f"note: {note}")
    render.out.print(
        f"{len(summary.confirmed)} descendants confirmed: {', '.join(summary.confirmed)}"
    )
