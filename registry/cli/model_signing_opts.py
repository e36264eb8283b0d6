"""The OpenSSF model-signing options of ``register``, ``verify`` and ``show``.

``register --model-signing-key KEY.pem`` signs the files as ``model_signing sign
key`` would and writes the bundle (default ``PATH/model.sig``);
``register --model-signing SIG --public-key KEY.pem`` attaches a bundle made
elsewhere. Either way the signature file is left out of the manifest that is
registered and signed, and the registry stores the bundle after checking it.
``verify PATH --model-signing SIG --public-key KEY.pem`` checks files against a
bundle, and against the registry when it knows them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from registry.cli import render
from registry.cli.main import hash_path
from registry.errors import InvalidInput
from registry.manifest import Manifest

if TYPE_CHECKING:
    from registry.cli.context import CliContext
    from registry.schemas import FileCheckPublic, ModelSigningVerifyReport

SignatureOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-signing",
        metavar="SIGNATURE",
        help="An OpenSSF model-signing signature (Sigstore bundle, key method) of PATH.",
    ),
]
PublicKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--public-key", metavar="KEY.pem", help="The EC P-256 public key of --model-signing."
    ),
]
SigningKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-signing-key",
        metavar="KEY.pem",
        help="Also sign PATH in the OpenSSF model-signing format with this EC P-256 key.",
    ),
]
SigningOutOpt = Annotated[
    Path | None,
    typer.Option(
        "--model-signing-out",
        metavar="FILE",
        help="Where --model-signing-key writes the signature (default: PATH/model.sig).",
    ),
]


@dataclass(frozen=True)
class Registration:
    """What a registration carries of model signing: the manifest to register, the bundle."""

    manifest: Manifest
    bundle: dict[str, Any] | None = None
    public_key_pem: str | None = None
    write_to: Path | None = None

    def write(self) -> None:
        """Write the new signature file, once the registry accepted it."""
        if self.write_to is not None and self.bundle is not None:
            from registry import model_signing_format as msf

            msf.write_bundle(msf.Bundle.from_json(self.bundle), self.write_to)
            render.err.print(f"wrote the OpenSSF model-signing signature to {self.write_to}")


def for_registration(
    path: Path,
    manifest: Manifest,
    *,
    signing_key: Path | None,
    out: Path | None,
    signature: Path | None,
    public_key: Path | None,
) -> Registration:
    """The manifest (signature file left out) and the bundle to register with it."""
    if signing_key is not None and signature is not None:
        raise InvalidInput("give --model-signing-key (sign now) or --model-signing (attach)")
    if out is not None and signing_key is None:
        raise InvalidInput("--model-signing-out needs --model-signing-key")
    if signing_key is not None:
        return _sign(path, manifest, signing_key, out or default_signature_path(path))
    if signature is None and public_key is None:
        return Registration(manifest)
    signature, key_pem = _signature_and_key(signature, public_key)
    from registry import model_signing_format as msf

    bundle = msf.read_bundle(signature)
    kept = msf.without_path(manifest, msf.path_inside(path, signature))
    return Registration(kept, bundle.to_json(), key_pem)


def without_signature_file(path: Path, manifest: Manifest) -> Manifest:
    """Leave out the default signature file ``PATH/model.sig`` when it is a model-signing bundle.

    ``register --model-signing-key`` writes it next to the files it signs, so
    the registered manifest never lists it; counting it as an extra file would
    fail ``verify`` and ``identify`` on exactly the files that were registered.
    """
    signature = default_signature_path(path)
    if not path.is_dir() or not signature.is_file():
        return manifest
    from registry import model_signing_format as msf

    try:
        msf.read_bundle(signature)
    except InvalidInput:  # not a signature: an ordinary file of the model, kept
        return manifest
    render.err.print(f"leaving out {signature}: an OpenSSF model-signing signature")
    return msf.without_path(manifest, msf.path_inside(path, signature))


def default_signature_path(path: Path) -> Path:
    """``PATH/model.sig`` for a directory, ``PATH.sig`` next to a single-file model."""
    if path.is_dir():
        return path / "model.sig"
    return path.with_name(path.name + ".sig")


def verify(
    cli: CliContext,
    path: Path,
    *,
    signature: Path | None,
    public_key: Path | None,
    ref: str | None,
    accept_cleared: bool,
    json_: bool,
) -> None:
    """``mbom verify PATH --model-signing SIG --public-key KEY``: report, exit 1 unless ok."""
    signature, key_pem = _signature_and_key(signature, public_key)
    from registry import model_signing_format as msf

    bundle = msf.read_bundle(signature)
    manifest = msf.without_path(hash_path(path), msf.path_inside(path, signature))
    report: ModelSigningVerifyReport = cli.registry().verify_model_signing(
        manifest,
        bundle=bundle.to_json(),
        public_key_pem=key_pem,
        ref=ref,
        accept_cleared=accept_cleared,
    )
    if json_:
        render.emit_json(report)
    else:
        print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def export(cli: CliContext, ref: str, out: Path) -> None:
    """Write the bundle stored with ``ref`` to ``out``."""
    stored = cli.registry().model_signing_bundle(ref)
    try:
        out.write_text(json.dumps(stored.bundle, separators=(",", ":")), encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror}") from exc
    render.err.print(f"wrote the model-signing signature of {stored.ref} to {out}")


def print_report(report: ModelSigningVerifyReport) -> None:
    """The human form of a model-signing verification."""
    check = report.model_signing
    render.out.print(
        f"model-signing signature: valid ({check.key_fingerprint}), model {check.model_name!r}: "
        f"{_matched(check.files)} files match"
    )
    _print_differences(check.files, "signed")
    registered = report.registry
    if registered is None:
        render.out.print(Text("registry: these files are not a registered version", style="dim"))
    else:
        sig = registered.signature
        render.out.print(
            Text(
                f"registry: {registered.ref}: {_matched(registered.files)} files match, "
                f"Ed25519 signature {sig.state}, lineage status "
            )
            + render.status(registered.status)
        )
        _print_differences(registered.files, "registered")
        if report.registered_key is not None:
            same = report.registered_key == check.key_fingerprint
            render.out.print(
                Text(f"registry: model-signing key recorded: {report.registered_key} ")
                + Text(
                    "(this signature's)" if same else "(not this signature's)",
                    style="" if same else "bold red",
                )
            )
    verdict = "OK" if report.ok else "FAILED: " + "; ".join(report.problems)
    style = "green" if report.ok else "bold red"
    render.out.print(Text("model-signing verification ") + Text(verdict, style=style))


def _matched(files: list[FileCheckPublic]) -> str:
    return f"{sum(1 for c in files if c.state == 'match')}/{len(files)}"


def _print_differences(files: list[FileCheckPublic], expected: str) -> None:
    differing = [
        (c.path, c.state, (c.expected_sha256 or "")[:16], (c.actual_sha256 or "")[:16])
        for c in files
        if c.state != "match"
    ]
    if differing:
        render.table("differences", ["file", "state", expected, "actual"], differing)


def _sign(path: Path, manifest: Manifest, key_path: Path, out: Path) -> Registration:
    from registry import model_signing_format as msf

    key = msf.load_private_key(key_path)
    if not out.parent.is_dir():
        raise InvalidInput(f"directory {out.parent} does not exist", hint="create it first")
    inside = msf.path_inside(path, out)
    kept = msf.without_path(manifest, inside)
    bundle = msf.sign_manifest(
        kept,
        key,
        model_name=Path(os.path.abspath(path)).name,
        ignore_paths=(*msf.GIT_PATHS, *([inside] if inside else [])),
        allow_symlinks=msf.has_symlinks(path),
        single_file=not path.is_dir(),
    )
    public_pem = msf.public_key_pem(key.public_key())
    return Registration(kept, bundle.to_json(), public_pem, write_to=out)


def _signature_and_key(signature: Path | None, public_key: Path | None) -> tuple[Path, str]:
    if signature is None or public_key is None:
        raise InvalidInput(
            "--model-signing and --public-key go together",
            hint="pass --model-signing SIGNATURE --public-key KEY.pem",
        )
    from registry import model_signing_format as msf

    return signature, msf.public_key_pem(msf.read_public_key(public_key))
