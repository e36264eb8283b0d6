"""Compromise a CycloneDX document reports: ``vulnerabilities`` and mbom's ``mbom:finding``.

Each becomes a :class:`~registry.bom.reader.Claim` that the import turns into a
flag (see :func:`registry.service.imported_flags.flag_imported`), with the
document (its serial number and the vulnerability's id and source) as the reason:

- a vulnerability an mbom export wrote names its compromised origin in the
  ``mbom:source`` property: the origin is flagged, and its descendants in the
  document are infected through their lineage as they were in the exporting
  registry; a ``resolved`` analysis there is an approver's clearance, which an
  import cannot grant: it is listed in a warning;
- any other vulnerability flags each model or dataset it ``affects``, unless its
  analysis says it does not apply (``not_affected``, ``false_positive``,
  ``resolved``, ``resolved_with_pedigree``): then a warning lists it, as it does
  a vulnerability affecting only components the registry does not keep;
- a component whose ``mbom:finding`` is ``compromised`` and that no
  vulnerability names is flagged too.
"""

from __future__ import annotations

from typing import Any

from registry import limits
from registry.bom._fields import (
    _REF_CHARS,
    _TEXT_CHARS,
    PROP,
    Claim,
    Document,
    _list,
    _mapping,
    _optional_text,
    _properties,
)

__all__ = ["read_findings", "read_vulnerabilities"]

#: Analysis states that say the vulnerability does not make the component compromised.
NOT_AFFECTED = frozenset({"not_affected", "false_positive", "resolved", "resolved_with_pedigree"})
#: How much of a reason a flag keeps (the document's description, abridged).
REASON_CHARS = 1000


def read_vulnerabilities(read: Document, value: Any) -> None:
    """Add a claim for each compromise ``vulnerabilities`` reports (warnings for the rest)."""
    for i, entry in enumerate(_list(value, "vulnerabilities")):
        at = f"vulnerabilities[{i}]"
        vulnerability = _mapping(entry, at, required=True)
        name = (
            _optional_text(vulnerability, "id", at, 200)
            or _optional_text(vulnerability, "bom-ref", at, _REF_CHARS)
            or at
        )
        reason = _reason(read, vulnerability, at, name)
        analysis = _mapping(vulnerability.get("analysis"), f"{at}.analysis")
        state = _optional_text(analysis, "state", f"{at}.analysis", 64)
        affects = _affected(vulnerability, at)
        origin = _properties(vulnerability, at).get(PROP + "source")
        if origin is not None:
            _own(read, at, name, reason, origin, state, affects, analysis)
            continue
        if state in NOT_AFFECTED:
            read.warnings.append(f"{at} ({limits.brief(name, 80)}) not flagged: its analysis "
                                 f"state is {state}")  # fmt: skip
            continue
        unkept = []
        for ref in affects:
            key = read.aliases.get(ref)
            if key is None:
                unkept.append(limits.brief(ref, 60))
            else:
                read.claims.append(Claim(key, reason, at))
        if unkept or not affects:
            read.warnings.append(
                f"{at} ({limits.brief(name, 80)}) affects "
                + (", ".join(unkept) if unkept else "nothing")
                + ", no model or dataset here: not kept"
            )


def _own(
    read: Document,
    at: str,
    name: str,
    reason: str,
    origin: str,
    state: str | None,
    affects: list[str],
    analysis: Any,
) -> None:
    """A vulnerability an mbom export wrote: flag its origin; a clearance becomes a warning."""
    key = read.aliases.get(origin)
    if key is None:
        read.warnings.append(
            f"{at} ({limits.brief(name, 80)}): its origin {limits.brief(origin, 80)} is not "
            "described in the document: not kept"
        )
        return
    read.claims.append(Claim(key, reason, at))
    if state == "resolved":
        detail = _optional_text(analysis, "detail", f"{at}.analysis", _TEXT_CHARS) or ""
        for ref in affects:
            read.warnings.append(
                f"{at}: {limits.brief(ref, 80)} was cleared of {key}'s infection in the "
                f"exporting registry ({limits.brief(detail, 120)}); a clearance is not "
                "imported: an approver may clear it here (mbom clear)"
            )


def _affected(vulnerability: Any, at: str) -> list[str]:
    refs = []
    for j, value in enumerate(_list(vulnerability.get("affects"), f"{at}.affects")):
        target = _mapping(value, f"{at}.affects[{j}]", required=True)
        ref = _optional_text(target, "ref", f"{at}.affects[{j}]", _REF_CHARS)
        if ref is not None:
            refs.append(ref)
    return refs


def _reason(read: Document, vulnerability: Any, at: str, name: str) -> str:
    """The flag's reason: what the document says, and which document and entry say it."""
    description = _optional_text(vulnerability, "description", at, _TEXT_CHARS) or ""
    source = _mapping(vulnerability.get("source"), f"{at}.source")
    reporter = _optional_text(source, "name", f"{at}.source", 200)
    said = description.strip()[:REASON_CHARS] or name
    origin = f"CycloneDX BOM {read.serial or '(no serialNumber)'}, {name}"
    if reporter:
        origin += f", reported by {limits.brief(reporter, 60)}"
    return f"{said} ({origin})"


def read_findings(read: Document) -> None:
    """Add a claim for each component marked ``mbom:finding: compromised`` and not claimed yet."""
    claimed = {claim.key for claim in read.claims}
    for node in read.nodes.values():
        if node.finding == "compromised" and node.key not in claimed:
            origin = f"CycloneDX BOM {read.serial or '(no serialNumber)'}"
            reason = f"marked compromised (mbom:finding) in {origin}"
            read.claims.append(Claim(node.key, reason, node.where))
