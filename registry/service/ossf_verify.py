"""Verifying files against an OpenSSF model-signing bundle, and against the registry.

Built on :mod:`registry.service.artifacts` (the registry's own verification) and
:mod:`registry.service.ossf_signing` (the bundles stored at registration), which
is why it is a module of its own: registration checks and stores bundles, this
module reads them back, so neither imports the other in a circle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from registry import model_signing_format as msf
from registry.errors import NotFound
from registry.manifest import FileCheck, Manifest
from registry.schemas import (
    FileCheckPublic,
    ModelSigningCheck,
    ModelSigningVerifyReport,
    VerifyReport,
)
from registry.service.artifacts import verify
from registry.service.ossf_signing import differing, model_signing_key
from registry.service.refs import resolve
from registry.vocabulary import Kind

__all__ = ["verify_model_signing"]


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
    problems = [f"model-signing {check.state}: {check.path}" for check in differing(checks)]
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
    return model_signing_key(session, resolve(session, registered.ref, kind=Kind.MODEL).id)


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


def _public(check: FileCheck) -> FileCheckPublic:
    return FileCheckPublic(
        path=check.path,
        state=check.state,
        expected_sha256=check.expected_sha256,
        actual_sha256=check.actual_sha256,
    )
