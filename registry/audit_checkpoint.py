"""Signed checkpoints of the audit chain, kept outside the registry.

A checkpoint states "event ``seq`` of this registry's audit chain had hash
``head``", signed with an Ed25519 key (:mod:`registry.signing`'s keys). Checked
later, it proves the chain still holds that event unchanged: deleting the
newest events, or rewriting the history before the checkpoint — even with the
HMAC key — is found. The file is JSON::

    {"type": "mbom-audit-checkpoint/v1",
     "statement": {"seq": 1200, "head": "…", "events": 1200, "key_id": "…", "at": "…"},
     "signature": "<base64 Ed25519 over the canonical statement>",
     "public_key": "-----BEGIN PUBLIC KEY-----…"}

Without a signing key the statement is written unsigned (``signature`` and
``public_key`` null): still a record of the head, but anyone could have written it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from registry import signing
from registry.errors import InvalidInput, SignatureError

__all__ = ["TYPE", "Checkpoint", "SignedCheckpoint", "read_checkpoint", "sign_checkpoint"]

TYPE = "mbom-audit-checkpoint/v1"


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint states about the chain at one moment."""

    seq: int
    head: str
    events: int
    key_id: str | None
    at: str

    def canonical(self) -> bytes:
        """The bytes that are signed: compact JSON, keys sorted."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with its signature and the signer's public key (both None: unsigned)."""

    checkpoint: Checkpoint
    signature: str | None = None
    public_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The checkpoint file's content."""
        return {
            "type": TYPE,
            "statement": asdict(self.checkpoint),
            "signature": self.signature,
            "public_key": self.public_key,
        }

    def signer(self, pinned_public_key: str | None = None) -> str | None:
        """Check the signature; return the signer's key fingerprint (None: unsigned).

        With ``pinned_public_key`` the checkpoint must be signed by that key;
        without it, by the key it carries (which proves only that it is intact).
        Raises :class:`~registry.errors.SignatureError` when it does not verify.
        """
        if self.signature is None or self.public_key is None:
            if pinned_public_key is not None:
                raise SignatureError("the checkpoint is unsigned, but a public key was given")
            return None
        pem = pinned_public_key or self.public_key
        try:
            raw = base64.b64decode(self.signature, validate=True)
            signing.load_public_key(pem).verify(raw, self.checkpoint.canonical())
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise SignatureError(
                "the checkpoint's signature does not verify"
                + (" with the given public key" if pinned_public_key else "")
                + ": it was altered, or signed by another key"
            ) from exc
        return signing.key_fingerprint(pem)


def sign_checkpoint(checkpoint: Checkpoint, private_key_path: Path | None) -> SignedCheckpoint:
    """Sign ``checkpoint`` with the Ed25519 key at ``private_key_path`` (None: unsigned)."""
    if private_key_path is None:
        return SignedCheckpoint(checkpoint)
    key = signing.load_private_key(private_key_path)
    signature = base64.b64encode(key.sign(checkpoint.canonical())).decode("ascii")
    return SignedCheckpoint(checkpoint, signature, signing.public_key_pem(key))


def read_checkpoint(path: Path) -> SignedCheckpoint:
    """Parse a checkpoint file; :class:`~registry.errors.InvalidInput` names what is wrong."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"cannot read the checkpoint {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("type") != TYPE:
        raise InvalidInput(f"{path} is not an mbom audit checkpoint (type {TYPE})")
    try:
        statement = document["statement"]
        checkpoint = Checkpoint(
            seq=_int(statement["seq"]),
            head=str(statement["head"]),
            events=_int(statement["events"]),
            key_id=None if statement.get("key_id") is None else str(statement["key_id"]),
            at=str(statement["at"]),
        )
        signature, public_key = document.get("signature"), document.get("public_key")
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"the checkpoint {path} is malformed: {exc}") from exc
    return SignedCheckpoint(
        checkpoint,
        None if signature is None else str(signature),
        None if public_key is None else str(public_key),
    )


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{value!r} is not a positive event number")
    return value
