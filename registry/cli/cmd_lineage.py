"""Commands about compromise and lineage: flag, unflag, clear, status, descendants, ancestors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from registry.cli import render
from registry.cli.context import CliContext
from registry.cli.main import DepthOpt, JsonOpt, ReasonOpt, RefArg, app, ctx_of
from registry.errors import InvalidInput
from registry.vocabulary import Kind

if TYPE_CHECKING:
    from registry.schemas import (
        BlastRadius,
        DeploymentPublic,
        LineageEntry,
        PullPublic,
        ReplayPublic,
        StatusChange,
        StatusReport,
    )


def _print_change(verb: str, change: StatusChange) -> None:
    render.out.print(f"{verb} {change.ref}: status {render.status(change.status)}")
    shown = len(change.changed)
    more = f" (the nearest {shown} listed)" if change.changed_total > shown else ""
    render.table(
        f"{change.changed_total} descendants changed status{more}",
        ["descendant", "status", "path"],
        [(e.ref, render.status(e.status), render.path(e.path)) for e in change.changed],
    )
    _print_deployments(
        f"{len(change.deployments)} deployments descend from {change.ref}", change.deployments
    )


@app.command()
def flag(
    ctx: typer.Context,
    ref: RefArg,
    reason: ReasonOpt,
    trigger: Annotated[
        Path | None,
        typer.Option(
            "--trigger",
            metavar="T.npz",
            help="The backdoor trigger (arrays mask and pattern) the advisory gives.",
        ),
    ] = None,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay/--no-replay",
            help="Replay the model's trigger on its descendants (when it has one).",
        ),
    ] = True,
    json_: JsonOpt = False,
) -> None:
    """Mark a model or dataset compromised; every descendant becomes infected (admins).

    Prints the descendants whose status changed and every deployment that
    descends from it, each with its lineage path. The flagged model is blocked
    for every team. When the model has a backdoor trigger — recovered by its
    behavioral scan, or given with --trigger — it is then replayed on every
    descendant with a scan profile, as mbom replay does: those that really
    inherited it become confirmed.
    """
    from registry.cli.cmd_behavior import print_replays, replay_after_flag

    cli = ctx_of(ctx)
    if trigger is not None and not trigger.is_file():
        raise InvalidInput(f"{trigger} is not a file", hint="give the trigger .npz")
    data = trigger.read_bytes() if trigger is not None else None
    change = cli.registry().flag(ref, reason=reason, trigger=data or None)
    replayed = replay_after_flag(cli, change.ref) if replay and _is_model(cli, change.ref) else None
    if json_:
        shown = change.model_dump(mode="json")
        shown["replay"] = None if replayed is None else replayed[0].model_dump(mode="json")
        render.emit_json(shown)
        return
    _print_change("flagged", change)
    if replayed is not None:
        print_replays(*replayed)


def _is_model(cli: CliContext, ref: str) -> bool:
    return bool(cli.registry().show(ref).kind == Kind.MODEL)


@app.command()
def unflag(ctx: typer.Context, ref: RefArg, reason: ReasonOpt, json_: JsonOpt = False) -> None:
    """Withdraw a flag (a false positive); descendants are recomputed (admins)."""
    change = ctx_of(ctx).registry().unflag(ref, reason=reason)
    render.emit_json(change) if json_ else _print_change("unflagged", change)


@app.command()
def clear(ctx: typer.Context, ref: RefArg, reason: ReasonOpt, json_: JsonOpt = False) -> None:
    """Clear an inherited infection with evidence, e.g. a full retrain (approvers).

    Covers the compromised sources reaching the model now; a new compromise
    reaching it later makes it infected again.
    """
    change = ctx_of(ctx).registry().clear(ref, reason=reason)
    render.emit_json(change) if json_ else _print_change("cleared", change)


@app.command()
def status(ctx: typer.Context, ref: RefArg, json_: JsonOpt = False) -> None:
    """Own finding, effective status, and every compromised ancestor with the path."""
    report: StatusReport = ctx_of(ctx).registry().status_report(ref)
    if json_:
        render.emit_json(report)
        return
    render.out.print(render.bold(report.ref), f"({report.kind})")
    render.out.print(f"  finding  {report.finding}")
    render.out.print(f"  status   {render.status(report.status)}")
    if report.kind == Kind.MODEL:
        held = "yes" if report.stored else "no (metadata-only: its scans are client-reported)"
        render.out.print(f"  stored   {held}")
    if report.scan is not None:
        findings = report.scan.get("findings", [])
        render.out.print(
            f"  scan     {report.scan.get('verdict')} ({len(findings)} findings; "
            f"by the {report.scan.get('provenance', 'client')})"
        )
        for item in findings[:10]:
            where = item["file"] + (f"!{item['member']}" if item.get("member") else "")
            render.out.print(f"           {item['severity']}: {item['detail']} in {where}")
    if report.behavioral_scan is not None:
        scanned = report.behavioral_scan
        render.out.print(
            f"  behavior {scanned.get('verdict')} (score {scanned.get('score')}; "
            f"by the {scanned.get('provenance', 'client')})"
        )
    if report.pulls:
        render.out.print(f"  pulled   {report.pulls} times (it or a descendant); newest:")
        for pulled in report.pulled_by[:5]:
            render.out.print(f"           {_pull_line(pulled)}")
    for item in report.flags:
        state = "active" if item.active else f"withdrawn by {item.resolved_by}: {item.resolution}"
        render.out.print(
            f"  flag     {item.reason} (by {item.actor}, {item.created_at:%Y-%m-%d %H:%M}; {state})"
        )
    render.table(
        "compromised ancestors",
        ["source", "kind", "depth", "path", "reason", "cleared", "trigger replay"],
        [
            (
                s.source,
                s.source_kind,
                s.depth,
                render.path(s.path),
                "; ".join(s.reasons),
                "yes" if s.cleared else "",
                _replay_cell(s.replay),
            )
            for s in report.sources
        ],
    )


def _rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.0%}"


def _replay_cell(replay: ReplayPublic | None) -> str:
    if replay is None:
        return ""
    if replay.rate is None:
        return f"could not run: {replay.error}"
    verdict = "confirmed" if replay.confirmed else "not confirmed"
    return f"{replay.rate:.0%} to class {replay.collapsed_class} ({verdict})"


@app.command()
def descendants(
    ctx: typer.Context,
    ref: RefArg,
    deployed: Annotated[
        bool, typer.Option("--deployed", help="List the deployments of it and its descendants.")
    ] = False,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="With --deployed: count the deployments by team, environment and status "
            "and list only the nearest (--limit); for bases with thousands of deployments.",
        ),
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="With --summary: how many nearest to list.")
    ] = 20,
    team: Annotated[
        str | None, typer.Option("--team", help="Only this team's models (or deployments).")
    ] = None,
    depth: DepthOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Every descendant with depth and path; --deployed: which deployments are hit.

    mbom descendants hub/base@1 --deployed --summary   how far a base reaches, in brief
    """
    if summary and not deployed:
        raise InvalidInput("--summary goes with --deployed", hint="add --deployed")
    if summary:
        radius: BlastRadius = (
            ctx_of(ctx).registry().blast_radius(ref, depth=depth, team=team, limit=limit)
        )
        if json_:
            render.emit_json(radius)
            return
        _print_blast_radius(radius)
        return
    if deployed:
        found: list[DeploymentPublic] = (
            ctx_of(ctx).registry().deployed_descendants(ref, depth=depth, team=team)
        )
        if json_:
            render.emit_json(found)
            return
        _print_deployments(f"{len(found)} deployments descend from {ref}", found)
        _print_pulls(ctx_of(ctx).registry().pulls_of(ref), ref)
        return
    entries: list[LineageEntry] = ctx_of(ctx).registry().descendants(ref, depth=depth, team=team)
    _print_entries(f"{len(entries)} descendants of {ref}", entries, json_)


