"""From a snapshot and its model card to an :class:`~registry.hf.ImportPlan`.

When the card names base models but no ``base_model_relation``, the relation is
inferred in the order the Hub documents: several bases make a ``merge``;
adapter files (``adapter_config.json``, ``adapter_model.*``) an ``adapter``;
quantized weights (GGUF/GGML files, a ``quantization_config`` in
``config.json`` as GPTQ, AWQ, bitsandbytes and friends write it, AutoGPTQ's
``quantize_config.json``, AutoAWQ's ``quant_config.json``) ``quantized``;
anything else a ``finetune``.
"""

from __future__ import annotations

import json
from pathlib import Path

from lineage import Relation
from registry.errors import InvalidInput, InvalidModelCard
from registry.hf._card import CARD_NAME, CardFacts, read_card
from registry.hf._plan import HUB_RELATIONS, ImportPlan
from registry.hf._refs import HubRef, check_repo_id
from registry.hf._snapshot import Snapshot
from registry.vocabulary import Kind

__all__ = ["infer_relation", "plan_import"]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
QUANTIZED_SUFFIXES = (".gguf", ".ggml")
QUANTIZER_FILES = {
    "quantize_config.json": "AutoGPTQ's quantize_config.json",
    "quant_config.json": "AutoAWQ's quant_config.json",
}
# The first suffix found names the model's format.
FORMATS = (
    (".gguf", "gguf"),
    (".safetensors", "safetensors"),
    (".onnx", "onnx"),
    (".bin", "pytorch"),
    (".pt", "pytorch"),
    (".pth", "pytorch"),
    (".keras", "keras"),
    (".h5", "keras"),
    (".msgpack", "flax"),
)


def plan_import(
    snapshot: Snapshot, *, name: str | None = None, version: str | None = None
) -> ImportPlan:
    """Read the snapshot's card and files into a plan; nothing is written.

    ``name`` is required for a directory outside the cache (its repo id is
    unknown) and must match the cache's otherwise; ``version`` overrides the
    commit hash. Raises :class:`~registry.errors.InvalidModelCard` for a card
    that cannot be read or contradicts itself, and
    :class:`~registry.errors.InvalidInput` for a bad name or version.
    """
    repo_id = _repo_id(snapshot, name)
    chosen = version or snapshot.commit or snapshot.revision or "main"
    warnings: list[str] = []
    if version is None and snapshot.commit is None:
        warnings.append(
            f"{snapshot.path} records no commit: registered as version {chosen} "
            "(pass --version to pin it)"
        )
    files = _files(snapshot.path)
    card = read_card(snapshot.path)
    if card is None:
        card = CardFacts()
        had_card = (snapshot.path / CARD_NAME).is_file()
        warnings.append(
            f"{CARD_NAME} has no YAML front matter" if had_card else f"no {CARD_NAME} model card"
        )
        warnings[-1] += ": imported without base models or datasets"
    warnings.extend(card.warnings)
    bases = _bases(card, repo_id)
    relation, basis = _relation(card, bases, snapshot.path, files, warnings)
    return ImportPlan.from_json(
        {
            "repo_id": repo_id,
            "version": chosen,
            "revision": snapshot.revision,
            "commit": snapshot.commit,
            "bases": [HubRef(repo_id=base).model_dump() for base in bases],
            "relation": relation,
            "relation_basis": basis,
            "datasets": [{"repo_id": d, "kind": Kind.DATASET} for d in card.datasets],
            "license": card.license,
            "pipeline_tag": card.pipeline_tag,
            "format": next(
                (fmt for suffix, fmt in FORMATS if any(f.endswith(suffix) for f in files)), None
            ),
            "warnings": warnings,
        }
    )


def _repo_id(snapshot: Snapshot, name: str | None) -> str:
    if name is not None and snapshot.repo_id is not None and name != snapshot.repo_id:
        raise InvalidInput(
            f"{snapshot.path} is a snapshot of {snapshot.repo_id}, not of {name}",
            hint="drop --name: the cache knows the repository",
        )
    repo_id = name or snapshot.repo_id
    if repo_id is None:
        raise InvalidInput(
            f"{snapshot.path} is not in a Hugging Face cache, so its repository is unknown",
            hint="name it with --name org/name",
        )
    problem = check_repo_id(repo_id)
    if problem is not None:
        raise InvalidInput(f"--name {repo_id!r} is not a Hugging Face repo id: {problem}")
    return repo_id


def _files(root: Path) -> list[str]:
    """The snapshot's file names, relative and POSIX (symlinks count as files)."""
    return sorted(
        path.relative_to(root).as_posix() for path in root.rglob("*") if not path.is_dir()
    )


def _bases(card: CardFacts, repo_id: str) -> tuple[str, ...]:
    for base in card.bases:
        if base.casefold() == repo_id.casefold():
            raise InvalidModelCard(
                CARD_NAME,
                f"base_model names the model itself ({base})",
                hint="base_model names the model this one was made from",
            )
    return card.bases


def _relation(
    card: CardFacts, bases: tuple[str, ...], root: Path, files: list[str], warnings: list[str]
) -> tuple[Relation | None, str | None]:
    if not bases:
        if card.relation is not None:
            warnings.append(f"base_model_relation {card.relation} without base_model: ignored")
        return None, None
    if card.relation is None:
        return infer_relation(len(bases), root, files, warnings)
    relation = HUB_RELATIONS.get(card.relation.lower())
    if relation is None:
        raise InvalidModelCard(
            CARD_NAME,
            f"unknown base_model_relation {card.relation!r}",
            hint=f"use one of {', '.join(HUB_RELATIONS)}, or leave it out to let mbom infer it",
        )
    if relation is Relation.MERGE and len(bases) < 2:
        raise InvalidModelCard(
            CARD_NAME, "base_model_relation is merge but base_model names one model"
        )
    if relation is not Relation.MERGE and len(bases) > 1:
        raise InvalidModelCard(
            CARD_NAME,
            f"base_model names {len(bases)} models but base_model_relation is {card.relation}",
            hint="a model made from several bases is a merge: set base_model_relation: merge",
        )
    return relation, "base_model_relation in the model card"


def infer_relation(
    base_count: int, root: Path, files: list[str], warnings: list[str]
) -> tuple[Relation, str]:
    """The relation the Hub infers when the card gives none, and why."""
    if base_count > 1:
        return Relation.MERGE, "inferred: several base models"
    adapters = [name for name in ADAPTER_FILES if name in files]
    if adapters:
        return Relation.ADAPTER, f"inferred: adapter files ({', '.join(adapters)})"
    marker = _quantization_marker(root, files, warnings)
    if marker is not None:
        return Relation.QUANTIZED, f"inferred: {marker}"
    return Relation.FINETUNE, "inferred: the Hub's default, no adapter or quantization files"


def _quantization_marker(root: Path, files: list[str], warnings: list[str]) -> str | None:
    quantized = [f for f in files if f.lower().endswith(QUANTIZED_SUFFIXES)]
    if quantized:
        return f"quantized weights ({quantized[0]})"
    for name, what in QUANTIZER_FILES.items():
        if name in files:
            return what
    if "config.json" not in files:
        return None
    try:
        config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.append(f"config.json cannot be read ({exc}): its quantization was not checked")
        return None
    quantization = config.get("quantization_config") if isinstance(config, dict) else None
    if quantization is None:
        return None
    method = quantization.get("quant_method") if isinstance(quantization, dict) else None
    return f"quantization_config in config.json ({method or 'unnamed method'})"
