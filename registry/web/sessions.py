"""Sign-in sessions and CSRF tokens of the web console.

The session cookie holds the API token the person signed in with, encrypted and
authenticated (Fernet: AES-CBC + HMAC-SHA256, with its issue time) under a key
derived from the registry's session key (``session.key`` beside the audit key),
and is ``HttpOnly``: page scripts cannot read it, and whoever sees the cookie's
value without the server's key learns nothing. Every request re-authenticates
the token through the service, so a revoked token ends its sessions at once; a
session also ends after :data:`SESSION_SECONDS`. There is no session table: any
API process of a fleet sharing the key directory accepts the cookie.

CSRF: every form carries an HMAC of the session cookie (or, before sign-in, of a
random pre-session cookie), compared in constant time on each POST.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from registry.audit_key import AuditKeyFile

SESSION_COOKIE = "mbom_session"
#: The secret sessions and CSRF tokens are derived from, beside the audit key.
SESSION_KEY_FILENAME = "session.key"
PRESESSION_COOKIE = "mbom_signin"
#: How long a sign-in lasts (seconds).
SESSION_SECONDS = 8 * 3600


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


@dataclass(frozen=True)
class SessionKeys:
    """The keys sessions and CSRF tokens are made with (never the audit key itself)."""

    cookie: bytes = field(repr=False)
    csrf: bytes = field(repr=False)

    @classmethod
    def from_key_file(cls, key_file: AuditKeyFile) -> SessionKeys:
        """Keys derived (HKDF, one label each) from a secret file, created if missing."""
        secret = key_file.load_or_create().secret
        return cls(
            cookie=_derive(secret, b"mbom web session cookie v1"),
            csrf=_derive(secret, b"mbom web csrf v1"),
        )

    @classmethod
    def random(cls) -> SessionKeys:
        """Keys for one process only (an app with no audit key file)."""
        return cls(cookie=secrets.token_bytes(32), csrf=secrets.token_bytes(32))

    def _fernet(self) -> Fernet:
        return Fernet(base64.urlsafe_b64encode(self.cookie))

    def seal(self, api_token: str) -> str:
        """The session cookie's value for ``api_token``."""
        return self._fernet().encrypt(api_token.encode()).decode("ascii")

    def open(self, cookie: str | None) -> str | None:
        """The API token inside a session cookie; None if absent, forged or expired."""
        if not cookie:
            return None
        try:
            return self._fernet().decrypt(cookie.encode("ascii"), ttl=SESSION_SECONDS).decode()
        except (InvalidToken, UnicodeError):
            return None

    def csrf_token(self, bound_to: str) -> str:
        """The CSRF token of forms shown to the holder of cookie value ``bound_to``."""
        return hmac.new(self.csrf, bound_to.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, bound_to: str | None, submitted: str | None) -> bool:
        """Whether a submitted CSRF token belongs to this cookie value."""
        if not bound_to or not submitted:
            return False
        return hmac.compare_digest(self.csrf_token(bound_to), submitted)


def new_presession() -> str:
    """A random value for the pre-session cookie the sign-in form's CSRF token binds to."""
    return secrets.token_urlsafe(32)
