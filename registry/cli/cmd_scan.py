"""``mbom scan``: the static serialization scan, on its own or before registration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from registry.cli import render
from registry.cli.main import JsonOpt, app
from registry.errors import InvalidInput

if TYPE_CHECKING:
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
    json_: JsonOpt = False,
) -> None:
    """Statically scan a model for code that would run when it is loaded.

    Nothing is loaded or executed: pickles are read opcode by opcode, archives,
    NumPy, joblib, Keras, ONNX, safetensors and GGUF files are parsed.
    Exit 0 clean, 1 suspicious or malicious findings, 2 could not scan.
    """
    report = run_static_scan(path)
    if json_:
        render.emit_json(report.to_json())
    else:
        print_report(report)
    raise typer.Exit(report.verdict.exit_code)
