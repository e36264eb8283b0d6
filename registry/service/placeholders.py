"""Placeholders: ancestors and datasets known by name before their files are.

A CycloneDX import or a Hugging Face model card can name a base model or a
dataset the registry has never seen. It is recorded as a *placeholder*: an
artifact with ``placeholder=True``, no manifest, finding ``unscanned``, and the
source it was named by. Children hang off it by real edges, so flagging it
infects them at once.

**Filling.** A later registration of the same artifact fills the placeholder
in place: same id, its edges to children kept, its flags and decisions kept,
statuses recomputed. A registration fills a placeholder when, for the same kind:

1. the name and version are the placeholder's (``acme/base@1``), whatever the
   sources; or
2. the placeholder is a Hub reference without a revision
   (``org/name@unpinned``, source ``hf://org/name``) and the registration's
   source names the same Hub repository (``hf://org/name`` or
   ``hf://org/name@<rev>``), under a version not registered yet. The filled
   artifact takes the registered version: ``org/name@unpinned`` becomes
   ``org/name@<version>``, and version-level team decisions move with it.

A registration without an ``hf://`` source never fills an unpinned
placeholder: an internal model may share a Hub name. A placeholder that
already records a digest (a BOM component hash) is only filled by files with
that digest. Creating and filling are audited (``placeholder.create``,
``placeholder.fill``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select, update

from lineage import Relation
from registry.errors import AlreadyExists, InvalidInput
from registry.hf import UNPINNED, HubRef
from registry.identity import Actor
from registry.service import audit, deployed_paths, pending
from registry.service.authorization import authorize_fill
from registry.service.refs import check_name, ref_of
from registry.tables import Artifact, Decision, Edge, utcnow
from registry.vocabulary import Kind

__all__ = ["check_unregistered", "claim", "create", "fill", "new_links"]


def create(
    session: Session,
    *,
    actor: Actor,
    kind: Kind,
    name: str,
    version: str,
    via: str,
    source: str | None = None,
    digest: str | None = None,
    publisher: str | None = None,
    format: str | None = None,
) -> Artifact:
    """Record a placeholder (no manifest, unscanned) and audit it; ``via`` says who named it."""
    check_name(name, version)
    artifact = Artifact(
        kind=kind,
        name=name,
        version=version,
        source=source,
        digest=digest,
        publisher=publisher,
        format=format,
        placeholder=True,
        created_by=actor.user,
    )
    session.add(artifact)
    session.flush()
    audit.record(
        session,
        actor=actor,
        operation="placeholder.create",
        subject=ref_of(artifact),
        details={"kind": kind, "source": source, "digest": digest, "via": via},
    )
    return artifact


def check_unregistered(session: Session, *, kind: Kind, name: str, version: str) -> Artifact | None:
    """Refuse ``name@version`` if it is registered (:class:`~registry.errors.AlreadyExists`);
    the placeholder standing for it, if any."""
    check_name(name, version)
    same = _find(session, kind, name, version)
    if same is not None and not same.placeholder:
        raise AlreadyExists(
            kind, f"{name}@{version}", hint="versions are immutable; pick a new version"
        )
    return same


def claim(
    session: Session, *, kind: Kind, name: str, version: str, source: str | None
) -> Artifact | None:
    """The placeholder a registration of ``name@version`` fills, or ``None`` for a new one.

    Raises :class:`~registry.errors.AlreadyExists` when ``name@version`` is
    registered and is no placeholder (versions are immutable), and
    :class:`~registry.errors.AdmissionPending` while another registration of it
    is being admitted (see :mod:`registry.service.pending`).
    """
    pending.supersede_stalled(session, kind=kind, name=name, version=version)
    same = check_unregistered(session, kind=kind, name=name, version=version)
    if same is not None:
        return same
    hub = HubRef.from_source(source)
    if hub is None or hub.repo_id != name or hub.kind != kind:
        return None
    unpinned = _find(session, kind, name, UNPINNED)
    if unpinned is None or not unpinned.placeholder:
        return None
    return unpinned if hub.same_repo(HubRef.from_source(unpinned.source)) else None


def fill(
    session: Session, placeholder: Artifact, registered: Artifact, *, actor: Actor
) -> Artifact:
    """Make ``placeholder`` the artifact ``registered`` describes, keeping its id and edges.

    ``registered`` is the transient row a new registration would insert. Fields
    it leaves empty (publisher, source, format, team) keep the placeholder's.
    """
    if placeholder.digest and registered.digest and placeholder.digest != registered.digest:
        raise InvalidInput(
            f"{ref_of(placeholder)} was recorded with digest {placeholder.digest}; "
            f"these files have {registered.digest}",
            hint="these are other files: register them under another version",
        )
    authorize_fill(session, actor, placeholder)
    before = ref_of(placeholder)
    if registered.version != placeholder.version:
        _move_decisions(session, placeholder.name, placeholder.version, registered.version)
    placeholder.version = registered.version
    placeholder.digest = registered.digest
    placeholder.manifest = registered.manifest
    placeholder.total_size = registered.total_size
    for field in ("publisher", "source", "format", "team"):
        if getattr(registered, field) is not None:
            setattr(placeholder, field, getattr(registered, field))
    placeholder.placeholder = False
    placeholder.created_by = registered.created_by
    placeholder.created_at = utcnow()
    session.add(placeholder)
    session.flush()
    if ref_of(placeholder) != before:  # the paths through it spell its new version
        deployed_paths.refresh_below(session, placeholder.id or 0)
    audit.record(
        session,
        actor=actor,
        operation="placeholder.fill",
        subject=ref_of(placeholder),
        details={"kind": placeholder.kind, "placeholder": before, "digest": placeholder.digest},
    )
    return placeholder


def new_links(
    session: Session, child: Artifact, links: Sequence[tuple[Artifact, Relation]]
) -> list[tuple[Artifact, Relation]]:
    """``links`` without the parents ``child`` has already (a filled placeholder's edges)."""
    if child.id is None:
        return list(links)
    known = set(session.exec(select(Edge.parent_id).where(Edge.child_id == child.id)))
    return [(parent, relation) for parent, relation in links if parent.id not in known]


def _find(session: Session, kind: Kind, name: str, version: str) -> Artifact | None:
    return session.exec(
        select(Artifact).where(
            Artifact.kind == kind, Artifact.name == name, Artifact.version == version
        )
    ).first()


def _move_decisions(session: Session, name: str, old: str, new: str) -> None:
    """Version-level approvals and blocks follow the placeholder to its real version."""
    session.execute(
        update(Decision)
        .where(col(Decision.name) == name, col(Decision.version) == old)
        .values(version=new)
    )
