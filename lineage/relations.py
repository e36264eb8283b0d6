"""Kinds of lineage edges and which of them carry a compromise downwards."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, get_args


class Relation(StrEnum):
    """How a child was made from a parent (model to model, or dataset to model)."""

    FINETUNE = "finetune"
    ADAPTER = "adapter"
    QUANTIZED = "quantized"
    MERGE = "merge"
    DISTILL = "distill"
    HEAD = "head"
    CONVERSION = "conversion"
    TRAINED_ON = "trained_on"
    FINE_TUNED_ON = "fine_tuned_on"
    EVALUATED_ON = "evaluated_on"

    @property
    def is_dataset_use(self) -> bool:
        """True for the edges that lead from a dataset to a model."""
        return self in DATASET_USES


#: The relations between two models (``--relation``); a subset of :class:`Relation`
#: that typer and pydantic accept as choices and mypy checks as ``Relation`` members.
ModelRelation = Literal[
    Relation.FINETUNE,
    Relation.ADAPTER,
    Relation.QUANTIZED,
    Relation.MERGE,
    Relation.DISTILL,
    Relation.HEAD,
    Relation.CONVERSION,
]
#: The relations between a dataset and a model (``--dataset N@V:USE``).
DatasetUse = Literal[Relation.TRAINED_ON, Relation.FINE_TUNED_ON, Relation.EVALUATED_ON]

MODEL_RELATIONS: frozenset[Relation] = frozenset(get_args(ModelRelation))
DATASET_USES: frozenset[Relation] = frozenset(get_args(DatasetUse))

# Every way of deriving weights from a parent can carry a backdoor (it survives
# fine-tuning, quantisation, distillation and merging), and so does training on
# poisoned data. Evaluating on a dataset never changes the weights.
DEFAULT_PROPAGATION: Mapping[Relation, bool] = MappingProxyType(
    {relation: relation is not Relation.EVALUATED_ON for relation in Relation}
)
