"""The domain operations: the one place the CLI, the REST API and the pages call.

Every function takes an open :class:`sqlmodel.Session` (one unit of work, see
:func:`registry.db.unit_of_work`), its main argument positionally and the rest
keyword-only, and returns the public views of :mod:`registry.schemas`.
The bills of materials (:mod:`registry.bom`) are built on these operations and
are not re-exported here: the service layer never imports the layers above it.
"""

from registry.service.access import (
    authenticate,
    create_token,
    enroll_key,
    list_keys,
    list_tokens,
    revoke_token,
)
from registry.service.artifacts import (
    add_parents,
    count_artifacts,
    identify,
    list_artifacts,
    register_dataset,
    register_model,
    show,
    verify,
)
from registry.service.audit import anchor_chain, count_events, list_events, verify_chain
from registry.service.behavior import baseline as behavior_baseline
from registry.service.behavior import (
    inherited_profile,
    profile_of,
    record_replays,
    record_rescan,
    replay_plan,
)
from registry.service.deployments import count_deployments, deploy, list_deployments, undeploy
from registry.service.exposure import pulls_of
from registry.service.flags import clear, flag, status_report, unflag
from registry.service.hf_import import import_hf
from registry.service.ossf_signing import model_signing_bundle
from registry.service.ossf_verify import verify_model_signing
from registry.service.pending import list_pending
from registry.service.policy import (
    count_decisions,
    create_team,
    decide,
    list_decisions,
    list_teams,
)
from registry.service.pulls import start_pull
from registry.service.queries import ancestors, blast_radius, deployed_descendants, descendants
from registry.service.status import find_inconsistencies
from registry.service.stored import record_blobs
from registry.service.triggers import attach_trigger

__all__ = [
    "count_artifacts",
    "count_decisions",
    "count_deployments",
    "count_events",
    "list_pending",
    "pulls_of",
    "record_blobs",
    "start_pull",
    "replay_plan",
    "record_rescan",
    "record_replays",
    "profile_of",
    "inherited_profile",
    "behavior_baseline",
    "attach_trigger",
    "add_parents",
    "anchor_chain",
    "ancestors",
    "authenticate",
    "clear",
    "create_team",
    "create_token",
    "decide",
    "deploy",
    "deployed_descendants",
    "blast_radius",
    "descendants",
    "enroll_key",
    "find_inconsistencies",
    "flag",
    "identify",
    "import_hf",
    "list_artifacts",
    "list_decisions",
    "list_deployments",
    "list_events",
    "list_keys",
    "list_teams",
    "list_tokens",
    "model_signing_bundle",
    "register_dataset",
    "register_model",
    "revoke_token",
    "show",
    "status_report",
    "undeploy",
    "unflag",
    "verify",
    "verify_chain",
    "verify_model_signing",
]
