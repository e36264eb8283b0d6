"""Who is acting, and what their role lets them do."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from enum import StrEnum

from registry.errors import InvalidInput, PermissionDenied


class Role(StrEnum):
    """Roles, each allowed everything the ones before it are."""

    READER = "reader"
    PUBLISHER = "publisher"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position in the reader < publisher < approver < admin order."""
        return list(Role).index(self)

    @classmethod
    def parse(cls, value: str) -> Role:
        """The role named ``value``, or a clear error listing the valid ones."""
        try:
            return cls(value)
        except ValueError as exc:
            valid = ", ".join(role.value for role in cls)
            raise InvalidInput(f"unknown role {value!r}", hint=f"use one of {valid}") from exc


@dataclass(frozen=True)
class Actor:
    """An identity acting on the registry.

    ``team`` scopes every action of a non-admin: it acts for that team only, and
    an actor without a team holds its role for every team. Which role and which
    team each operation needs is decided in :mod:`registry.service.authorization`.
    """

    user: str
    role: Role
    team: str | None = None

    @classmethod
    def local(cls) -> Actor:
        """The embedded registry's actor: the OS user, with the admin role."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "local"
        return cls(user=user, role=Role.ADMIN)

    def require(self, role: Role, *, action: str, team: str | None = None) -> None:
        """Refuse unless this actor has ``role`` (or higher) and, if scoped, that team."""
        if self.role.rank < role.rank:
            raise PermissionDenied(
                f"{self.user} ({self.role}) may not {action}: it needs the {role} role",
                hint="ask an admin for a token with that role",
            )
        if self.role is not Role.ADMIN and self.team and team and team != self.team:
            raise PermissionDenied(
                f"{self.user} acts for team {self.team} and may not {action} for team {team}"
            )

    def can(self, role: Role, *, team: str | None = None) -> bool:
        """Whether :meth:`require` would pass."""
        try:
            self.require(role, action="act", team=team)
        except PermissionDenied:
            return False
        return True
