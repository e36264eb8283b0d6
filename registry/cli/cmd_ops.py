"""Commands for operations: deploy, team decisions, teams, keys, tokens, audit, serve, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from registry.cli import render
from registry.cli.main import (
    JsonOpt,
    OverrideOpt,
    ReasonOpt,
    RefArg,
    TeamOpt,
    app,
    audit_app,
    ctx_of,
    keys_app,
    team_app,
    tokens_app,
)
from registry.errors import InvalidInput, PolicyViolation
from registry.vocabulary import DecisionVerdict

if TYPE_CHECKING:
    from registry.identity import Role
    from registry.schemas import AuditVerification, DecisionPublic, DeploymentPublic

EnvOpt = Annotated[str, typer.Option("--env", help="The environment, e.g. prod.")]


def _deployment_rows(items: list[DeploymentPublic]) -> list[tuple[object, ...]]:
    return [
        (d.ref, d.environment, d.team, render.status(d.status), f"{d.created_at:%Y-%m-%d %H:%M}")
        for d in items
    ]


@app.command()
def deploy(
    ctx: typer.Context,
    ref: RefArg,
    env: EnvOpt,
    team: TeamOpt,
    override: OverrideOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Record that a model version runs in an environment for a team.

    Refused for compromised, infected or confirmed models and for models
    blocked for the team, unless an approver overrides (audited).
    """
    result = ctx_of(ctx).registry().deploy(ref, environment=env, team=team, override=override)
    render.emit_json(result) if json_ else render.out.print(
        f"deployed {result.ref} to {env} for {team}"
    )


@app.command()
def undeploy(
    ctx: typer.Context, ref: RefArg, env: EnvOpt, team: TeamOpt, json_: JsonOpt = False
) -> None:
    """End a deployment."""
    result = ctx_of(ctx).registry().undeploy(ref, environment=env, team=team)
    render.emit_json(result) if json_ else render.out.print(
        f"undeployed {result.ref} from {env} for {team}"
    )


@app.command()
def deployments(
    ctx: typer.Context,
    team: Annotated[str | None, typer.Option("--team")] = None,
    env: Annotated[str | None, typer.Option("--env")] = None,
    json_: JsonOpt = False,
) -> None:
    """List active deployments."""
    items = ctx_of(ctx).registry().list_deployments(team=team, environment=env)
    if json_:
        render.emit_json(items)
        return
    render.table(
        "deployments", ["model", "environment", "team", "status", "since"], _deployment_rows(items)
    )


def _decide(
    ctx: typer.Context,
    verdict: DecisionVerdict,
    ref: str,
    team: str,
    reason: str,
    all_versions: bool,
    json_: bool,
) -> None:
    result: DecisionPublic = (
        ctx_of(ctx)
        .registry()
        .decide(ref=ref, team=team, verdict=verdict, reason=reason, all_versions=all_versions)
    )
    if json_:
        render.emit_json(result)
    else:
        render.out.print(f"{verdict}d {result.subject} for team {team}")


AllVersionsOpt = Annotated[
    bool, typer.Option("--all-versions", help="Decide for every version of the name.")
]


