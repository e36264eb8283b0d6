"""Commands about model and dataset versions: register, show, list, identify, verify."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from registry.cli import model_signing_opts, render
from registry.cli.cmd_behavior import exit_if_quarantined
from registry.cli.cmd_hf import HfHashesOpt, verify_hub_hashes
from registry.cli.cmd_scan import print_report, read_profile_option
from registry.cli.main import (
    JsonOpt,
    OverrideOpt,
    RefArg,
    ReferenceOpt,
    ScanTimeoutOpt,
    app,
    ctx_of,
    dataset_app,
    hash_path,
)
from registry.cli.model_signing_opts import (
    PublicKeyOpt,
    SignatureOpt,
    SigningKeyOpt,
    SigningOutOpt,
)
from registry.cli.progress import TransferProgress
from registry.errors import InvalidInput
from registry.vocabulary import DATASET_USES, Kind, ModelRelation, Relation, Status

if TYPE_CHECKING:
    from registry.schemas import ArtifactPublic, VerifyReport
    from scanning.report import ScanReport

PathArg = Annotated[
    Path,
    typer.Argument(metavar="PATH", help="A model directory (or one file).", show_default=False),
]


#: The dataset uses ``--dataset N@V:USE`` takes, in :class:`Relation`'s order.
_USES = [relation.value for relation in Relation if relation in DATASET_USES]


def parse_dataset(text: str) -> tuple[str, Relation]:
    """``N@V[:use]`` into the reference and its use (default trained_on)."""
    ref, sep, use = text.rpartition(":")
    if not sep or "@" in use:  # no use given (a ':' inside the name is fine)
        return text, Relation.TRAINED_ON
    if use not in _USES:
        raise InvalidInput(
            f"unknown dataset use {use!r} in {text!r}", hint="use " + ", ".join(_USES)
        )
    return ref, Relation(use)


@app.command()
def register(
    ctx: typer.Context,
    path: PathArg,
    name: Annotated[str, typer.Option("--name", help="Model name, e.g. acme/fraud-bert.")],
    version: Annotated[str, typer.Option("--version", help="Version, e.g. 1.0.")],
    parent: Annotated[
        list[str] | None,
        typer.Option("--parent", metavar="N@V", help="A base model (repeat for a merge)."),
    ] = None,
    relation: Annotated[
        ModelRelation | None,
        typer.Option(
            "--relation",
            help="How it was made from its parents (default: finetune, or merge for several).",
            case_sensitive=False,
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            metavar="N@V[:USE]",
            help="A dataset; USE is trained_on (default), fine_tuned_on or evaluated_on.",
        ),
    ] = None,
    publisher: Annotated[
        str | None, typer.Option("--publisher", help="Who publishes it (whose key signs it).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source", metavar="URI", help="Where it comes from: a path, hf://org/name@rev, a URL."
        ),
    ] = None,
    format_: Annotated[
        str | None, typer.Option("--format", help="File format, e.g. safetensors.")
    ] = None,
    team: Annotated[
        str | None,
        typer.Option("--team", help="The registering team (its approvals and blocks apply)."),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            metavar="PRIVATE_KEY",
            help="Sign the manifest digest with this Ed25519 key.",
        ),
    ] = None,
    model_signing_key: SigningKeyOpt = None,
    model_signing_out: SigningOutOpt = None,
    model_signing: SignatureOpt = None,
    public_key: PublicKeyOpt = None,
    allow_duplicate_content: Annotated[
        bool,
        typer.Option(
            "--allow-duplicate-content", help="Record files identical to a registered version."
        ),
    ] = False,
    override: OverrideOpt = None,
    skip_scan: Annotated[
        bool,
        typer.Option(
            "--skip-scan",
            help="With --metadata-only: do not scan the files here (the finding stays "
            "unscanned). Files the registry stores are always scanned by the registry.",
        ),
    ] = False,
    reference: ReferenceOpt = None,
    scan_timeout: ScanTimeoutOpt = None,
    metadata_only: Annotated[
        bool,
        typer.Option(
            "--metadata-only",
            help="Record the model without storing its files (held elsewhere): its scans "
            "are client-reported and never make it clean, and it cannot be pulled.",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Store, scan and register PATH as NAME@VERSION with its lineage.

    Every file goes into the registry's artifact store (streamed, SHA-256
    content-addressed: a file shared by many versions is stored once), and the
    registry scans what it stored: the static scan first, which never loads a
    file: malicious files register the model quarantined (compromised, blocked
    for every team); suspicious ones are refused unless an approver passes
    --override. Once admitted, `mbom pull NAME@VERSION DEST` hands the files out.

    With a behavioral scan profile (--reference, or one inherited from a parent)
    the model is then loaded in a sandboxed subprocess and scanned for
    backdoors: compromised registers it flagged with the recovered trigger as
    evidence; suspicious, or a scan that could not run, needs an --override.

    Every file is SHA-256'd; the manifest digest identifies the content. Refused,
    with nothing written: unknown parents, cycles, duplicate versions, symlinks
    out of PATH, special files, and parents that are tainted, blocked for the
    team or not approved where approval is required.
    """
    if metadata_only:
        _register_metadata_only(
            ctx,
            path,
            skip_scan=skip_scan,
            reference=reference,
            parent=parent or [],
            scan_timeout=scan_timeout,
            signing=(model_signing_key, model_signing_out, model_signing, public_key),
            sign_key=sign_key,
            json_=json_,
            fields=dict(
                name=name,
                version=version,
                parents=parent or [],
                relation=relation,
                datasets=[parse_dataset(d) for d in dataset or []],
                publisher=publisher,
                source=source,
                format=format_,
                team=team,
                allow_duplicate_content=allow_duplicate_content,
                override=override,
            ),
        )
        return
    cli = ctx_of(ctx)
    registry = cli.registry()
    own_profile = read_profile_option(reference, path) if reference is not None else None
    with TransferProgress("storing", path.name or str(path)) as progress:
        stored = registry.store_files(path, progress=progress)
    signed_files = model_signing_opts.for_registration(
        path,
        stored,
        signing_key=model_signing_key,
        out=model_signing_out,
        signature=model_signing,
        public_key=public_key,
    )
    manifest = signed_files.manifest
    signature = _sign_digest(sign_key, manifest.digest)
    with render.err.status(f"admission scans of {name}@{version} on the registry's side…"):
        result = registry.admit_model(
            manifest=manifest,
            profile=own_profile,
            parents=parent or [],
            name=name,
            version=version,
            relation=relation,
            datasets=[parse_dataset(d) for d in dataset or []],
            publisher=publisher,
            source=source,
            format=format_,
            team=team,
            signature=signature,
            allow_duplicate_content=allow_duplicate_content,
            override=override,
            model_signing_bundle=signed_files.bundle,
            model_signing_public_key=signed_files.public_key_pem,
        )
    signed_files.write()
    if json_:
        render.emit_json(result)
    else:
        _print_registration(result, None)
    exit_if_quarantined(cli, result.ref, result.status)


