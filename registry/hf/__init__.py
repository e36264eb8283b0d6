"""Hugging Face interop: snapshots, model cards and published hashes, read offline.

* :func:`locate_snapshot` finds a snapshot directory, or resolves ``org/name``
  at a revision in the local cache;
* :func:`plan_import` reads its model card (``base_model``,
  ``base_model_relation``, ``datasets``…) into an :class:`ImportPlan`, which
  :func:`registry.service.import_hf` registers in one transaction;
* :class:`HubFiles` and :func:`check_against_hub` compare a snapshot with the
  per-file hashes ``HfApi.model_info(files_metadata=True)`` publishes.

Nothing here touches the database, and ``huggingface_hub`` is imported only
inside the functions that read a cache or a card.
"""

from registry.hf._card import CardFacts, read_card
from registry.hf._hub_hashes import (
    HubFileCheck,
    HubFiles,
    HubLfs,
    HubSibling,
    HubVerifyReport,
    check_against_hub,
    git_blob_sha1,
)
from registry.hf._plan import HUB_RELATIONS, ImportPlan
from registry.hf._planner import infer_relation, plan_import
from registry.hf._refs import UNPINNED, HubRef, check_repo_id
from registry.hf._snapshot import Snapshot, blobs_dir_of, locate_snapshot

__all__ = [
    "HUB_RELATIONS",
    "UNPINNED",
    "CardFacts",
    "HubFileCheck",
    "HubFiles",
    "HubLfs",
    "HubRef",
    "HubSibling",
    "HubVerifyReport",
    "ImportPlan",
    "Snapshot",
    "blobs_dir_of",
    "check_against_hub",
    "check_repo_id",
    "git_blob_sha1",
    "infer_relation",
    "locate_snapshot",
    "plan_import",
    "read_card",
]
