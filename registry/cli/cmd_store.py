"""``mbom pull``, and ``mbom store verify`` / ``gc``: the artifact store's upkeep (on its host)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from registry.cli import render
from registry.cli.main import JsonOpt, OverrideOpt, RefArg, app, ctx_of, store_app
from registry.errors import ConfigurationError

if TYPE_CHECKING:
    from registry.client import LocalRegistry


def _local(ctx: typer.Context) -> LocalRegistry:
    from registry.client import LocalRegistry

    registry = ctx_of(ctx).registry()
    if not isinstance(registry, LocalRegistry):
        raise ConfigurationError(
            "the store is looked after on the registry's host, not through the API",
            hint="run it there without --server/MBOM_SERVER, with the server's "
            "MBOM_DATABASE_URL and MBOM_STORE_URL",
        )
    return registry


@store_app.command("verify")
def verify(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Re-hash every stored blob; list missing or corrupt ones and the versions they break.

    Exit 0 when every blob is intact, 1 when any is missing or corrupt.
    """
    from registry.db import unit_of_work
    from registry.service.stored import verify_store

    registry = _local(ctx)
    with unit_of_work(registry.engine) as session, render.err.status("re-hashing blobs…"):
        report = verify_store(session, store=registry.store)
    if json_:
        render.emit_json(asdict(report))
    else:
        render.out.print(
            f"{report.checked} blobs ({report.bytes} bytes) checked in {report.store}: "
            f"{len(report.problems)} problems"
        )
        if report.problems:
            render.table(
                "problems",
                ["blob", "state", "versions it breaks"],
                [(p.digest, p.state, ", ".join(p.versions) or "none") for p in report.problems],
            )
    if report.problems:
        raise typer.Exit(1)


@store_app.command("gc")
def gc(
    ctx: typer.Context,
    grace_hours: Annotated[
        float,
        typer.Option(
            "--grace-hours",
            min=0,
            help="Spare blobs uploaded or claimed this recently (an upload whose "
            "registration is still to come).",
        ),
    ] = 1.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would go; remove nothing.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Remove blobs that no registered version uses (admins); safe beside a running register."""
    from registry.service.stored import collect_garbage

    registry = _local(ctx)
    report = collect_garbage(
        registry.engine,
        actor=registry.actor,
        store=registry.store,
        grace=timedelta(hours=grace_hours),
        dry_run=dry_run,
    )
    if json_:
        render.emit_json(asdict(report))
        return
    verb = "would remove" if dry_run else "removed"
    stale = (
        f"; removed {report.stale_uploads} stale partial uploads" if report.stale_uploads else ""
    )
    render.out.print(
        f"{verb} {len(report.removed)} blobs ({report.bytes} bytes) from {report.store}{stale}"
    )


@app.command()
def pull(
    ctx: typer.Context,
    ref: RefArg,
    dest: Annotated[
        Path,
        typer.Argument(metavar="DEST", help="A new (or empty) directory to write the files to."),
    ],
    team: Annotated[
        str | None,
        typer.Option("--team", help="The team pulling (its approvals and blocks apply)."),
    ] = None,
    override: OverrideOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Download a vetted model version from the registry's store into DEST.

    Refused (nothing written) for a version that is compromised, infected or
    confirmed, blocked for the team or along its lineage, not approved where
    the team requires approval, held elsewhere (--metadata-only) or not scanned
    by the registry; an approver's --override REASON is audited. Every pull is
    recorded: the day an ancestor is flagged, `mbom descendants N@V --deployed`
    lists who pulled it. Every byte is SHA-256-checked while written; a file
    that does not match is an error, never a silent copy.
    """
    from registry.cli.progress import TransferProgress

    with TransferProgress("pulling", ref) as progress:
        ticket = (
            ctx_of(ctx).registry().pull(ref, dest, team=team, override=override, progress=progress)
        )
    if json_:
        render.emit_json({**ticket.model_dump(mode="json"), "dest": str(dest)})
        return
    size = sum(f.size for f in ticket.files)
    render.out.print(
        f"pulled {ticket.ref}: {len(ticket.files)} files, {size} bytes, {ticket.digest} "
        f"into {dest} (verified)"
    )