def _sign_digest(sign_key: Path | None, digest: str) -> str | None:
    if sign_key is None:
        return None
    from registry import signing

    return signing.sign_digest(signing.load_private_key(sign_key), digest)


def _register_metadata_only(
    ctx: typer.Context,
    path: Path,
    *,
    skip_scan: bool,
    reference: Path | None,
    parent: list[str],
    scan_timeout: float | None,
    signing: tuple[Path | None, Path | None, Path | None, Path | None],
    sign_key: Path | None,
    json_: bool,
    fields: dict[str, Any],
) -> None:
    """Today's registration for a model held elsewhere: hashed and scanned here, files kept out.

    The scans ran on the user's machine, so the registry records them as
    client-reported: a clean one leaves the finding ``unscanned``.
    """
    from registry.cli.cmd_behavior import admission_scans
    from registry.schemas import ScanProvenance

    scans = admission_scans(
        ctx_of(ctx),
        path,
        skip_scan=skip_scan,
        reference=reference,
        parents=parent,
        scan_timeout=scan_timeout,
    )
    signing_key, out, signature_file, public_key = signing
    signed_files = model_signing_opts.for_registration(
        path,
        hash_path(path),
        signing_key=signing_key,
        out=out,
        signature=signature_file,
        public_key=public_key,
    )
    manifest = signed_files.manifest
    result: ArtifactPublic = (
        ctx_of(ctx)
        .registry()
        .register_model(
            manifest=manifest,
            signature=_sign_digest(sign_key, manifest.digest),
            scan=scans.static,
            model_signing_bundle=signed_files.bundle,
            model_signing_public_key=signed_files.public_key_pem,
            profile=scans.profile,
            behavioral=scans.behavioral,
            provenance=ScanProvenance.CLIENT,
            **fields,
        )
    )
    signed_files.write()
    if json_:
        render.emit_json(result)
    else:
        _print_registration(result, scans.static)
    scans.exit_if_quarantined(result.ref, result.status)


