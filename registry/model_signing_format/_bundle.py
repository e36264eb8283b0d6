"""The Sigstore bundle (v0.3, JSON) that carries a key-signed DSSE envelope.

Only what the *key* method writes is read: ``verificationMaterial.publicKey``
(with the key's ``hint``) and a ``dsseEnvelope``. Bundles of the keyless
Sigstore or certificate methods (``certificate``, ``x509CertificateChain``,
transparency log entries) are refused with a clear message, not half-checked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from registry import limits
from registry.errors import InvalidInput, LimitExceeded, MalformedBundle
from registry.model_signing_format._dsse import Envelope

__all__ = ["BUNDLE_MEDIA_TYPE", "Bundle"]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"

_CERTIFICATE_MATERIAL = ("certificate", "x509CertificateChain")


@dataclass(frozen=True)
class Bundle:
    """A Sigstore bundle holding a DSSE envelope signed by a public key named by ``key_hint``.

    ``key_hint`` is the hex SHA-256 of the signer's public key PEM, or ``None``
    in bundles written before model_signing 1.1 recorded it.
    """

    envelope: Envelope
    key_hint: str | None
    media_type: str = BUNDLE_MEDIA_TYPE

    def to_json(self) -> dict[str, Any]:
        """The bundle as ``model_signing`` writes it."""
        public_key = {"hint": self.key_hint} if self.key_hint is not None else {}
        return {
            "mediaType": self.media_type,
            "verificationMaterial": {"publicKey": public_key, "tlogEntries": []},
            "dsseEnvelope": self.envelope.to_json(),
        }

    def to_text(self) -> str:
        """The bundle as one line of compact JSON (what the signature file holds)."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: object) -> Bundle:
        """Rebuild a key-method bundle; anything else raises :class:`MalformedBundle`."""
        if not isinstance(data, Mapping):
            raise MalformedBundle("it is not a JSON object")
        media_type = data.get("mediaType")
        if media_type != BUNDLE_MEDIA_TYPE:
            raise MalformedBundle(f"its mediaType is {media_type!r}, not {BUNDLE_MEDIA_TYPE}")
        material = data.get("verificationMaterial")
        if not isinstance(material, Mapping):
            raise MalformedBundle("it has no verificationMaterial")
        if any(name in material for name in _CERTIFICATE_MATERIAL):
            raise MalformedBundle(
                "it is signed with a certificate (Sigstore keyless or the certificate method); "
                "mbom verifies the key method only",
                hint="verify it with `model_signing verify sigstore` or `... certificate`",
            )
        public_key = material.get("publicKey")
        if not isinstance(public_key, Mapping):
            raise MalformedBundle("its verificationMaterial has no publicKey")
        hint = public_key.get("hint")
        if hint is not None and not isinstance(hint, str):
            raise MalformedBundle("its publicKey.hint is not a string")
        if "dsseEnvelope" not in data:
            raise MalformedBundle("it carries no dsseEnvelope (a message signature?)")
        return cls(
            envelope=Envelope.from_json(data["dsseEnvelope"]),
            key_hint=hint or None,
            media_type=media_type,
        )

    @classmethod
    def from_text(cls, text: str | bytes) -> Bundle:
        """Parse a signature file's content."""
        return cls.from_json(load_limited_json(text, "it"))


def load_limited_json(text: str | bytes, what: str) -> Any:
    """Parse a bundle's (or its payload's) JSON within the size and depth limits.

    Raises :class:`MalformedBundle` naming the problem; ``what`` names the text.
    """
    try:
        return limits.load_json(text, what=what, max_bytes=limits.MAX_BUNDLE_BYTES)
    except LimitExceeded as exc:
        raise MalformedBundle(
            f"{what} is too large: {exc.problem}", hint="a signature file is a few kilobytes"
        ) from exc
    except InvalidInput as exc:
        raise MalformedBundle(f"{what} is not JSON") from exc