def _print_blast_radius(radius: BlastRadius) -> None:
    render.table(
        f"{radius.deployments} deployments of {radius.versions} versions descend from {radius.ref}",
        ["team", "environment", "status", "deployments"],
        [
            (g.team, g.environment, render.status(g.status), str(g.deployments))
            for g in radius.groups
        ],
    )
    if radius.nearest:
        _print_deployments(f"the nearest {len(radius.nearest)}", radius.nearest)
    if radius.pulls:
        render.out.print(f"{radius.pulls} pulls of it or its descendants; the newest:")
        for pulled in radius.pulled_by:
            render.out.print(f"  {_pull_line(pulled)}")


def _pull_line(pulled: PullPublic) -> str:
    team = f" for {pulled.team}" if pulled.team else ""
    forced = f" (override: {pulled.override})" if pulled.override else ""
    return (
        f"{pulled.ref} by {pulled.user}{team} at {pulled.created_at:%Y-%m-%d %H:%M}, "
        f"now {pulled.status}{forced}"
    )


def _print_pulls(pulls: list[PullPublic], ref: str) -> None:
    """Who pulled it or a descendant: copies outside the registry's deployments."""
    if not pulls:
        return
    render.table(
        f"{len(pulls)} pulls of {ref} or its descendants (copies that may run anywhere)",
        ["model", "pulled by", "team", "when", "status now", "override"],
        [
            (
                p.ref,
                p.user,
                p.team or "",
                f"{p.created_at:%Y-%m-%d %H:%M}",
                render.status(p.status),
                p.override or "",
            )
            for p in pulls
        ],
    )


def _print_deployments(title: str, deployments: list[DeploymentPublic]) -> None:
    render.table(
        title,
        ["model", "environment", "team", "status", "path"],
        [
            (d.ref, d.environment, d.team, render.status(d.status), render.path(d.path))
            for d in deployments
        ],
    )


@app.command()
def ancestors(
    ctx: typer.Context, ref: RefArg, depth: DepthOpt = None, json_: JsonOpt = False
) -> None:
    """Every ancestor (base models and datasets) with depth and path."""
    entries: list[LineageEntry] = ctx_of(ctx).registry().ancestors(ref, depth=depth)
    _print_entries(f"{len(entries)} ancestors of {ref}", entries, json_)


def _print_entries(title: str, entries: list[LineageEntry], json_: bool) -> None:
    if json_:
        render.emit_json(entries)
        return
    replayed = any(e.replay_rate is not None for e in entries)
    render.table(
        title,
        [
            "model",
            "kind",
            "depth",
            "status",
            "team",
            "path",
            *(["replay rate"] if replayed else []),
        ],
        [
            (
                e.ref,
                e.kind,
                e.depth,
                render.status(e.status),
                e.team,
                render.path(e.path),
                *(
                    []
                    if not replayed
                    else ["" if e.replay_rate is None else f"{e.replay_rate:.0%}"]
                ),
            )
            for e in entries
        ],
    )


@app.command()
def check(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Recompute every status from scratch and check digests and state against the audit log.

    Exit 1 if the stored state differs: a status, a digest that is not its
    manifest's or its registration's, or flags, clearances or decisions that
    are not what the audit log recorded.
    """
    problems: list[str] = ctx_of(ctx).registry().find_inconsistencies()
    if json_:
        render.emit_json({"ok": not problems, "problems": problems})
    elif problems:
        for problem in problems:
            render.err.print(problem)
    else:
        render.out.print("stored statuses equal a from-scratch recomputation")
    if problems:
        raise typer.Exit(1)
