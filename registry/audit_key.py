"""The secret that keys the audit chain: HMAC-SHA256, kept outside the database.

Someone who can write the database but not read this file cannot recompute
the chain after editing, inserting or deleting an event. The file holds 32
random bytes as 64 hex digits (mode 0600, created on first use); a fleet of
servers on one database shares it (``MBOM_AUDIT_KEY_FILE``). Any file of at
least 32 bytes works as a key, so an operator may supply their own secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from registry.errors import AuditKeyError

__all__ = ["KEY_FILENAME", "AuditKey", "AuditKeyFile"]

#: The key file's name beside an embedded registry.
KEY_FILENAME = "audit.key"
_MIN_BYTES = 32
_KEY_HINT = "point MBOM_AUDIT_KEY_FILE at the registry's audit key file"


@dataclass(frozen=True)
class AuditKey:
    """An audit key and where it came from; ``key_id`` names it without revealing it."""

    secret: bytes = field(repr=False)
    path: Path

    @property
    def key_id(self) -> str:
        """16 hex digits identifying the key (an HMAC of a fixed label, not the key)."""
        return hmac.new(self.secret, b"mbom audit key id", hashlib.sha256).hexdigest()[:16]

    def mac(self, body: bytes) -> str:
        """The hex HMAC-SHA256 of ``body`` under this key."""
        return hmac.new(self.secret, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditKeyFile:
    """Where a registry's audit key lives; read (or created) only when needed."""

    path: Path

    def load(self) -> AuditKey | None:
        """The key, or None when the file does not exist; unusable files raise."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditKeyError(
                f"cannot read the audit key {self.path}: {exc.strerror}", hint=_KEY_HINT
            ) from exc
        return AuditKey(_secret_of(data, self.path), self.path)

    def load_or_create(self) -> AuditKey:
        """The key, creating a new random one (mode 0600) when the file does not exist."""
        existing = self.load()
        if existing is not None:
            return existing
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return self.load() or _vanished(self.path)
        except OSError as exc:
            raise AuditKeyError(
                f"cannot create the audit key {self.path}: {exc.strerror}", hint=_KEY_HINT
            ) from exc
        with os.fdopen(fd, "w") as stream:
            stream.write(secrets.token_hex(_MIN_BYTES) + "\n")
        return self.load() or _vanished(self.path)


def _secret_of(data: bytes, path: Path) -> bytes:
    text = data.strip()
    try:
        secret = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        secret = data
    if len(secret) < _MIN_BYTES:
        raise AuditKeyError(
            f"the audit key {path} holds {len(secret)} bytes; at least {_MIN_BYTES} are needed",
            hint="write 64 random hex digits into it (e.g. `openssl rand -hex 32`)",
        )
    return secret


def _vanished(path: Path) -> AuditKey:
    raise AuditKeyError(f"the audit key {path} disappeared while it was read", hint=_KEY_HINT)
