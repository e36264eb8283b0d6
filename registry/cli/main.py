"""``mbom``: the command line, thin over the domain operations.

Exit codes: 0 success; 1 a refused operation, a failed verification, a
finding; 2 a usage error (bad flags, malformed references).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from registry.cli import render
from registry.cli.context import CliContext
from registry.cli.progress import HashingProgress
from registry.errors import InvalidInput, MbomError
from registry.manifest import Manifest, hash_tree

app = typer.Typer(
    name="mbom",
    help=(
        "Model bill of materials and lineage registry.\n\n"
        "Record each model's base models, datasets, file hashes and signatures; scan every "
        "model on admission (serialization exploits; backdoors, in a sandbox); flag a "
        "compromised base or dataset and see every infected descendant and deployment, with the "
        "path, and replay its trigger to confirm which really inherited it. Without --server, "
        "mbom works on a local SQLite registry (MBOM_HOME or MBOM_DATABASE_URL move it)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
dataset_app = typer.Typer(help="Register, list and show dataset versions.", no_args_is_help=True)
keys_app = typer.Typer(help="Ed25519 signing keys: generate, enroll, list.", no_args_is_help=True)
team_app = typer.Typer(help="Teams: create and list.", no_args_is_help=True)
tokens_app = typer.Typer(
    help="API tokens for mbom serve: create, list, revoke.", no_args_is_help=True
)
audit_app = typer.Typer(
    help="The hash-chained audit log: list events, verify the chain.", invoke_without_command=True
)
app.add_typer(dataset_app, name="dataset")
app.add_typer(keys_app, name="keys")
app.add_typer(team_app, name="team")
app.add_typer(tokens_app, name="tokens")
app.add_typer(audit_app, name="audit")
bom_app = typer.Typer(help="Bills of materials: CycloneDX ML-BOM and SPDX 3.", no_args_is_help=True)
app.add_typer(bom_app, name="bom")
store_app = typer.Typer(
    help="The artifact store holding every stored version's files: verify, collect.",
    no_args_is_help=True,
)
app.add_typer(store_app, name="store")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RefArg = Annotated[
    str, typer.Argument(metavar="N@V", help="A model or dataset version, NAME@VERSION.")
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")]
TeamOpt = Annotated[str, typer.Option("--team", help="The team.")]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        metavar="REF.npz",
        help="Clean reference inputs (x float32, y int64): the model's behavioral scan "
        "profile, inherited by its descendants.",
    ),
]
ScanTimeoutOpt = Annotated[
    float | None,
    typer.Option("--scan-timeout", metavar="S", help="Behavioral scan wall-time limit (300)."),
]
DepthOpt = Annotated[
    int | None, typer.Option("--depth", min=1, help="Only relatives within K edges.")
]
OverrideOpt = Annotated[
    str | None,
    typer.Option(
        "--override", metavar="REASON", help="Approvers only: proceed despite the policy (audited)."
    ),
]


def ctx_of(ctx: typer.Context) -> CliContext:
    """The shared CLI context."""
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj


#: Commands that only read: on an embedded registry that does not exist they are refused
#: (a mistyped MBOM_HOME must not answer "nothing registered" from a new, empty registry).
READ_COMMANDS = frozenset(
    {
        "admissions",
        "ancestors",
        "check",
        "decisions",
        "deployments",
        "descendants",
        "identify",
        "models",
        "pull",
        "replay",
        "show",
        "status",
        "verify",
    }
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        render.out.print(f"mbom {version('mbom')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option("--server", envvar="MBOM_SERVER", help="Use a running mbom serve at URL."),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="MBOM_TOKEN", help="Bearer token for --server.")
    ] = None,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print mbom's version and exit.",
        ),
    ] = False,
) -> None:
    ctx.obj = CliContext(
        server=server, token=token, must_exist=ctx.invoked_subcommand in READ_COMMANDS
    )


def hash_path(path: Path, *, allowed_roots: Sequence[Path] = ()) -> Manifest:
    """Hash a file tree with a progress bar on a terminal (see ``hash_tree`` for the roots)."""
    with HashingProgress(path.name or str(path)) as progress:
        return hash_tree(path, progress=progress, allowed_roots=allowed_roots)


def main() -> None:
    """Entry point: run the app, turning domain errors into one line on stderr."""
    try:
        code = app(standalone_mode=False)
    except MbomError as error:
        if "--json" in sys.argv[1:]:
            render.error_json(error)
        else:
            render.error_line(_printable(error.diagnostics()))
        sys.exit(2 if isinstance(error, InvalidInput) else 1)
    except UnicodeEncodeError as error:
        # An argument holding bytes that are not UTF-8 (a lone surrogate after decoding)
        # met an encoder before the database could refuse it, e.g. the HTTP client's.
        render.error_line(
            _printable(
                f"an argument is not valid UTF-8 text: {error.object[error.start : error.end]!r}"
            )
        )
        sys.exit(2)
    except typer.Abort:
        render.err.print("mbom: aborted")
        sys.exit(1)
    except (typer.Exit, SystemExit) as done:
        code = done.exit_code if isinstance(done, typer.Exit) else done.code
        sys.exit(code)
    except Exception as error:
        # typer ships its own copy of click's exceptions, so match them by behaviour.
        exit_code = getattr(error, "exit_code", None)
        if callable(getattr(error, "show", None)) and isinstance(exit_code, int):
            error.show()  # type: ignore[attr-defined]
            sys.exit(exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)


def _printable(message: str) -> str:
    """The message with anything the terminal cannot encode escaped."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")
