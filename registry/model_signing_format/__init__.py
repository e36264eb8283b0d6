"""The OpenSSF model-signing format, *key* method: produce and verify its signatures.

A signature is a Sigstore bundle (JSON, ``application/vnd.dev.sigstore.bundle.v0.3+json``)
holding a DSSE envelope (``application/vnd.in-toto+json``) whose payload is an in-toto
statement v1 listing every file of the model with its SHA-256; the envelope is
signed with ECDSA P-256/SHA-256 over its PAE encoding. It is what ``model_signing
sign key`` writes and ``model_signing verify key`` accepts, implemented here with
``cryptography`` alone (the ``model_signing`` package is a test dependency only).

* :func:`sign_manifest` turns an mbom :class:`~registry.manifest.Manifest` into a
  signed :class:`Bundle`; :func:`write_bundle` / :func:`read_bundle` move it to and
  from a signature file.
* :func:`verify_bundle` checks the signature with a public key and returns the
  signed :class:`Statement`; :func:`check_files` compares it with the files, one
  :class:`~registry.manifest.FileCheck` per path.

Covered: the ``files`` serialization with SHA-256, single-file and directory models,
``ignore_paths`` (git files and the signature file), the public-key ``hint``.
Not covered: the Sigstore keyless and certificate methods (certificates,
transparency-log entries), PKCS #11, the ``shards`` serialization, BLAKE2/BLAKE3,
P-384/P-521 keys and the pre-1.0 (v0.2) predicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from registry import limits
from registry.errors import InvalidInput, MalformedBundle, SignatureError
from registry.manifest import Manifest
from registry.model_signing_format._bundle import BUNDLE_MEDIA_TYPE, Bundle
from registry.model_signing_format._dsse import DsseSignature, Envelope, PaeSigner, PaeVerifier
from registry.model_signing_format._files import (
    GIT_PATHS,
    check_files,
    has_symlinks,
    is_ignored,
    path_inside,
    resources_of,
    without_path,
)
from registry.model_signing_format._keys import (
    EcKeySigner,
    EcKeyVerifier,
    key_fingerprint,
    key_hint,
    load_private_key,
    load_public_key,
    public_key_pem,
    read_public_key,
)
from registry.model_signing_format._statement import (
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    Resource,
    Serialization,
    Statement,
)

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "DEFAULT_SIGNATURE_NAME",
    "GIT_PATHS",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "Bundle",
    "DsseSignature",
    "EcKeySigner",
    "EcKeyVerifier",
    "Envelope",
    "PaeSigner",
    "PaeVerifier",
    "Resource",
    "Serialization",
    "Statement",
    "check_files",
    "has_symlinks",
    "is_ignored",
    "key_fingerprint",
    "key_hint",
    "load_private_key",
    "load_public_key",
    "path_inside",
    "public_key_pem",
    "read_bundle",
    "read_public_key",
    "sign_manifest",
    "verify_bundle",
    "without_path",
    "write_bundle",
]

#: The DSSE payload type of a model-signing statement.
PAYLOAD_TYPE = "application/vnd.in-toto+json"

#: The signature file's name ``model_signing sign`` writes by default.
DEFAULT_SIGNATURE_NAME = "model.sig"


def sign_manifest(
    manifest: Manifest,
    private_key: ec.EllipticCurvePrivateKey,
    *,
    model_name: str,
    ignore_paths: Sequence[str] = GIT_PATHS,
    allow_symlinks: bool = False,
    single_file: bool = False,
) -> Bundle:
    """Sign ``manifest`` as ``model_signing sign key`` signs the same files.

    Entries under ``ignore_paths`` are left out and the paths are recorded in
    the statement (pass the signature file's path when it lies inside the
    model). ``single_file`` names the only entry ``"."``, as model_signing does
    for a model that is one file. Raises :class:`~registry.errors.InvalidInput`
    when nothing is left to sign or the key is not EC P-256.
    """
    signer = EcKeySigner(private_key)
    if single_file and len(manifest.entries) != 1:
        raise InvalidInput("a single-file model has exactly one manifest entry")
    resources = resources_of(manifest, ignore_paths=ignore_paths, single_file=single_file)
    if not resources:
        raise InvalidInput(
            "no file is left to sign once the ignored paths are left out",
            hint="model_signing ignores " + ", ".join(ignore_paths),
        )
    serialization = Serialization(allow_symlinks=allow_symlinks, ignore_paths=tuple(ignore_paths))
    statement = Statement.for_resources(model_name, resources, serialization)
    envelope = Envelope.sign(statement.to_payload(), PAYLOAD_TYPE, signer)
    return Bundle(envelope=envelope, key_hint=key_hint(signer.public_key))


def verify_bundle(bundle: Bundle, public_key: ec.EllipticCurvePublicKey) -> Statement:
    """The statement ``bundle`` carries, once its signature verifies with ``public_key``.

    Raises :class:`~registry.errors.SignatureError` when the bundle names
    another key or the signature does not verify, and
    :class:`~registry.errors.MalformedBundle` for a wrong payload type, several
    signatures or a payload that is no model-signing statement.
    """
    verifier = EcKeyVerifier(public_key)
    fingerprint = key_fingerprint(public_key)
    if bundle.key_hint is not None and bundle.key_hint != key_hint(public_key):
        raise SignatureError(
            f"the model-signing signature was made with another key (sha256:{bundle.key_hint}), "
            f"not the given public key {fingerprint}",
            hint="pass the public key of the private key that signed it",
        )
    envelope = bundle.envelope
    if envelope.payload_type != PAYLOAD_TYPE:
        raise MalformedBundle(f"its payloadType is {envelope.payload_type!r}, not {PAYLOAD_TYPE}")
    if len(envelope.signatures) != 1:
        raise MalformedBundle(f"it carries {len(envelope.signatures)} signatures, not one")
    if not envelope.verified_by(verifier):
        raise SignatureError(
            f"the model-signing signature does not verify with public key {fingerprint}",
            hint="the signed statement was altered, or another key signed it",
        )
    return Statement.from_payload(envelope.payload)


def read_bundle(path: Path) -> Bundle:
    """Read and parse a signature file (no verification)."""
    try:
        size = Path(path).stat().st_size
        if size > limits.MAX_BUNDLE_BYTES:
            raise MalformedBundle(
                f"it is {size:,} bytes, more than the {limits.MAX_BUNDLE_BYTES:,} allowed",
                source=str(path),
                hint="a signature file is a few kilobytes: check the path",
            )
        text = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read model-signing signature {path}: {exc.strerror}") from exc
    try:
        return Bundle.from_text(text)
    except MalformedBundle as exc:
        raise MalformedBundle(exc.problem, source=str(path), hint=exc.hint) from exc


def write_bundle(bundle: Bundle, path: Path) -> None:
    """Write ``bundle`` to ``path`` (replacing a previous signature file)."""
    try:
        Path(path).write_text(bundle.to_text(), encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"cannot write model-signing signature {path}: {exc.strerror}",
            hint="choose another --model-signing-out",
        ) from exc
