"""Pure lineage logic: the graph, its walks and infection propagation. No I/O."""

from lineage.errors import (
    ConflictingEdgeError,
    CycleError,
    LineageError,
    NoInfectionPathError,
    UnknownNodeError,
)
from lineage.graph import (
    check_new_parents,
    depth_of,
    lineage_graph,
    shortest_paths_from,
    topological_order,
)
from lineage.propagation import (
    Finding,
    Reach,
    Status,
    effective_status,
    infection_path,
    propagate_infection,
    recompute_statuses,
)
from lineage.relations import (
    DATASET_USES,
    DEFAULT_PROPAGATION,
    MODEL_RELATIONS,
    DatasetUse,
    ModelRelation,
    Relation,
)

__all__ = [
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
]
