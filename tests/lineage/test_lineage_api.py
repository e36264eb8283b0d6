"""The public surface of ``lineage``: exported names, doctests, errors."""

from __future__ import annotations

import doctest
import importlib
from types import ModuleType
from typing import Literal, get_origin

import pytest

import lineage
from lineage import (
    ConflictingEdgeError,
    CycleError,
    LineageError,
    NoInfectionPathError,
    UnknownNodeError,
)

MODULES = ["lineage", "lineage.errors", "lineage.relations", "lineage.graph", "lineage.propagation"]

EXPORTED = {
    "DATASET_USES",
    "DEFAULT_PROPAGATION",
    "MODEL_RELATIONS",
    "ConflictingEdgeError",
    "CycleError",
    "DatasetUse",
    "Finding",
    "LineageError",
    "ModelRelation",
    "NoInfectionPathError",
    "Reach",
    "Relation",
    "Status",
    "UnknownNodeError",
    "check_new_parents",
    "depth_of",
    "effective_status",
    "infection_path",
    "lineage_graph",
    "propagate_infection",
    "recompute_statuses",
    "shortest_paths_from",
    "topological_order",
}


def is_alias(value: object) -> bool:
    """A ``Literal`` of members (``ModelRelation``): typing's object, no module of its own."""
    return get_origin(value) is Literal


def test_all_is_pinned_and_importable() -> None:
    assert set(lineage.__all__) == EXPORTED
    assert len(lineage.__all__) == len(EXPORTED)
    for name in lineage.__all__:
        value = getattr(lineage, name)
        assert name.isupper() or is_alias(value) or value.__module__.startswith("lineage."), name


def test_every_public_name_has_a_docstring() -> None:
    for name in lineage.__all__:
        value = getattr(lineage, name)
        if not name.isupper() and not is_alias(value):  # aliases: documented by #: comments
            assert value.__doc__, name


@pytest.mark.parametrize("module_name", MODULES)
def test_doctests(module_name: str) -> None:
    module: ModuleType = importlib.import_module(module_name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


@pytest.mark.parametrize("module_name", ["lineage.graph", "lineage.propagation"])
def test_graph_modules_have_doctested_examples(module_name: str) -> None:
    _, attempted = doctest.testmod(importlib.import_module(module_name))
    assert attempted > 0


@pytest.mark.parametrize(
    ("error", "message", "hint"),
    [
        pytest.param(CycleError(["a", "b", "a"]), "lineage cycle: a -> b -> a", "drop one", id="c"),
        pytest.param(CycleError([1, 1]), "lineage cycle: 1 -> 1", "drop one", id="self"),
        pytest.param(
            ConflictingEdgeError(1, 2, ["finetune", "merge"]),
            "edge 1 -> 2 given with different relations: finetune, merge",
            "exactly one relation",
            id="conflict",
        ),
        pytest.param(UnknownNodeError(7), "node 7 is not in the lineage graph", "every", id="node"),
        pytest.param(NoInfectionPathError(2, 1), "1 does not infect 2", "reaches", id="path"),
    ],
)
def test_errors_explain_what_and_what_to_do(error: LineageError, message: str, hint: str) -> None:
    assert isinstance(error, LineageError)
    assert str(error) == message
    assert error.diagnostics().startswith(message)
    assert hint in error.diagnostics()
