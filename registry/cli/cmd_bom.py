"""``mbom bom``: CycloneDX ML-BOM and SPDX 3 export, CycloneDX import."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from registry import limits
from registry.cli import render
from registry.cli.main import JsonOpt, RefArg, bom_app, ctx_of
from registry.errors import InvalidInput


class BomFormat(StrEnum):
    """Document formats mbom writes."""

    CYCLONEDX = "cyclonedx"
    SPDX3 = "spdx3"


@bom_app.command("export")
def bom_export(
    ctx: typer.Context,
    ref: RefArg,
    format_: Annotated[
        BomFormat, typer.Option("--format", help="cyclonedx (ML-BOM) or spdx3.")
    ] = BomFormat.CYCLONEDX,
    spec_version: Annotated[
        str, typer.Option("--spec-version", help="CycloneDX version: 1.6 or 1.7.")
    ] = "1.6",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write a bill of materials for a model and its whole ancestry.

    CycloneDX: a machine-learning-model component per version with file hashes,
    modelCard and pedigree, datasets as data components, and one vulnerability
    per compromise reaching the model. SPDX 3.0.1: ai_AIPackage and
    dataset_DatasetPackage elements with lineage relationships.
    """
    if format_ is BomFormat.SPDX3:
        document: dict[str, Any] = ctx_of(ctx).registry().export_spdx3(ref)
    else:
        document = ctx_of(ctx).registry().export_cyclonedx(ref, spec_version=spec_version)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror}") from exc
    render.err.print(f"wrote {format_.value} document for {ref} to {output}")


@bom_app.command("import")
def bom_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A CycloneDX JSON document.")],
    team: Annotated[
        str | None,
        typer.Option(
            "--team",
            help="The team the import acts for (default: your token's team); the models it "
            "registers with files are that team's and meet its approvals and blocks.",
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Register the models, datasets, lineage and compromise of a CycloneDX ML-BOM made elsewhere.

    Components without file hashes become placeholders, filled by a later
    registration; importing the same document twice changes nothing. A document
    that builds on a tainted, blocked or (for --team) unapproved base is refused
    whole. A name is group/name; a component without a version is NAME@unversioned
    (NAME@unpinned for a Hugging Face repository). Lineage comes from pedigree,
    the modelCard's datasets and dependencies; what the document reports
    compromised (vulnerabilities) is flagged, with the document as the reason, and
    infects its descendants. Whatever the registry cannot keep is printed as a
    warning (and listed under "warnings" with --json).
    """
    document = limits.read_json_file(file, max_bytes=limits.MAX_BOM_BYTES)
    if not isinstance(document, dict):
        raise InvalidInput(f"{file} is not a CycloneDX document (a JSON object)")
    report = ctx_of(ctx).registry().import_cyclonedx_report(document, team=team)
    if json_:
        render.emit_json(report.model_dump())
        return
    for warning in report.warnings:
        render.err.print(f"mbom: warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if report.registered:
        render.out.print(f"imported {len(report.registered)}: " + ", ".join(report.registered))
    else:
        render.out.print("nothing new: every component is registered already")
    if report.flagged:
        render.out.print(
            f"flagged compromised as the document reports: {', '.join(report.flagged)} "
            "(their descendants are infected)"
        )
