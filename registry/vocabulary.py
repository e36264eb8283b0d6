"""The registry's vocabulary: every closed set of words it stores, answers and accepts.

Each set is one ``StrEnum``, declared once: here, or in the library that owns the
idea (:mod:`lineage` for relations, findings and statuses, :mod:`scanning` for
scan verdicts) and re-exported here so that the registry has one place to look.
The schemas, the API's parameters and the CLI's options are typed with these
enums, so pydantic, FastAPI and typer refuse an unknown word and list the valid
ones, and OpenAPI shows each set as an ``enum``. A ``StrEnum`` member is its
string (``Kind.MODEL == "model"``, ``json.dumps`` writes ``"model"``), so the
database columns stay plain strings and nothing a client sees changes.
"""

from __future__ import annotations

from enum import StrEnum

from lineage import (
    DATASET_USES,
    MODEL_RELATIONS,
    DatasetUse,
    Finding,
    ModelRelation,
    Relation,
    Status,
)
from scanning.behavioral.verdict import BehaviorVerdict
from scanning.report import Verdict as ScanVerdict

__all__ = [
    "DATASET_USES",
    "MODEL_RELATIONS",
    "BehaviorVerdict",
    "DatasetUse",
    "DecisionVerdict",
    "Finding",
    "Kind",
    "ModelRelation",
    "Relation",
    "ScanProvenance",
    "ScanVerdict",
    "Status",
]


class Kind(StrEnum):
    """What an artifact is: a model version or a dataset version."""

    MODEL = "model"
    DATASET = "dataset"


class DecisionVerdict(StrEnum):
    """A team's decision on a model: approve it (for teams that require approval) or block it."""

    APPROVE = "approve"
    BLOCK = "block"


class ScanProvenance(StrEnum):
    """Who ran a scan the registry records; only registry-run scans calibrate others.

    Set by how the scan reached the service — the embedded registry
    (:class:`registry.client.LocalRegistry`) marks its own, an API route marks
    what a client reported — never by anything in a request body.
    """

    REGISTRY = "registry"  # run by the registry itself, in its own process tree
    CLIENT = "client"  # reported by a client over the REST API