def _print_registration(result: ArtifactPublic, report: ScanReport | None) -> None:
    signed = "signed" if result.signed else "unsigned"
    if result.model_signing_key:
        signed += f", OpenSSF model-signing signed ({result.model_signing_key})"
    render.out.print(
        f"registered {result.ref}: {result.file_count} files, {result.digest}, {signed}, "
        f"status {render.status(result.status)}"
    )
    if report is not None and report.findings:
        print_report(report)


def show_artifact(artifact: ArtifactPublic) -> None:
    """Print one artifact."""
    rows = [
        ("kind", artifact.kind),
        ("status", render.status(artifact.status)),
        ("finding", artifact.finding),
        ("digest", artifact.digest),
        ("files", artifact.file_count),
        ("size", artifact.total_size),
        ("publisher", artifact.publisher),
        ("signed", artifact.signed),
        ("model-sig", artifact.model_signing_key),
        ("source", artifact.source),
        ("team", artifact.team),
        ("parents", ", ".join(f"{p.ref} ({p.relation})" for p in artifact.parents) or "none"),
        ("registered", f"{artifact.created_at:%Y-%m-%d %H:%M} by {artifact.created_by}"),
    ]
    render.out.print(render.bold(artifact.ref))
    for key, value in rows:
        if value is not None:
            render.out.print(f"  {key:<11}{value}")


@app.command()
def show(
    ctx: typer.Context,
    ref: RefArg,
    json_: JsonOpt = False,
    model_signing_out: Annotated[
        Path | None,
        typer.Option(
            "--model-signing-out",
            metavar="FILE",
            help="Also write the model's stored OpenSSF model-signing signature to FILE.",
        ),
    ] = None,
) -> None:
    """Show one model or dataset version."""
    result = ctx_of(ctx).registry().show(ref)
    if model_signing_out is not None:
        model_signing_opts.export(ctx_of(ctx), ref, model_signing_out)
    render.emit_json(result) if json_ else show_artifact(result)


def artifact_rows(items: list[ArtifactPublic]) -> list[tuple[object, ...]]:
    """Table rows for a list of artifacts."""
    return [
        (
            a.ref,
            render.status(a.status),
            a.finding,
            a.team,
            ", ".join(p.ref for p in a.parents),
            (a.digest or "")[:19],
        )
        for a in items
    ]


