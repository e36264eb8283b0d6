"""Flags a document brings: a compromise a bill of materials reports, flagged on import.

A BOM import (:mod:`registry.bom.importer`) flags what the document says is
compromised, with the document as the flag's reason (``flag`` audit event,
``via: bom.import``). The rule for who may do so is the flag verb's, with one
relaxation: an artifact the import itself creates (a new version or a new
placeholder) may be flagged by any importer, as a registration's own scan
flags the model it comes with: nothing registered before descends from it,
and a flag only makes it safer. An artifact registered before the import
(reused or filled) is flagged only for an actor who may flag
(:data:`~registry.service.authorization.Operation.FLAG`); for others the
claim is answered with a warning, so that nobody can block another team's
model by importing a document that calls it compromised.

The flag is not *vouched* (see :func:`registry.service.flags.mark_compromised`):
a document's word compromises the artifact it names, not other artifacts that
hold the same files.
"""

from __future__ import annotations

from sqlmodel import Session

from registry.errors import PermissionDenied
from registry.identity import Actor
from registry.service import audit
from registry.service.authorization import Operation, authorize
from registry.service.flags import mark_compromised
from registry.service.refs import ref_of
from registry.tables import Artifact
from registry.vocabulary import Finding

__all__ = ["flag_imported"]


def flag_imported(
    session: Session,
    artifact: Artifact,
    *,
    actor: Actor,
    reason: str,
    created: bool,
    via: str,
) -> tuple[bool, str | None]:
    """Flag ``artifact`` compromised as an imported document says; (flagged, warning).

    ``created``: the import created the artifact (see the module). Nothing
    happens to an artifact already compromised. ``via`` names the document
    and entry in the audit event.
    """
    if artifact.finding == Finding.COMPROMISED:
        return False, None
    ref = ref_of(artifact)
    if not created:
        try:
            authorize(actor, Operation.FLAG)
        except PermissionDenied:
            return False, (
                f"{artifact.kind} {ref} was registered before this import and the document "
                f"says it is compromised; only an admin may flag it (mbom flag {ref})"
            )
    changes = mark_compromised(session, artifact, actor=actor, reason=reason, vouched=False)
    audit.record(
        session,
        actor=actor,
        operation="flag",
        subject=ref,
        details={"kind": artifact.kind, "reason": reason, "changed": len(changes), "via": via},
    )
    return True, None