@app.command()
def approve(
    ctx: typer.Context,
    ref: RefArg,
    team: TeamOpt,
    reason: ReasonOpt,
    all_versions: AllVersionsOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Approve a base model for a team (approvers of that team)."""
    _decide(ctx, DecisionVerdict.APPROVE, ref, team, reason, all_versions, json_)


@app.command()
def block(
    ctx: typer.Context,
    ref: RefArg,
    team: TeamOpt,
    reason: ReasonOpt,
    all_versions: AllVersionsOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Block a model for a team: registrations on it and deployments of it are refused."""
    _decide(ctx, DecisionVerdict.BLOCK, ref, team, reason, all_versions, json_)


@app.command()
def decisions(
    ctx: typer.Context,
    team: Annotated[str | None, typer.Option("--team")] = None,
    json_: JsonOpt = False,
) -> None:
    """List active approvals and blocks (with --team: that team's and the global ones)."""
    items: list[DecisionPublic] = ctx_of(ctx).registry().list_decisions(team=team)
    if json_:
        render.emit_json(items)
        return
    render.table(
        "decisions",
        ["subject", "team", "verdict", "reason", "by", "origin"],
        [
            (d.subject, d.team or "(every team)", d.verdict, d.reason, d.actor, d.origin)
            for d in items
        ],
    )


@team_app.command("create")
def team_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="TEAM")],
    require_approval: Annotated[
        bool, typer.Option("--require-approval", help="Only approved bases may be built on.")
    ] = False,
    require_registry_scan: Annotated[
        bool,
        typer.Option(
            "--require-registry-scan",
            help="Build on, deploy and pull only models whose files the registry holds "
            "and scanned itself (no --metadata-only bases).",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Create a team (admins)."""
    result = (
        ctx_of(ctx)
        .registry()
        .create_team(
            name=name,
            require_approval=require_approval,
            require_registry_scan=require_registry_scan,
        )
    )
    render.emit_json(result) if json_ else render.out.print(f"created team {result.name}")


@team_app.command("list")
def team_list(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List teams."""
    items = ctx_of(ctx).registry().list_teams()
    if json_:
        render.emit_json(items)
        return
    render.table(
        "teams",
        ["team", "requires approval", "requires registry scan"],
        [(t.name, t.require_approval, t.require_registry_scan) for t in items],
    )


@keys_app.command("generate")
def keys_generate(
    prefix: Annotated[
        Path, typer.Option("--out", metavar="PREFIX", help="Write PREFIX.key and PREFIX.pub.")
    ] = Path("mbom-signing"),
    json_: JsonOpt = False,
) -> None:
    """Generate an Ed25519 key pair (PREFIX.key private, mode 600; PREFIX.pub public)."""
    from registry import signing

    private, public = signing.write_keypair(prefix)
    fingerprint = signing.key_fingerprint(public.read_bytes())
    if json_:
        render.emit_json(
            {"private_key": str(private), "public_key": str(public), "fingerprint": fingerprint}
        )
    else:
        render.out.print(
            f"wrote {private} (keep it secret) and {public}\nfingerprint {fingerprint}"
        )


@keys_app.command("enroll")
def keys_enroll(
    ctx: typer.Context,
    public_key: Annotated[
        Path, typer.Argument(metavar="PUBLIC_KEY", help="A PEM Ed25519 public key.")
    ],
    publisher: Annotated[str, typer.Option("--publisher", help="Whose key it is.")],
    json_: JsonOpt = False,
) -> None:
    """Enrol a publisher's public key: registrations signed by it are accepted (admins)."""
    try:
        pem = public_key.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {public_key}: {exc}") from exc
    result = ctx_of(ctx).registry().enroll_key(publisher=publisher, public_key_pem=pem)
    render.emit_json(result) if json_ else render.out.print(
        f"enrolled {result.fingerprint} for {publisher}"
    )


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    publisher: Annotated[str | None, typer.Option("--publisher")] = None,
    json_: JsonOpt = False,
) -> None:
    """List enrolled keys."""
    items = ctx_of(ctx).registry().list_keys(publisher=publisher)
    if json_:
        render.emit_json(items)
        return
    render.table(
        "keys",
        ["publisher", "fingerprint", "enrolled"],
        [(k.publisher, k.fingerprint, f"{k.created_at:%Y-%m-%d}") for k in items],
    )


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", help="Who will use the token.")],
    role: Annotated[str, typer.Option("--role", help="reader, publisher, approver or admin.")],
    team: Annotated[
        str | None, typer.Option("--team", help="Limit the token's decisions to this team.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Create a bearer token for mbom serve; the secret is shown once (admins)."""
    result = ctx_of(ctx).registry().create_token(user=user, role=_role(role), team=team)
    if json_:
        render.emit_json(result)
    else:
        render.out.print(
            f"token {result.id} for {user} ({role}{', team ' + team if team else ''}):"
        )
        render.out.print(result.token or "")


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List tokens (never their secrets)."""
    items = ctx_of(ctx).registry().list_tokens()
    if json_:
        render.emit_json(items)
        return
    render.table(
        "tokens",
        ["id", "user", "role", "team", "revoked"],
        [(t.id, t.user, t.role, t.team, t.revoked) for t in items],
    )


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(metavar="ID")],
    json_: JsonOpt = False,
) -> None:
    """Revoke a token."""
    result = ctx_of(ctx).registry().revoke_token(token_id)
    render.emit_json(result) if json_ else render.out.print(
        f"revoked token {result.id} of {result.user}"
    )


@audit_app.callback()
def audit_list(
    ctx: typer.Context,
    subject: Annotated[
        str | None, typer.Option("--subject", metavar="N@V", help="Only events about this subject.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 1000,
    json_: JsonOpt = False,
) -> None:
    """List audit events (newest LIMIT, oldest first); `mbom audit verify` checks the chain."""
    if ctx.invoked_subcommand is not None:
        return
    items = ctx_of(ctx).registry().list_events(subject=subject, limit=limit)
    if json_:
        render.emit_json(items)
        return
    render.table(
        "audit",
        ["#", "at", "actor", "operation", "subject", "details"],
        [
            (e.seq, f"{e.at:%Y-%m-%d %H:%M:%S}", e.actor, e.operation, e.subject, e.details)
            for e in items
        ],
    )


CheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        metavar="FILE",
        help="Also check that the chain still holds this `mbom audit checkpoint`'s event.",
    ),
]
PublicKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        metavar="PUB",
        help="The checkpoint must be signed by this Ed25519 public key (PEM).",
    ),
]


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    checkpoint: CheckpointOpt = None,
    public_key: PublicKeyOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Re-check the keyed hash chain; report the first edited, inserted or deleted event (exit 1).

    With --checkpoint, the newest events deleted or the history rewritten up to the
    checkpoint are found too; --public-key pins who must have signed it.
    """
    signer, seq, head = None, None, None
    if checkpoint is not None:
        from registry.audit_checkpoint import read_checkpoint

        signed = read_checkpoint(checkpoint)
        signer = signed.signer(_read_text(public_key) if public_key else None)
        seq, head = signed.checkpoint.seq, signed.checkpoint.head
    result: AuditVerification = (
        ctx_of(ctx).registry().verify_chain(checkpoint_seq=seq, checkpoint_head=head)
    )
    if json_:
        render.emit_json(result.model_dump(mode="json") | {"checkpoint_signer": signer})
    elif result.ok:
        _print_intact(result, signer)
    else:
        render.err.print(f"audit chain broken at event {result.first_bad_seq}: {result.problem}")
    if not result.ok:
        raise typer.Exit(1)


def _print_intact(result: AuditVerification, signer: str | None) -> None:
    keyed = f"keyed with {result.key_id}" if result.key_id else "unkeyed (no audit key configured)"
    render.out.print(f"audit chain intact: {result.events} events, {keyed}, head {result.head}")
    if result.legacy_events:
        render.out.print(
            f"events 1..{result.legacy_events} predate the audit key (plain SHA-256); "
            f"event {result.legacy_events + 1} seals them"
        )
    if result.checkpoint_seq is not None:
        who = f"signed by {signer}" if signer else "unsigned"
        render.out.print(f"checkpoint at event {result.checkpoint_seq} ({who}) still holds")


@audit_app.command("checkpoint")
def audit_checkpoint(
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="FILE", help="Write it here (default: stdout)."),
    ] = None,
    sign_key: Annotated[
        Path | None,
        typer.Option("--sign-key", metavar="KEY", help="Sign it with this Ed25519 private key."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Write a signed statement of the chain's head; keep it elsewhere, check it with verify.

    Refused (exit 1) when the chain is broken.
    """
    from datetime import UTC, datetime

    from registry.audit_checkpoint import Checkpoint, sign_checkpoint

    result: AuditVerification = ctx_of(ctx).registry().verify_chain()
    if not result.ok:
        raise PolicyViolation(
            f"refusing to checkpoint a broken chain (event {result.first_bad_seq}: "
            f"{result.problem})",
            hint="`mbom audit verify` shows where",
        )
    if result.events == 0:
        raise InvalidInput("the audit log is empty: there is nothing to checkpoint")
    statement = Checkpoint(
        seq=result.last_seq,
        head=result.head,
        events=result.events,
        key_id=result.key_id,
        at=datetime.now(UTC).isoformat(),
    )
    document = sign_checkpoint(statement, sign_key).to_json()
    if output is None:
        render.emit_json(document)
        return
    output.write_text(json.dumps(document, indent=2) + "\n")
    if json_:
        render.emit_json({"path": str(output), **document})
    else:
        signed = "signed" if sign_key else "unsigned"
        render.out.print(f"wrote {signed} checkpoint of event {statement.seq} to {output}")


@audit_app.command("anchor")
def audit_anchor(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """Seal audit events written before mbom keyed its log, once, under the audit key (admins)."""
    result: AuditVerification = ctx_of(ctx).registry().anchor_chain()
    if json_:
        render.emit_json(result)
    else:
        render.out.print(
            f"sealed {result.legacy_events} unkeyed events under key {result.key_id}; "
            f"head {result.head}"
        )


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="API processes (stateless).")
    ] = 1,
) -> None:
    """Run the REST API (OpenAPI at /docs); every request needs a bearer token."""
    import uvicorn

    uvicorn.run("registry.api.server:app", host=host, port=port, workers=workers, factory=False)


@app.command()
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="Where to write the demo models (default: a temp dir)."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Play the cascade: train tiny real models, register the lineage, find the backdoor, replay it.

    Uses a fresh registry under the work directory, never your own.
    """
    from registry.demo import run_demo

    run_demo(workdir, as_json=json_)


def _role(value: str) -> Role:
    from registry.identity import Role

    return Role.parse(value)
