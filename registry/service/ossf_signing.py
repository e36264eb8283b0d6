"""OpenSSF model-signing bundles: checked against the files, stored with the model.

A bundle is only ever stored after its signature verified with the given EC
P-256 public key *and* every file it signs matched the manifest being
registered (files it ignores, like ``.git*`` and the signature file itself,
aside). The registry keeps the bundle as JSON with the key's fingerprint, so
``mbom show N@V --model-signing-out FILE`` hands back a signature that
``model_signing verify key`` accepts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from registry import model_signing_format as msf
from registry.errors import InvalidInput, NotFound, SignatureError
from registry.identity import Actor
from registry.manifest import FileCheck, Manifest
from registry.schemas import (
    FileCheckPublic,
    ModelSigningBundlePublic,
    ModelSigningCheck,
    ModelSigningVerifyReport,
    VerifyReport,
)
from registry.service import audit
from registry.service.refs import ref_of, resolve
from registry.tables import Artifact, ModelSigningBundle

__all__ = [
    "CheckedBundle",
    "check_bundle",
    "model_signing_bundle",
    "model_signing_key",
    "store_bundle",
    "verify_model_signing",
]

#: How many differing files an error message names before "and N more".
_NAMED = 5


@dataclass(frozen=True)
class CheckedBundle:
    """A bundle whose signature verified and whose files matched a manifest."""

    bundle: msf.Bundle
    statement: msf.Statement
    fingerprint: str


def check_bundle(
    bundle: Mapping[str, Any] | None, public_key_pem: str | None, manifest: Manifest
) -> CheckedBundle | None:
    """Verify ``bundle`` with the key and against ``manifest``; ``None`` when none is given.

    Raises :class:`~registry.errors.InvalidInput` for a bundle without its
    key (or the reverse), a malformed bundle or key, and
    :class:`~registry.errors.SignatureError` when the signature does not
    verify or a signed file differs from, lacks in or is extra to ``manifest``.
    """
    if bundle is None and public_key_pem is None:
        return None
    if bundle is None or public_key_pem is None:
        raise InvalidInput(
            "a model-signing signature needs its public key, and a public key its signature",
            hint="pass both --model-signing SIGNATURE and --public-key KEY.pem",
        )
    parsed = msf.Bundle.from_json(bundle)
    key = msf.load_public_key(public_key_pem.encode("utf-8"))
    statement = msf.verify_bundle(parsed, key)
    _refuse_differences(msf.check_files(statement, manifest))
    return CheckedBundle(parsed, statement, msf.key_fingerprint(key))


def store_bundle(
    session: Session, artifact: Artifact, checked: CheckedBundle | None, *, actor: Actor
) -> None:
    """Store a checked bundle with ``artifact``, audited, in the caller's transaction."""
    if checked is None:
        return
    session.add(
        ModelSigningBundle(
            artifact_id=artifact.id or 0,
            key_fingerprint=checked.fingerprint,
            bundle=checked.bundle.to_json(),
        )
    )
    audit.record(
        session,
        actor=actor,
        operation="model_signing.store",
        subject=ref_of(artifact),
        details={
            "key": checked.fingerprint,
            "model_name": checked.statement.model_name,
            "files": len(checked.statement.resources),
        },
    )


def model_signing_key(session: Session, artifact_id: int | None) -> str | None:
    """The key fingerprint of the newest bundle stored with an artifact, if any."""
    row = _newest(session, artifact_id)
    return row.key_fingerprint if row else None


def model_signing_bundle(session: Session, ref: str) -> ModelSigningBundlePublic:
    """The newest OpenSSF model-signing bundle stored with a model version."""
    artifact = resolve(session, ref, kind="model")
    row = _newest(session, artifact.id)
    if row is None:
        raise NotFound(
            "a model-signing signature of",
            ref_of(artifact),
            hint="register with --model-signing-key KEY.pem or --model-signing SIG --public-key",
        )
    return ModelSigningBundlePublic(
        ref=ref_of(artifact),
        key_fingerprint=row.key_fingerprint,
        bundle=row.bundle,
        created_at=row.created_at,
    )


