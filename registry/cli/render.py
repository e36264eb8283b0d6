"""Human and JSON output for the CLI."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from registry.errors import MbomError
from registry.vocabulary import Status


def console(*, stderr: bool = False, markup: bool = False) -> Console:
    """A console that does not squeeze tables into 80 columns when piped."""
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 200
    # markup=False: names and reasons are user data and are printed literally;
    # styling goes through Text objects (status(), error_line()).
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width, markup=markup)


out = console()
err = console(stderr=True)

STATUS_STYLE: dict[str, str] = {
    Status.CLEAN: "green",
    Status.CLEARED: "cyan",
    Status.INFECTED: "bold yellow",
    Status.CONFIRMED: "bold red",
    Status.COMPROMISED: "bold red",
}


def emit_json(value: BaseModel | Sequence[BaseModel] | Any) -> None:
    """Print a view (or a list of views) as JSON on stdout."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, list | tuple):
        data = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    else:
        data = value
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def status(text: str) -> Text:
    """A status word with its colour (in an f-string it is the plain word)."""
    return Text(text, style=STATUS_STYLE.get(text, ""))


def bold(text: str) -> Text:
    """Bold text."""
    return Text(text, style="bold")


def error_line(message: str) -> None:
    """The one stderr line of a failed command."""
    err.print(Text("mbom: error: ", style="bold red") + Text(message))


def error_json(error: MbomError) -> None:
    """A failed command's error as one JSON object on stderr (the command had --json)."""
    document = {
        "code": error.code,
        "title": type(error).__name__,
        "detail": error.diagnostics(),
        "message": error.message,
        "hint": error.hint,
    }
    sys.stderr.write(json.dumps(document, ensure_ascii=False) + "\n")


def path(steps: Sequence[str]) -> str:
    """A lineage path, ancestor first."""
    return " -> ".join(steps)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table, or a one-line note when it is empty."""
    if not rows:
        out.print(Text(f"{title or 'nothing'}: none", style="dim"))
        return
    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(_cell(cell) for cell in row))
    out.print(grid)


def _cell(value: Any) -> Text:
    if isinstance(value, Text):
        return value
    return Text("" if value is None else str(value))
