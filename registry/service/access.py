"""API tokens and enrolled publisher keys."""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, col, select

from registry import signing
from registry.errors import AlreadyExists, AuthenticationRequired, InvalidInput, NotFound
from registry.identity import Actor, Role
from registry.schemas import KeyPublic, TokenPublic
from registry.service import audit, policy
from registry.service._tx import mutation
from registry.service.authorization import Operation, authorize
from registry.tables import ApiToken, PublisherKey

TOKEN_PREFIX = "mbom_"


@mutation
def create_token(
    session: Session, *, actor: Actor, user: str, role: Role, team: str | None = None
) -> TokenPublic:
    """Create a bearer token; the secret is returned once and stored only hashed."""
    authorize(actor, Operation.CREATE_TOKEN)
    if not user.strip():
        raise InvalidInput("a token needs a --user")
    policy.require_team(session, team)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user=user, role=role.value, team=team, token_hash=_hash(secret))
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        operation="token.create",
        subject=f"user:{user}",
        details={"role": role.value, "team": team, "token_id": row.id},
    )
    return _public(row).model_copy(update={"token": secret})


@mutation
def revoke_token(session: Session, token_id: int, *, actor: Actor) -> TokenPublic:
    """Revoke a token by id."""
    authorize(actor, Operation.REVOKE_TOKEN)
    row = session.get(ApiToken, token_id) if 0 < token_id < 2**63 else None
    if row is None:
        raise NotFound("token", str(token_id), hint="list them with mbom tokens list")
    row.revoked = True
    audit.record(
        session,
        actor=actor,
        operation="token.revoke",
        subject=f"user:{row.user}",
        details={"token_id": token_id},
    )
    return _public(row)


def list_tokens(session: Session, *, actor: Actor) -> list[TokenPublic]:
    """Every token (never the secrets)."""
    authorize(actor, Operation.LIST_TOKENS)
    return [_public(row) for row in session.exec(select(ApiToken).order_by(col(ApiToken.id)))]


def authenticate(session: Session, secret: str) -> Actor:
    """The actor a bearer token stands for."""
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == _hash(secret))).first()
    if row is None or row.revoked:
        raise AuthenticationRequired(
            "the bearer token is unknown or revoked", hint="ask an admin: mbom tokens create"
        )
    return Actor(user=row.user, role=Role(row.role), team=row.team)


@mutation
def enroll_key(session: Session, *, actor: Actor, publisher: str, public_key_pem: str) -> KeyPublic:
    """Enrol a publisher's Ed25519 public key (admins only)."""
    authorize(actor, Operation.ENROLL_KEY)
    if not publisher.strip():
        raise InvalidInput("a key needs a --publisher")
    signing.load_public_key(public_key_pem)
    fingerprint = signing.key_fingerprint(public_key_pem)
    existing = session.exec(
        select(PublisherKey).where(PublisherKey.fingerprint == fingerprint)
    ).first()
    if existing is not None:
        raise AlreadyExists("key", fingerprint, hint=f"it is enrolled for {existing.publisher}")
    row = PublisherKey(
        publisher=publisher,
        fingerprint=fingerprint,
        public_key_pem=public_key_pem,
        created_by=actor.user,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        operation="key.enroll",
        subject=f"publisher:{publisher}",
        details={"fingerprint": fingerprint},
    )
    return KeyPublic.model_validate(row, from_attributes=True)


def list_keys(session: Session, *, publisher: str | None = None) -> list[KeyPublic]:
    """Enrolled keys, optionally of one publisher."""
    query = select(PublisherKey).order_by(col(PublisherKey.publisher), col(PublisherKey.id))
    if publisher:
        query = query.where(PublisherKey.publisher == publisher)
    return [KeyPublic.model_validate(row, from_attributes=True) for row in session.exec(query)]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _public(row: ApiToken) -> TokenPublic:
    return TokenPublic(
        id=row.id or 0,
        user=row.user,
        role=row.role,
        team=row.team,
        revoked=row.revoked,
        created_at=row.created_at,
    )
