"""Parsing ``N@V`` references and finding the artifacts they name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from sqlmodel import Session, select

from registry.errors import AmbiguousReference, InvalidInput, NotFound
from registry.service import pending
from registry.tables import Artifact
from registry.vocabulary import Kind

# No whitespace, no control characters (NUL included), no '@'; names do not start with ':'.
_NAME = re.compile(r"^[^\s@:\x00-\x1f\x7f][^\s@\x00-\x1f\x7f]*$")
_VERSION = re.compile(r"^[^\s@/\x00-\x1f\x7f]+$")


@dataclass(frozen=True)
class Ref:
    """A parsed reference: ``[model:|dataset:]name@version``."""

    name: str
    version: str
    kind: Kind | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str, *, kind: Kind | None = None) -> Ref:
        """Parse ``name@version`` with an optional ``model:``/``dataset:`` prefix."""
        raw = text.strip()
        for prefix in Kind:
            if raw.startswith(prefix + ":"):
                kind, raw = prefix, raw[len(prefix) + 1 :]
        name, sep, version = raw.rpartition("@")
        if not sep or not _NAME.match(name) or not _VERSION.match(version):
            raise InvalidInput(
                f"{text!r} is not a reference",
                hint="write NAME@VERSION, e.g. acme/resnet@1.0 (no spaces; no '@' in either part)",
            )
        return cls(name=name, version=version, kind=kind)


def check_name(name: str, version: str) -> None:
    """Refuse names and versions that could not be written back as a reference."""
    Ref.parse(f"{name}@{version}")


class Named(Protocol):
    """Anything with a name and a version (an Artifact, a listing label)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


def ref_of(artifact: Named) -> str:
    """The ``name@version`` of an artifact."""
    return f"{artifact.name}@{artifact.version}"


def resolve(session: Session, text: str | Ref, *, kind: Kind | None = None) -> Artifact:
    """The artifact a reference names; a bare ref naming both kinds is ambiguous."""
    ref = text if isinstance(text, Ref) else Ref.parse(text)
    wanted = kind or ref.kind
    query = select(Artifact).where(Artifact.name == ref.name, Artifact.version == ref.version)
    if wanted:
        query = query.where(Artifact.kind == wanted)
    found = session.exec(query).all()
    if not found:
        pending.refuse_reference(session, kind=wanted, name=ref.name, version=ref.version)
        what = wanted or "model or dataset"
        raise NotFound(
            what,
            str(ref),
            hint="list them with mbom dataset list"
            if wanted == Kind.DATASET
            else "list them with mbom models",
        )
    if len(found) > 1:
        raise AmbiguousReference(str(ref))
    return found[0]