def verify_model_signing(
    session: Session,
    manifest: Manifest,
    *,
    bundle: Mapping[str, Any],
    public_key_pem: str,
    ref: str | None = None,
    accept_cleared: bool = False,
) -> ModelSigningVerifyReport:
    """Check files against a model-signing bundle, and against the registry when it knows them.

    The signature must verify (else :class:`~registry.errors.SignatureError`);
    then every file is reported. When ``ref`` is given, or the manifest
    identifies a registered model, the usual verification (files, signature,
    lineage status) is part of the verdict, and the signature must have been
    made with the model-signing key the registry recorded for that version
    (``registered_key``); only then does it stand in for a missing Ed25519
    signature.
    """
    parsed = msf.Bundle.from_json(bundle)
    key = msf.load_public_key(public_key_pem.encode("utf-8"))
    statement = msf.verify_bundle(parsed, key)
    checks = msf.check_files(statement, manifest)
    fingerprint = msf.key_fingerprint(key)
    registered = _registry_verification(session, manifest, ref, accept_cleared)
    recorded = _recorded_key(session, registered)
    problems = [f"model-signing {check.state}: {check.path}" for check in _differing(checks)]
    if registered is not None:
        problems += _registry_problems(registered, fingerprint, recorded)
    return ModelSigningVerifyReport(
        ok=not problems,
        digest=manifest.digest,
        registered_key=recorded,
        model_signing=ModelSigningCheck(
            key_fingerprint=fingerprint,
            model_name=statement.model_name,
            serialization=statement.serialization.to_json(),
            files=[_public(check) for check in checks],
        ),
        registry=registered,
        problems=problems,
    )


def _registry_verification(
    session: Session, manifest: Manifest, ref: str | None, accept_cleared: bool
) -> VerifyReport | None:
    # Imported here: artifacts imports this module for the register hook.
    from registry.service.artifacts import verify

    try:
        return verify(session, manifest, ref=ref, accept_cleared=accept_cleared)
    except NotFound:
        if ref is not None:
            raise
        return None  # files the registry does not know: the signature alone decides


def _recorded_key(session: Session, registered: VerifyReport | None) -> str | None:
    """The model-signing key the registry recorded for the verified version, if any."""
    if registered is None:
        return None
    return model_signing_key(session, resolve(session, registered.ref, kind="model").id)


def _registry_problems(
    registered: VerifyReport, fingerprint: str, recorded: str | None
) -> list[str]:
    """The registry's problems with these files, judged with the signature's key.

    The model-signing signature stands in for an absent Ed25519 signature only
    when it was made with the key the registry recorded for that version: any
    key can sign any files, so a signature by another key proves nothing about
    the registered publisher. A present but invalid Ed25519 signature still fails.
    """
    problems = [f"registry: {p}" for p in registered.problems]
    if recorded is None:
        return problems
    if recorded != fingerprint:
        return [
            *problems,
            f"registry: the model-signing signature was made with key {fingerprint}, but "
            f"{registered.ref} was registered signed with key {recorded}",
        ]
    if registered.signature.state == "unsigned":
        problems.remove("registry: signature unsigned")
    return problems


def _newest(session: Session, artifact_id: int | None) -> ModelSigningBundle | None:
    return session.exec(
        select(ModelSigningBundle)
        .where(ModelSigningBundle.artifact_id == artifact_id)
        .order_by(col(ModelSigningBundle.id).desc())
        .limit(1)
    ).first()


def _differing(checks: Sequence[FileCheck]) -> list[FileCheck]:
    return [check for check in checks if check.state != "match"]


def _refuse_differences(checks: Sequence[FileCheck]) -> None:
    differing = _differing(checks)
    if not differing:
        return
    named = "; ".join(f"{check.state}: {check.path}" for check in differing[:_NAMED])
    more = f" and {len(differing) - _NAMED} more" if len(differing) > _NAMED else ""
    raise SignatureError(
        f"the model-signing signature does not cover these files ({named}{more})",
        hint="sign exactly the files being registered, or register the files that were signed",
    )


def _public(check: FileCheck) -> FileCheckPublic:
    return FileCheckPublic(
        path=check.path,
        state=check.state,
        expected_sha256=check.expected_sha256,
        actual_sha256=check.actual_sha256,
    )
