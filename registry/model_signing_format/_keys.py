"""EC P-256 keys in PEM, as the OpenSSF model-signing *key* method uses them.

The private key is PKCS8 (or traditional ``EC PRIVATE KEY``) PEM, unencrypted;
the public key SubjectPublicKeyInfo PEM: what ``openssl ecparam -name
prime256v1 -genkey`` and ``openssl ec -pubout`` produce. Signatures are ECDSA
over SHA-256, DER-encoded, as ``model_signing sign key`` writes them.

Every key problem (unreadable, not PEM, encrypted, not EC P-256) raises
:class:`~registry.errors.InvalidInput` naming what was wrong.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.errors import InvalidInput

_CURVE = "secp256r1"
_P256_HINT = (
    "create an EC P-256 key pair with `openssl ecparam -name prime256v1 -genkey -noout "
    "| openssl pkcs8 -topk8 -nocrypt -out key.pem` and `openssl ec -in key.pem -pubout`"
)


class EcKeySigner:
    """Signs bytes with an EC P-256 private key (ECDSA, SHA-256, DER signature)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        _require_p256(private_key.curve, what="the private key")
        self._key = private_key

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half, to name the key in the bundle."""
        return self._key.public_key()

    def sign(self, message: bytes) -> bytes:
        """The DER ECDSA signature of ``message`` (randomised: differs on every call)."""
        return self._key.sign(message, ec.ECDSA(hashes.SHA256()))


class EcKeyVerifier:
    """Checks ECDSA P-256/SHA-256 signatures with one public key."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey) -> None:
        _require_p256(public_key.curve, what="the public key")
        self.public_key = public_key

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` (DER) is this key's signature over ``message``."""
        try:
            self.public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read an unencrypted PEM EC P-256 private key from ``path``."""
    data = _read(path, what="private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # cryptography's way of saying "encrypted, no password"
        raise InvalidInput(
            f"private key {path} is encrypted; mbom needs an unencrypted key",
            hint="decrypt it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out PLAIN.pem`",
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(f"{path} is not a PEM private key", hint=_P256_HINT) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput(
            f"private key {path} is not an EC key; it must be EC P-256", hint=_P256_HINT
        )
    _require_p256(key.curve, what=f"private key {path}")
    return key


def load_public_key(pem: bytes, *, source: str = "the public key") -> ec.EllipticCurvePublicKey:
    """Parse a SubjectPublicKeyInfo PEM EC P-256 public key (``source`` names it in errors)."""
    if b"PRIVATE KEY-----" in pem:
        raise InvalidInput(
            f"{source} is a private key, where a public key is expected",
            hint="pass the public key (`openssl ec -in key.pem -pubout`)",
        )
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(
            f"{source} is not a PEM public key ('-----BEGIN PUBLIC KEY-----')", hint=_P256_HINT
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidInput(f"{source} is not an EC key; it must be EC P-256", hint=_P256_HINT)
    _require_p256(key.curve, what=source)
    return key


def read_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read a PEM EC P-256 public key from ``path``."""
    return load_public_key(_read(path, what="public key"), source=f"public key {path}")


def public_key_pem(key: ec.EllipticCurvePublicKey) -> str:
    """The SubjectPublicKeyInfo PEM text of ``key``, as cryptography writes it."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def key_hint(key: ec.EllipticCurvePublicKey) -> str:
    """The bundle's ``publicKey.hint``: hex SHA-256 of the key's SPKI PEM (model_signing's)."""
    return hashlib.sha256(public_key_pem(key).encode("ascii")).hexdigest()


def key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """``"sha256:" + key_hint(key)``: how the registry names a model-signing key."""
    return "sha256:" + key_hint(key)


def _read(path: Path, *, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc.strerror}") from exc


def _require_p256(curve: ec.EllipticCurve, *, what: str) -> None:
    if curve.name != _CURVE:
        raise InvalidInput(
            f"{what} is an EC key on {curve.name}; mbom signs and verifies EC P-256 "
            "(secp256r1) only",
            hint=_P256_HINT,
        )
