"""Hugging Face commands: ``mbom import-hf`` and ``mbom verify PATH --hf-hashes FILE``.

Both work offline: ``import-hf`` reads a snapshot directory or the local cache
(``HF_HUB_OFFLINE=1`` is set before ``huggingface_hub`` is imported), and
``--hf-hashes`` reads the Hub's published hashes from a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from registry.cli import render
from registry.cli.cmd_scan import print_report, read_profile_option
from registry.cli.main import (
    JsonOpt,
    OverrideOpt,
    ReferenceOpt,
    ScanTimeoutOpt,
    app,
    ctx_of,
    hash_path,
)
from registry.cli.progress import TransferProgress
from registry.errors import InvalidInput

if TYPE_CHECKING:
    from registry.hf import HubVerifyReport
    from registry.schemas import HfImportResult

HfHashesOpt = Annotated[
    Path | None,
    typer.Option(
        "--hf-hashes",
        metavar="FILE",
        help=(
            "Check PATH against the Hub's per-file hashes instead of the registry: a JSON file "
            "saved from HfApi().model_info(repo, files_metadata=True)."
        ),
    ),
]


@app.command("import-hf")
def import_hf(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(
            metavar="SNAPSHOT_DIR_OR_REPO_ID",
            help="A snapshot directory, or org/name to find in the local Hugging Face cache.",
            show_default=False,
        ),
    ],
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="Branch, tag or commit hash of a repo id (default: main)."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="The Hugging Face cache (default: HF_HUB_CACHE or ~/.cache)."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="org/name of a snapshot directory outside the cache."),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option("--version", help="Register under this version (default: the commit hash)."),
    ] = None,
    team: Annotated[
        str | None,
        typer.Option("--team", help="The registering team (its approvals and blocks apply)."),
    ] = None,
    publisher: Annotated[str | None, typer.Option("--publisher", help="Who publishes it.")] = None,
    override: OverrideOpt = None,
    skip_scan: Annotated[
        bool,
        typer.Option(
            "--skip-scan",
            help="With --metadata-only: do not scan the files here (the finding stays "
            "unscanned). Files the registry stores are always scanned by the registry.",
        ),
    ] = False,
    allow_duplicate_content: Annotated[
        bool,
        typer.Option(
            "--allow-duplicate-content",
            help="Record files identical to a registered version (e.g. a Hub mirror of it).",
        ),
    ] = False,
    reference: ReferenceOpt = None,
    scan_timeout: ScanTimeoutOpt = None,
    metadata_only: Annotated[
        bool,
        typer.Option(
            "--metadata-only",
            help="Record the snapshot without storing its files: its scans are "
            "client-reported and it cannot be pulled.",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Register a Hugging Face model with the lineage its model card declares, offline.

    Reads README.md's base_model, base_model_relation (inferred as the Hub does
    when absent: several bases merge, adapter files adapter, GGUF or a
    quantization_config quantized, else finetune), datasets, license and
    pipeline_tag. Bases and datasets the registry does not know become
    placeholders (NAME@unpinned, source hf://NAME) that a later registration
    fills. The files go into the registry's store (cache symlinks may lead into
    the repository's blobs/ only): the registry becomes the internal mirror of the
    Hub models it vetted, and scans them as register does: statically, then, with
    --reference, behaviorally in the sandbox (a backdoor registers it flagged; a
    suspicious or failed scan needs --override).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is first imported
    from registry.hf import locate_snapshot, plan_import

    snapshot = locate_snapshot(target, revision=revision, cache_dir=cache_dir)
    plan = plan_import(snapshot, name=name, version=version)
    for warning in plan.warnings:
        render.err.print(f"mbom: warning: {warning}")
    if not metadata_only:
        own = read_profile_option(reference, snapshot.path) if reference is not None else None
        registry = ctx_of(ctx).registry()
        with TransferProgress("storing", plan.ref) as progress:
            stored = registry.store_files(
                snapshot.path, progress=progress, allowed_roots=tuple(snapshot.allowed_roots)
            )
        with render.err.status(f"admission scans of {plan.ref} on the registry's side…"):
            imported = registry.admit_hf(
                plan,
                manifest=stored,
                profile=own,
                team=team,
                publisher=publisher,
                override=override,
                allow_duplicate_content=allow_duplicate_content,
            )
        _finish(ctx, imported, json_)
        return
    manifest = hash_path(snapshot.path, allowed_roots=snapshot.allowed_roots)
    from registry.cli.cmd_behavior import admission_scans
    from registry.schemas import ScanProvenance

    # Only the snapshot's own profile: the card names its bases without versions.
    scans = admission_scans(
        ctx_of(ctx),
        snapshot.path,
        skip_scan=skip_scan,
        reference=reference,
        parents=[],
        scan_timeout=scan_timeout,
    )
    result: HfImportResult = (
        ctx_of(ctx)
        .registry()
        .import_hf(
            plan,
            manifest=manifest,
            scan=scans.static,
            team=team,
            publisher=publisher,
            override=override,
            allow_duplicate_content=allow_duplicate_content,
            profile=scans.profile,
            behavioral=scans.behavioral,
            provenance=ScanProvenance.CLIENT,
        )
    )
    if json_:
        render.emit_json(result)
    else:
        _print_import(result)
        if scans.static is not None and scans.static.findings:
            print_report(scans.static)
    scans.exit_if_quarantined(result.model.ref, result.model.status)


def _finish(ctx: typer.Context, result: HfImportResult, json_: bool) -> None:
    """Print a stored import; exit 1 with one line when admission quarantined it."""
    from registry.cli.cmd_behavior import exit_if_quarantined

    if json_:
        render.emit_json(result)
    else:
        _print_import(result)
    exit_if_quarantined(ctx_of(ctx), result.model.ref, result.model.status)


def _print_import(result: HfImportResult) -> None:
    model = result.model
    render.out.print(
        f"registered {model.ref}: {model.file_count} files, {model.digest}, "
        f"status {render.status(model.status)}"
    )
    render.out.print(
        f"  source     {model.source}" + (f" ({result.revision})" if result.revision else "")
    )
    if result.filled_placeholder:
        render.out.print(f"  filled     the placeholder {result.filled_placeholder}")
    if result.relation:
        render.out.print(f"  relation   {result.relation} ({result.relation_basis})")
    for link in result.links:
        created = " (placeholder created)" if link.created else ""
        render.out.print(f"  {link.relation:<10} {link.ref}{created}")
        if link.note:
            render.out.print(f"             {link.note}")
    for key, value in (("license", result.license), ("pipeline", result.pipeline_tag)):
        if value:
            render.out.print(f"  {key:<10} {value}")


def verify_hub_hashes(
    path: Path, hashes: Path, *, ref: str | None, json_: bool, combined: bool = False
) -> None:
    """``verify PATH --hf-hashes FILE``: compare PATH with the Hub's hashes; exit 1 on a difference.

    No registry is consulted: this proves the files are the ones the Hub
    publishes for that revision, file by file.
    """
    if ref is not None or combined:
        raise InvalidInput(
            "--hf-hashes checks PATH against the Hub's hashes only",
            hint="verify against the registry or a signature in a separate mbom verify",
        )
    from registry.hf import HubFiles, blobs_dir_of, check_against_hub

    published = HubFiles.read(hashes)
    blobs = blobs_dir_of(path.resolve())
    manifest = hash_path(path, allowed_roots=(blobs,) if blobs is not None else ())
    report = check_against_hub(path, manifest, published)
    if json_:
        render.emit_json(report.to_json())
    else:
        _print_hub_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_hub_report(report: HubVerifyReport) -> None:
    matched = sum(1 for check in report.files if check.state == "match")
    what = " ".join(filter(None, (report.repo_id, report.revision))) or "the Hub's hashes"
    render.out.print(f"{what}: {matched}/{len(report.files)} files match")
    rows = [
        (c.path, c.state, c.algorithm, (c.expected or "")[:16], (c.actual or "")[:16])
        for c in report.files
        if c.state != "match"
    ]
    if rows:
        render.table("differences", ["file", "state", "hash", "expected", "actual"], rows)
    verdict = "OK" if report.ok else "FAILED: " + "; ".join(report.problems)
    style = "green" if report.ok else "bold red"
    render.out.print(Text("verification ") + Text(verdict, style=style))
