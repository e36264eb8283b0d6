"""Ed25519 signatures over manifest digests.

A publisher signs the UTF-8 bytes of a manifest digest string
(``"sha256:<64 hex>"``, see :attr:`registry.manifest.Manifest.digest`); since
the digest covers every file's path, size and SHA-256, the signature covers the
whole model. Keys are PEM: PKCS8 unencrypted for the private key,
SubjectPublicKeyInfo for the public one (what ``openssl genpkey -algorithm
ed25519`` and ``openssl pkey -pubout`` produce). Signatures are standard base64.

Every key problem (not PEM, not Ed25519, encrypted, unreadable) raises
:class:`~registry.errors.InvalidInput` naming what was wrong; a signature that
does not verify is a ``False`` from :func:`verify_digest`, never an exception.
Signing something that is not a manifest digest is refused with ``InvalidInput``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from registry._hashing import MANIFEST_DIGEST_RE
from registry.errors import InvalidInput

__all__ = [
    "DEFAULT_KEY_NAME",
    "generate_keypair",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "public_key_pem",
    "sign_digest",
    "verify_digest",
    "write_keypair",
]

#: File name prefix used by :func:`write_keypair` when given a directory.
DEFAULT_KEY_NAME = "mbom"

_ED25519_HINT = "create an Ed25519 key pair with `openssl genpkey -algorithm ed25519`"


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as ``(private PKCS8 PEM, public SubjectPublicKeyInfo PEM)``.

    The private key is not encrypted: protect it with file permissions
    (:func:`write_keypair` writes it with mode 0600).
    """
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, public_key_pem(key).encode("ascii")


def write_keypair(path: Path) -> tuple[Path, Path]:
    """Generate a key pair and write ``<prefix>.key`` (mode 0600) and ``<prefix>.pub``.

    ``path`` is the prefix (``keys/alice`` gives ``keys/alice.key`` and
    ``keys/alice.pub``), or an existing directory, where the prefix is
    :data:`DEFAULT_KEY_NAME`. Existing files are never overwritten: if either
    file exists, :class:`~registry.errors.InvalidInput` is raised and nothing is
    written. Returns ``(private key path, public key path)``.
    """
    prefix = path / DEFAULT_KEY_NAME if path.is_dir() else path
    if not prefix.parent.is_dir():
        raise InvalidInput(f"directory {prefix.parent} does not exist", hint="create it first")
    key_path = prefix.with_name(prefix.name + ".key")
    pub_path = prefix.with_name(prefix.name + ".pub")
    for target in (key_path, pub_path):
        if os.path.lexists(target):
            raise _refuse_overwrite(target)
    private_pem, public_pem = generate_keypair()
    _write_new_file(key_path, private_pem, mode=0o600)
    try:
        _write_new_file(pub_path, public_pem, mode=0o644)
    except BaseException:
        # Never leave half a key pair behind: a lone .key invites confusion.
        key_path.unlink()
        raise
    return key_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an unencrypted PKCS8 PEM Ed25519 private key from ``path``.

    Raises :class:`~registry.errors.InvalidInput` when the file cannot be read,
    is not a PEM private key, is encrypted, or holds another kind of key.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read private key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # cryptography's way of saying "encrypted, no password"
        raise InvalidInput(
            f"private key {path} is encrypted; mbom needs an unencrypted key",
            hint="decrypt it with `openssl pkey -in KEY -out PLAIN.key` and chmod 600 it",
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(
            f"{path} is not a PEM private key ('-----BEGIN PRIVATE KEY-----')",
            hint=_ED25519_HINT,
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(
            f"private key {path} is {_describe_key(key)}; it must be Ed25519", hint=_ED25519_HINT
        )
    return key


def load_public_key(pem: bytes | str) -> Ed25519PublicKey:
    """Parse a SubjectPublicKeyInfo PEM Ed25519 public key.

    Raises :class:`~registry.errors.InvalidInput` for a private key given by
    mistake, a text that is not a PEM public key, or a key that is not Ed25519.
    """
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    if b"PRIVATE KEY-----" in data:
        raise InvalidInput(
            "a private key was given where a public key is expected",
            hint="pass the .pub file; the .key file must never leave its owner",
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(
            "not a PEM public key ('-----BEGIN PUBLIC KEY-----')", hint=_ED25519_HINT
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(
            f"the public key is {_describe_key(key)}; it must be Ed25519", hint=_ED25519_HINT
        )
    return key


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The SubjectPublicKeyInfo PEM text of ``key`` (or of a private key's public half)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def key_fingerprint(public_pem: bytes | str) -> str:
    """``"sha256:" + hex SHA-256`` of the 32 raw public key bytes.

    Hashing the raw bytes, not the PEM text, makes the fingerprint independent
    of line endings and of how the PEM was wrapped.
    """
    raw = load_public_key(public_pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def sign_digest(private_key: Ed25519PrivateKey, digest: str) -> str:
    """Base64 Ed25519 signature over the UTF-8 bytes of a manifest digest string.

    ``digest`` must look like ``"sha256:<64 lowercase hex>"``, else
    :class:`~registry.errors.InvalidInput`. Ed25519 is deterministic: the same
    key and digest always give the same signature.
    """
    _check_digest(digest)
    signature = private_key.sign(digest.encode("utf-8"))
    return base64.b64encode(signature).decode("ascii")


def verify_digest(public_pem: bytes | str, digest: str, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is ``public_pem``'s signature over ``digest``.

    A wrong, tampered or malformed signature (bad base64, wrong length) gives
    ``False``, and so does a ``digest`` that is no manifest digest (``""`` for
    an artifact without files, say): nothing of that shape is ever signed. A
    malformed public key is a configuration error, not a forgery, and raises
    :class:`~registry.errors.InvalidInput`.
    """
    key = load_public_key(public_pem)
    if not isinstance(digest, str) or not MANIFEST_DIGEST_RE.fullmatch(digest):
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return False
    try:
        key.verify(signature, digest.encode("utf-8"))
    except InvalidSignature:
        return False
    return True


def _check_digest(digest: str) -> None:
    """Refuse anything that is not a manifest digest string."""
    if not isinstance(digest, str) or not MANIFEST_DIGEST_RE.fullmatch(digest):
        raise InvalidInput(
            f"{digest!r} is not a manifest digest",
            hint="expected 'sha256:' followed by 64 lowercase hex digits",
        )


def _write_new_file(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path`` with ``mode`` and write ``data``, failing if it exists.

    ``O_EXCL`` makes "does not exist yet" and "create" one atomic step, and
    the file has its final mode from the start: the key is never world-readable.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError as exc:
        raise _refuse_overwrite(path) from exc
    with os.fdopen(fd, "wb") as stream:
        os.fchmod(fd, mode)  # the umask may have cleared bits we want (0644 pub)
        stream.write(data)


def _refuse_overwrite(path: Path) -> InvalidInput:
    """The error for a key file that exists already."""
    return InvalidInput(
        f"{path} exists already; refusing to overwrite a key",
        hint="choose another prefix, or move the old key pair away first",
    )


def _describe_key(key: object) -> str:
    """A short human name of a key's algorithm, for error messages."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"an EC key ({key.curve.name})"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"an RSA key ({key.key_size} bits)"
    return f"a {type(key).__name__} key"
