"""Lineage a CycloneDX document gives besides a component's own fields.

- A ``pedigree`` ancestor not listed as a component is read from the pedigree
  itself (its name, version, hashes, files): a placeholder unless its files are
  listed, with a warning saying so, never a refusal.
- ``dependencies``: a model that depends on a model or a dataset the document
  describes has it as a parent (a model: ``finetune``, or ``merge`` with several
  model parents, as for pedigree; a dataset: ``trained_on``), unless the pedigree
  or the modelCard links them already. Any other dependency touching a model or
  a dataset (an application depending on a model, a dataset on a dataset, a
  model on a library) is no lineage here: it is listed in a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from registry import limits
from registry.bom._extras import identity
from registry.bom._fields import (
    _REF_CHARS,
    Document,
    Node,
    _kind,
    _list,
    _mapping,
    _optional_text,
)
from registry.errors import InvalidBom
from registry.vocabulary import Kind

#: (child key, where, ancestor object, parent ref, relation) of a pedigree ancestor.
Ancestor = tuple[str, str, Mapping[str, Any], str, str | None]
#: Reads one component into the document (as the reader does), by default a model.
ReadComponent = Callable[[str, Mapping[str, Any]], Node]

__all__ = ["add_dependencies", "add_pedigree_ancestors"]


def add_pedigree_ancestors(
    read: Document, ancestors: list[Ancestor], read_component: ReadComponent
) -> None:
    """Read each pedigree ancestor the document does not list as a component."""
    done = 0
    while done < len(ancestors):  # an ancestor read here may add ancestors of its own
        child, where, ancestor, ref, _ = ancestors[done]
        done += 1
        if ref in read.aliases:
            continue
        kind = _kind(ancestor.get("type")) or Kind.MODEL
        found = identity(ancestor, where, kind, [])
        key = f"{kind}:{found.name}@{found.version}"
        if key not in read.nodes:
            node = read_component(where, ancestor)
            files = "with its files" if node.manifest else "as a placeholder"
            read.warnings.append(
                f"{where}: the ancestor {node.key} of {child} is not listed as a component: "
                f"registered from the pedigree {files}"
            )
            key = node.key
        read.aliases[ref] = key


def add_dependencies(read: Document, value: Any) -> None:
    """Add each model's dependencies on described models and datasets as parents."""
    unkept: list[str] = []
    for i, entry in enumerate(_list(value, "dependencies")):
        at = f"dependencies[{i}]"
        dependency = _mapping(entry, at, required=True)
        ref = _optional_text(dependency, "ref", at, _REF_CHARS)
        if ref is None:
            raise InvalidBom(f"{at}.ref", "is missing")
        child = read.nodes.get(read.aliases.get(ref, ""))
        for j, target_ref in enumerate(_list(dependency.get("dependsOn"), f"{at}.dependsOn")):
            if not isinstance(target_ref, str):
                raise InvalidBom(f"{at}.dependsOn[{j}]", "is not a string")
            target = read.nodes.get(read.aliases.get(target_ref, ""))
            if child is None or target is None or child.kind != Kind.MODEL:
                if child is not None or target is not None:
                    unkept.append(f"{limits.brief(ref, 60)} -> {limits.brief(target_ref, 60)}")
                continue
            linked = {read.aliases.get(r, r) for r, _ in child.parents} | {
                read.aliases.get(r, r) for r, _ in child.datasets
            }
            if target.key in linked or target.key == child.key:
                continue
            if target.kind == Kind.DATASET:
                child.datasets.append((target.key, "trained_on"))
            else:
                child.parents.append((target.key, None))
    if unkept:
        shown = ", ".join(unkept[:8]) + (f" and {len(unkept) - 8} more" if len(unkept) > 8 else "")
        read.warnings.append(
            f"{len(unkept)} {'dependency' if len(unkept) == 1 else 'dependencies'} not kept "
            "as lineage (only a model's dependencies on "
            f"models and datasets are): {shown}"
        )
