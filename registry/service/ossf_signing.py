"""OpenSSF model-signing bundles: checked against the files, stored with the model.

A bundle is only ever stored after its signature verified with the given EC
P-256 public key *and* every file it signs matched the manifest being
registered (files it ignores, like ``.git*`` and the signature file itself,
aside). The registry keeps the bundle as JSON with the key's fingerprint, so
``mbom show N@V --model-signing-out FILE`` hands back a signature that
``model_signing verify key`` accepts. Verifying files against a bundle later is
:mod:`registry.service.ossf_verify`'s.
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
    ModelSigningBundlePublic,
)
from registry.service import audit
from registry.service.refs import ref_of, resolve
from registry.tables import Artifact, ModelSigningBundle
from registry.vocabulary import Kind

__all__ = [
    "CheckedBundle",
    "check_bundle",
    "differing",
    "model_signing_bundle",
    "model_signing_key",
    "store_bundle",
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
    artifact = resolve(session, ref, kind=Kind.MODEL)
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


def _newest(session: Session, artifact_id: int | None) -> ModelSigningBundle | None:
    return session.exec(
        select(ModelSigningBundle)
        .where(ModelSigningBundle.artifact_id == artifact_id)
        .order_by(col(ModelSigningBundle.id).desc())
        .limit(1)
    ).first()


def differing(checks: Sequence[FileCheck]) -> list[FileCheck]:
    """The checks of files that do not match the signed statement."""
    return [check for check in checks if check.state != "match"]


def _refuse_differences(checks: Sequence[FileCheck]) -> None:
    changed = differing(checks)
    if not changed:
        return
    named = "; ".join(f"{check.state}: {check.path}" for check in changed[:_NAMED])
    more = f" and {len(changed) - _NAMED} more" if len(changed) > _NAMED else ""
    raise SignatureError(
        f"the model-signing signature does not cover these files ({named}{more})",
        hint="sign exactly the files being registered, or register the files that were signed",
    )
