"""The import plan: what ``mbom import-hf`` will register, read before anything is written.

The client reads the snapshot and its model card into an :class:`ImportPlan`;
the registry (in-process or behind ``mbom serve``) turns it into one
transaction. The plan is validated again on the way in, so a server never
trusts a client's plan more than a client's manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from registry.errors import InvalidInput
from registry.hf._refs import HubRef, check_repo_id
from registry.vocabulary import MODEL_RELATIONS, Kind, Relation

__all__ = ["HUB_RELATIONS", "ImportPlan"]

#: The Hub's ``base_model_relation`` values and the registry relation each becomes.
HUB_RELATIONS: Mapping[str, Relation] = MappingProxyType(
    {
        "adapter": Relation.ADAPTER,
        "merge": Relation.MERGE,
        "quantized": Relation.QUANTIZED,
        "finetune": Relation.FINETUNE,
    }
)

_VERSION = r"^[^\s@/\x00-\x1f\x7f]+$"
_COMMIT = r"^[0-9a-f]{40}$"


class ImportPlan(BaseModel):
    """A Hugging Face snapshot as the registry will record it.

    ``version`` is the commit hash when the cache records one (else the
    revision, or what the user chose); ``bases`` and ``datasets`` come from the
    model card, ``relation`` from its ``base_model_relation`` or, when absent,
    inferred as the Hub does (``relation_basis`` says how). ``warnings`` are
    what the reader noticed but could proceed past (no card, no metadata).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo_id: str = Field(max_length=96)
    version: str = Field(pattern=_VERSION, max_length=128)
    revision: str | None = Field(default=None, max_length=256)
    commit: str | None = Field(default=None, pattern=_COMMIT)
    bases: tuple[HubRef, ...] = Field(default=(), max_length=100)
    relation: Relation | None = None
    relation_basis: str | None = Field(default=None, max_length=200)
    datasets: tuple[HubRef, ...] = Field(default=(), max_length=500)
    license: str | None = Field(default=None, max_length=200)
    pipeline_tag: str | None = Field(default=None, max_length=100)
    format: str | None = Field(default=None, max_length=64)
    warnings: tuple[str, ...] = Field(default=(), max_length=100)

    @field_validator("repo_id")
    @classmethod
    def _hub_repo_id(cls, repo_id: str) -> str:
        problem = check_repo_id(repo_id)
        if problem is not None:
            raise ValueError(f"{repo_id!r}: {problem}")
        return repo_id

    @model_validator(mode="after")
    def _consistent_lineage(self) -> Self:
        if any(base.kind != Kind.MODEL for base in self.bases):
            raise ValueError("bases must be model repositories")
        if any(dataset.kind != Kind.DATASET for dataset in self.datasets):
            raise ValueError("datasets must be dataset repositories")
        if any(base.repo_id.casefold() == self.repo_id.casefold() for base in self.bases):
            raise ValueError(f"{self.repo_id} cannot be its own base model")
        if (self.relation is None) != (not self.bases):
            raise ValueError("a relation is given exactly when there are base models")
        if self.relation is not None and self.relation not in MODEL_RELATIONS:
            raise ValueError(f"{self.relation} is not a relation between models")
        if (self.relation is Relation.MERGE) != (len(self.bases) > 1):
            raise ValueError("several base models make a merge, and a merge has several")
        return self

    @property
    def source(self) -> str:
        """``hf://org/name@commit`` (or ``@revision`` when no commit is known)."""
        return HubRef(repo_id=self.repo_id, revision=self.commit or self.revision).source

    @property
    def ref(self) -> str:
        """``name@version`` of the model to register."""
        return f"{self.repo_id}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        """The plan as a JSON object (what the remote client sends)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: object) -> ImportPlan:
        """Rebuild and re-validate a plan; :class:`InvalidInput` names the bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "plan"
            raise InvalidInput(f"the import plan is invalid: {where}: {first['msg']}") from exc
