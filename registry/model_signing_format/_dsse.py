"""DSSE envelopes: a payload, its type, and signatures over the PAE encoding.

See https://github.com/secure-systems-lab/dsse/blob/v1.0.0/protocol.md. The
signature is over ``PAE(type, payload)``, never over the payload alone, so a
signature cannot be replayed under another payload type.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from registry.errors import MalformedBundle

__all__ = ["DsseSignature", "Envelope", "PaeSigner", "PaeVerifier", "pae"]


class PaeSigner(Protocol):
    """Signs the PAE bytes of an envelope.

    Implementations return a signature that the matching :class:`PaeVerifier`
    accepts for exactly these bytes; they never modify the message.
    """

    def sign(self, message: bytes) -> bytes:
        """The signature of ``message``."""
        ...


class PaeVerifier(Protocol):
    """Checks a signature over PAE bytes; answers, never raises for a bad signature."""

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` signs ``message``."""
        ...


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of a payload.

    >>> pae("t", b"{}")
    b'DSSEv1 1 t 2 {}'
    """
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class DsseSignature:
    """One signature of an envelope and the (optional, often empty) key id."""

    sig: bytes
    keyid: str = ""

    def to_json(self) -> dict[str, Any]:
        """``{"sig": base64, "keyid": ...}``."""
        return {"sig": base64.b64encode(self.sig).decode("ascii"), "keyid": self.keyid}

    @classmethod
    def from_json(cls, data: object) -> DsseSignature:
        """Rebuild a signature, refusing a missing or non-base64 ``sig``."""
        fields = _object(data, "a DSSE signature")
        keyid = fields.get("keyid") or ""
        if not isinstance(keyid, str):
            raise MalformedBundle("a DSSE signature's keyid is not a string")
        return cls(sig=_base64(fields.get("sig"), "a DSSE signature's sig"), keyid=keyid)


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: ``payload`` bytes of ``payload_type``, signed by ``signatures``."""

    payload: bytes
    payload_type: str
    signatures: tuple[DsseSignature, ...]

    @classmethod
    def sign(cls, payload: bytes, payload_type: str, signer: PaeSigner) -> Envelope:
        """An envelope with one signature by ``signer`` over the PAE encoding."""
        signature = DsseSignature(signer.sign(pae(payload_type, payload)))
        return cls(payload=payload, payload_type=payload_type, signatures=(signature,))

    def verified_by(self, verifier: PaeVerifier) -> bool:
        """Whether the envelope carries exactly one signature and ``verifier`` accepts it."""
        if len(self.signatures) != 1:
            return False
        return verifier.verify(self.signatures[0].sig, pae(self.payload_type, self.payload))

    def to_json(self) -> dict[str, Any]:
        """The envelope as the Sigstore bundle's ``dsseEnvelope`` object."""
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [signature.to_json() for signature in self.signatures],
        }

    @classmethod
    def from_json(cls, data: object) -> Envelope:
        """Rebuild an envelope, refusing a missing field, bad base64 or no signature."""
        fields = _object(data, "dsseEnvelope")
        payload_type = fields.get("payloadType")
        if not isinstance(payload_type, str):
            raise MalformedBundle("dsseEnvelope has no payloadType")
        signatures = fields.get("signatures")
        if not isinstance(signatures, list) or not signatures:
            raise MalformedBundle("dsseEnvelope has no signatures")
        return cls(
            payload=_base64(fields.get("payload"), "dsseEnvelope.payload"),
            payload_type=payload_type,
            signatures=tuple(DsseSignature.from_json(item) for item in signatures),
        )


def _object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise MalformedBundle(f"{what} is not a JSON object")
    return data


def _base64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise MalformedBundle(f"{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedBundle(f"{what} is not base64") from exc