@app.command("models")
def list_models(
    ctx: typer.Context,
    status: Annotated[
        Status | None, typer.Option("--status", help="Only this effective status.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 500,
    json_: JsonOpt = False,
) -> None:
    """List registered model versions (and, below them, the versions being admitted)."""
    registry = ctx_of(ctx).registry()
    items = registry.list_artifacts(kind=Kind.MODEL, status=status, limit=limit)
    if json_:
        render.emit_json(items)
        return
    render.table(
        "models", ["model", "status", "finding", "team", "parents", "digest"], artifact_rows(items)
    )
    waiting = registry.list_pending()
    if waiting:
        render.out.print(
            Text(
                f"{len(waiting)} more pending admission, not usable yet: "
                + ", ".join(p.ref for p in waiting[:5])
                + (" ..." if len(waiting) > 5 else "")
                + " (mbom admissions)",
                style="dim",
            )
        )


@app.command("admissions")
def list_admissions(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List the versions being admitted: files stored, the registry's scans running.

    A pending version is not registered yet: it can be neither pulled, deployed
    nor named as a --parent until its admission ends. One marked stalled was left
    by a process that died mid-admission (a killed server): register the same
    version again to resume it.
    """
    waiting = ctx_of(ctx).registry().list_pending()
    if json_:
        render.emit_json(waiting)
        return
    render.table(
        "pending admission",
        ["version", "step", "since", "by", "team", "attempt", "state"],
        [
            (
                p.ref,
                p.step,
                p.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                p.user,
                p.team,
                p.attempt,
                Text("stalled", style="bold red") if p.stalled else "running",
            )
            for p in waiting
        ],
    )


@app.command()
def identify(ctx: typer.Context, path: PathArg, json_: JsonOpt = False) -> None:
    """Name the registered version whose files are exactly PATH (by manifest digest)."""
    manifest = model_signing_opts.without_signature_file(path, hash_path(path))
    found: list[ArtifactPublic] = ctx_of(ctx).registry().identify(manifest)
    if json_:
        render.emit_json(
            {"digest": manifest.digest, "matches": [a.model_dump(mode="json") for a in found]}
        )
    elif found:
        for artifact in found:
            render.out.print(
                f"{artifact.ref} ({artifact.kind}, status {render.status(artifact.status)})"
            )
    else:
        render.err.print(f"no registered version has these files ({manifest.digest})")
    if not found:
        raise typer.Exit(1)


@app.command()
def verify(
    ctx: typer.Context,
    path: PathArg,
    ref: Annotated[
        str | None,
        typer.Argument(
            metavar="[N@V]", help="Compare with this version (default: find it by digest)."
        ),
    ] = None,
    accept_cleared: Annotated[
        bool, typer.Option("--accept-cleared", help="Also pass when the lineage status is cleared.")
    ] = False,
    allow_unsigned: Annotated[
        bool,
        typer.Option(
            "--allow-unsigned",
            help="Pass a version registered without a signature (a bad signature still fails).",
        ),
    ] = False,
    model_signing: SignatureOpt = None,
    public_key: PublicKeyOpt = None,
    hf_hashes: HfHashesOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Prove PATH is a registered, signed model of clean lineage; exit 0 only then.

    Re-hashes every file and reports each as match, mismatch, missing or extra,
    checks the signature against the publisher's enrolled key and the lineage
    status (--allow-unsigned: a version registered without --sign-key passes too).
    Use it to gate a pipeline. With --model-signing SIG --public-key KEY,
    checks the OpenSSF model-signing signature and every file it signs too.
    With --hf-hashes FILE, checks PATH against the Hugging Face Hub's published
    per-file hashes (SHA-256 for LFS files, git blob SHA-1 for the others) only.
    """
    if hf_hashes is not None:
        combined = model_signing is not None or public_key is not None or accept_cleared
        verify_hub_hashes(path, hf_hashes, ref=ref, json_=json_, combined=combined)
        return
    if model_signing is not None or public_key is not None:
        model_signing_opts.verify(
            ctx_of(ctx),
            path,
            signature=model_signing,
            public_key=public_key,
            ref=ref,
            accept_cleared=accept_cleared,
            json_=json_,
        )
        return
    manifest = model_signing_opts.without_signature_file(path, hash_path(path))
    report: VerifyReport = (
        ctx_of(ctx)
        .registry()
        .verify(manifest, ref=ref, accept_cleared=accept_cleared, allow_unsigned=allow_unsigned)
    )
    if json_:
        render.emit_json(report)
    else:
        _print_verification(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_verification(report: VerifyReport) -> None:
    files = [
        (c.path, c.state, (c.expected_sha256 or "")[:16], (c.actual_sha256 or "")[:16])
        for c in report.files
        if c.state != "match"
    ]
    matched = sum(1 for c in report.files if c.state == "match")
    render.out.print(f"{report.ref}: {matched}/{len(report.files)} files match")
    if files:
        render.table("differences", ["file", "state", "expected", "actual"], files)
    sig = report.signature
    render.out.print(
        f"signature: {sig.state}"
        + (f" ({sig.publisher}, {sig.fingerprint})" if sig.fingerprint else "")
    )
    render.out.print(f"lineage status: {render.status(report.status)}")
    verdict = "OK" if report.ok else "FAILED: " + "; ".join(report.problems)
    style = "green" if report.ok else "bold red"
    render.out.print(Text("verification ") + Text(verdict, style=style))
    if "signature unsigned" in report.problems:
        render.out.print(
            "  it was registered without a signature: register with --sign-key KEY to sign it, "
            "or pass --allow-unsigned to accept unsigned models"
        )


@dataset_app.command("register")
def dataset_register(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Dataset name.")],
    version: Annotated[str, typer.Option("--version", help="Dataset version.")],
    path: Annotated[
        Path | None, typer.Argument(metavar="[PATH]", help="The dataset files (or give --digest).")
    ] = None,
    digest: Annotated[
        str | None,
        typer.Option(
            "--digest", metavar="sha256:HEX", help="Register by a known digest instead of PATH."
        ),
    ] = None,
    source: Annotated[str | None, typer.Option("--source", metavar="URI")] = None,
    json_: JsonOpt = False,
) -> None:
    """Register a dataset version from its files or a known digest."""
    if (path is None) == (digest is None):
        raise InvalidInput("give either a dataset PATH or --digest, not both or neither")
    manifest = hash_path(path) if path is not None else None
    result: ArtifactPublic = (
        ctx_of(ctx)
        .registry()
        .register_dataset(
            name=name,
            version=version,
            digest=digest,
            manifest=manifest,
            source=source,
        )
    )
    if json_:
        render.emit_json(result)
    else:
        render.out.print(f"registered dataset {result.ref}: {result.digest}")


@dataset_app.command("list")
def dataset_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 500,
    json_: JsonOpt = False,
) -> None:
    """List registered dataset versions."""
    items = ctx_of(ctx).registry().list_artifacts(kind=Kind.DATASET, limit=limit)
    if json_:
        render.emit_json(items)
        return
    render.table(
        "datasets",
        ["dataset", "status", "finding", "team", "parents", "digest"],
        artifact_rows(items),
    )


@dataset_app.command("show")
def dataset_show(ctx: typer.Context, ref: RefArg, json_: JsonOpt = False) -> None:
    """Show one dataset version."""
    result = ctx_of(ctx).registry().show(ref, kind=Kind.DATASET)
    render.emit_json(result) if json_ else show_artifact(result)


@app.command()
def link(
    ctx: typer.Context,
    ref: RefArg,
    parent: Annotated[
        list[str] | None, typer.Option("--parent", metavar="N@V", help="A base model to add.")
    ] = None,
    relation: Annotated[
        ModelRelation | None,
        typer.Option(
            "--relation", case_sensitive=False, help="How it was made from the new parent."
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", metavar="N@V[:USE]", help="A dataset to add.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Add a base model or dataset to a registered model's lineage (recorded late).

    Refused when it would make the lineage cyclic. The model and its
    descendants are recomputed: a compromised new ancestor infects them.
    """
    result: ArtifactPublic = (
        ctx_of(ctx)
        .registry()
        .add_parents(
            ref,
            parents=parent or [],
            relation=relation,
            datasets=[parse_dataset(d) for d in dataset or []],
        )
    )
    if json_:
        render.emit_json(result)
    else:
        render.out.print(
            f"{result.ref} now descends from "
            f"{', '.join(p.ref for p in result.parents)}; status {render.status(result.status)}"
        )
