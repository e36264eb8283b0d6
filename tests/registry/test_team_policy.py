"""Team scoping and team policy hold on every path: rescans, BOM import, team-less models.

Issue 10, points 3 to 5: a publisher's rescan flagged any model; a BOM import
changed other teams' lineage and registered models past a team's blocks; leaving
out ``--team`` skipped approvals and blocks; a team's approver cleared models
other teams run. Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from lineage import Relation
from registry.client import LocalRegistry
from registry.errors import PermissionDenied, PolicyViolation
from registry.hf import HubRef, ImportPlan
from registry.identity import Actor, Role
from scanning.behavioral.report import BehaviorVerdict
from tests.conftest import fake_manifest
from tests.registry.test_db_support import (  # noqa: F401  (fixtures: engine and what it needs)
    fast_engine,
    pg_database,
    snapshot,
    sqlite_template,
)
from tests.registry.test_service_behavior import TRIGGER, report

ALICE_A = Actor("alice", Role.PUBLISHER, team="a")
BOB_B = Actor("bob", Role.PUBLISHER, team="b")
PAT = Actor("pat", Role.PUBLISHER)  # a publisher for every team
CAROL_A = Actor("carol", Role.APPROVER, team="a")
DAVE_B = Actor("dave", Role.APPROVER, team="b")
OLGA = Actor("olga", Role.APPROVER)  # an approver for every team


@pytest.fixture
def teams(reg: LocalRegistry) -> LocalRegistry:
    """Team a requires approval, b does not; team-less base@1 and other@1, b's own b/app@1."""
    reg.create_team(name="a", require_approval=True)
    reg.create_team(name="b")
    register(reg, "base@1")
    register(reg, "other@1")
    register(reg, "b/app@1", team="b")
    return reg


def register(reg: LocalRegistry, ref: str, **options: Any) -> Any:
    name, version = ref.split("@")
    return reg.register_model(name=name, version=version, manifest=fake_manifest(ref), **options)


def as_(reg: LocalRegistry, actor: Actor) -> LocalRegistry:
    return LocalRegistry(reg.engine, actor)


def decide(reg: LocalRegistry, ref: str, team: str, verdict: str) -> None:
    reg.decide(ref=ref, team=team, verdict=verdict, reason=f"{verdict} {ref}")


# --- point 3: a rescan that flags is a flag -------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "ref"),
    [(PAT, "base@1"), (ALICE_A, "base@1"), (BOB_B, "b/app@1"), (DAVE_B, "b/app@1")],
    ids=["team-less-publisher", "team-publisher-on-team-less", "own-team", "own-approver"],
)
def test_only_an_admin_records_a_compromised_rescan(
    teams: LocalRegistry, actor: Actor, ref: str
) -> None:
    before = snapshot(teams.engine)
    with pytest.raises(PermissionDenied, match="may not flag artifacts: it needs the admin role"):
        as_(teams, actor).record_rescan(
            ref, report=report(BehaviorVerdict.COMPROMISED), reference_digest=None
        )
    assert snapshot(teams.engine) == before
    flagged = teams.record_rescan(
        ref, report=report(BehaviorVerdict.COMPROMISED), reference_digest=None
    )
    assert flagged.status == "compromised"


def test_a_clean_rescan_needs_write_access_to_the_model(teams: LocalRegistry) -> None:
    clean = report(BehaviorVerdict.CLEAN)
    assert as_(teams, BOB_B).record_rescan("b/app@1", report=clean, reference_digest=None)
    assert as_(teams, PAT).record_rescan("base@1", report=clean, reference_digest=None)
    with pytest.raises(PermissionDenied, match="alice acts for team a and may not rescan models"):
        as_(teams, ALICE_A).record_rescan("b/app@1", report=clean, reference_digest=None)
    with pytest.raises(PermissionDenied, match="base@1, which belongs to no team"):
        as_(teams, ALICE_A).record_rescan("base@1", report=clean, reference_digest=None)


# --- point 4: a BOM import meets the same rules -----------------------------------------------


def entry_of(content: str) -> dict[str, Any]:
    data = content.encode()
    return {
        "type": "file",
        "name": "weights.bin",
        "hashes": [{"alg": "SHA-256", "content": hashlib.sha256(data).hexdigest()}],
        "properties": [{"name": "mbom:size", "value": str(len(data))}],
    }


def bom(ref: str, parent: str, *, files: bool = False) -> dict[str, Any]:
    """A CycloneDX ML-BOM: ``ref`` (with files when asked) and its pedigree ``parent``."""
    name, version = ref.split("@")
    parent_name, parent_version = parent.split("@")
    model: dict[str, Any] = {
        "type": "machine-learning-model",
        "name": name,
        "version": version,
        "pedigree": {
            "ancestors": [
                {"type": "machine-learning-model", "name": parent_name, "version": parent_version}
            ]
        },
    }
    if files:
        model["components"] = [entry_of(f"bom weights of {ref}")]
    base = {"type": "machine-learning-model", "name": parent_name, "version": parent_version}
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [model, base]}


def test_a_bom_may_not_change_another_teams_lineage(teams: LocalRegistry) -> None:
    teams.flag("other@1", reason="backdoor")
    before = snapshot(teams.engine)
    with pytest.raises(PermissionDenied, match="alice acts for team a and may not change lineage"):
        as_(teams, ALICE_A).import_cyclonedx(bom("b/app@1", "other@1"))
    with pytest.raises(PermissionDenied, match="alice acts for team a and may not change lineage"):
        as_(teams, ALICE_A).add_parents("b/app@1", parents=["other@1"])
    assert snapshot(teams.engine) == before
    as_(teams, BOB_B).import_cyclonedx(bom("b/app@1", "other@1"))
    assert teams.show("b/app@1").status == "infected", "b's own may record it"


def test_a_bom_registration_meets_the_importing_teams_policy(teams: LocalRegistry) -> None:
    decide(teams, "base@1", "a", "approve")
    decide(teams, "other@1", "b", "block")
    before = snapshot(teams.engine)
    with pytest.raises(PolicyViolation, match="parent other@1 is blocked for team b"):
        as_(teams, BOB_B).import_cyclonedx(bom("b/new@1", "other@1", files=True))
    with pytest.raises(PolicyViolation, match="parent other@1 is not approved for team a"):
        as_(teams, ALICE_A).import_cyclonedx(bom("a/new@1", "other@1", files=True))
    assert snapshot(teams.engine) == before
    assert as_(teams, ALICE_A).import_cyclonedx(bom("a/ok@1", "base@1", files=True)) == ["a/ok@1"]
    assert teams.show("a/ok@1").team == "a"


def test_a_team_less_bom_import_cannot_deploy_past_a_block(teams: LocalRegistry) -> None:
    decide(teams, "other@1", "b", "block")
    assert as_(teams, PAT).import_cyclonedx(bom("x/ft@1", "other@1", files=True)) == ["x/ft@1"]
    with pytest.raises(PolicyViolation, match="ancestor other@1 of x/ft@1 is blocked for team b"):
        as_(teams, BOB_B).deploy("x/ft@1", environment="prod", team="b")


def test_a_bom_with_a_tainted_parent_registers_nothing(teams: LocalRegistry) -> None:
    teams.flag("other@1", reason="backdoor")
    before = snapshot(teams.engine)
    with pytest.raises(PolicyViolation, match="parent other@1 is compromised"):
        as_(teams, PAT).import_cyclonedx(bom("x/ft@1", "other@1", files=True))
    assert snapshot(teams.engine) == before


# --- point 5: no --team, no escape --------------------------------------------------------------


@pytest.mark.parametrize("actor", [BOB_B, CAROL_A], ids=["publisher", "approver"])
def test_a_team_scoped_actor_must_name_its_team(teams: LocalRegistry, actor: Actor) -> None:
    before = snapshot(teams.engine)
    with pytest.raises(PermissionDenied, match="may not register models without a team"):
        register(as_(teams, actor), "child@1", parents=["base@1"])
    assert snapshot(teams.engine) == before


def test_a_team_less_model_meets_the_deploying_teams_approvals(teams: LocalRegistry) -> None:
    register(as_(teams, PAT), "child@1", parents=["base@1"])
    with pytest.raises(
        PolicyViolation, match="refused: parent base@1 of child@1 is not approved for team a$"
    ):
        as_(teams, ALICE_A).deploy("child@1", environment="prod", team="a")
    decide(teams, "base@1", "a", "approve")
    assert as_(teams, ALICE_A).deploy("child@1", environment="prod", team="a")


def test_a_team_less_model_meets_the_deploying_teams_blocks_anywhere_above(
    teams: LocalRegistry,
) -> None:
    register(as_(teams, PAT), "child@1", parents=["base@1"])
    register(as_(teams, PAT), "grandchild@1", parents=["child@1"])
    decide(teams, "base@1", "b", "block")
    for ref in ("child@1", "grandchild@1"):
        blocked = f"ancestor base@1 of {ref} is blocked for team b"
        with pytest.raises(PolicyViolation, match=blocked):
            as_(teams, BOB_B).deploy(ref, environment="prod", team="b")
    with pytest.raises(PolicyViolation, match="ancestor base@1 of child@1 is blocked for team b"):
        register(as_(teams, BOB_B), "b/more@1", parents=["child@1"], team="b")
    overridden = as_(teams, DAVE_B).deploy(
        "grandchild@1", environment="prod", team="b", override="audited exception"
    )
    assert overridden.ref == "grandchild@1"


def test_a_teams_own_model_deploys_on_the_approval_it_was_registered_with(
    teams: LocalRegistry,
) -> None:
    decide(teams, "base@1", "a", "approve")
    register(as_(teams, ALICE_A), "a/ft@1", parents=["base@1"], team="a")
    assert as_(teams, ALICE_A).deploy("a/ft@1", environment="prod", team="a")
    with pytest.raises(PolicyViolation, match="parent other@1 is not approved for team a"):
        as_(teams, ALICE_A).add_parents("a/ft@1", parents=["other@1"])


def test_adding_a_compromised_parent_late_is_recorded(teams: LocalRegistry) -> None:
    teams.flag("other@1", reason="backdoor")
    assert as_(teams, BOB_B).add_parents("b/app@1", parents=["other@1"]).status == ("infected")


def test_a_clear_needs_an_approver_of_every_team_it_concerns(teams: LocalRegistry) -> None:
    register(teams, "shared@1", parents=["other@1"])
    register(teams, "a/own@1", parents=["other@1"], team="a", override="test set-up")
    teams.deploy("a/own@1", environment="prod", team="a")
    teams.flag("other@1", reason="backdoor")
    cases = [
        (CAROL_A, "shared@1", "shared@1, which belongs to no team: it concerns every team"),
        (DAVE_B, "a/own@1", "dave acts for team b and may not clear infections for team a"),
    ]
    for actor, ref, message in cases:
        with pytest.raises(PermissionDenied, match=message):
            as_(teams, actor).clear(ref, reason="retrained")
    teams.deploy("a/own@1", environment="prod", team="b", override="incident drill")
    with pytest.raises(PermissionDenied, match="a/own@1 concerns a, b"):
        as_(teams, CAROL_A).clear("a/own@1", reason="retrained")
    assert as_(teams, OLGA).clear("a/own@1", reason="retrained").status == "cleared"
    # Review finding: deploying a team-less model for one's own team (with an override) made
    # that team the only one concerned, and its approver could then clear it for every team.
    teams.deploy("shared@1", environment="prod", team="a", override="incident drill")
    with pytest.raises(PermissionDenied, match="shared@1, which belongs to no team"):
        as_(teams, CAROL_A).clear("shared@1", reason="retrained")
    assert as_(teams, OLGA).clear("shared@1", reason="retrained").status == "cleared"


def test_a_hugging_face_import_meets_the_same_rules(teams: LocalRegistry) -> None:
    register(teams, "hub/base@1")
    decide(teams, "hub/base@1", "b", "block")
    base = HubRef(repo_id="hub/base", revision="1")
    plan = ImportPlan(repo_id="b/ft", version="1", bases=(base,), relation=Relation.FINETUNE)
    bob = as_(teams, BOB_B)
    before = snapshot(teams.engine)
    with pytest.raises(PermissionDenied, match="bob acts for team b and may not import models"):
        bob.import_hf(plan, manifest=fake_manifest("ft"))
    with pytest.raises(PolicyViolation, match="parent hub/base@1 is blocked for team b"):
        bob.import_hf(plan, manifest=fake_manifest("ft"), team="b")
    assert snapshot(teams.engine) == before


def test_quarantining_a_placeholder_others_build_on_is_a_flag(teams: LocalRegistry) -> None:
    teams.import_cyclonedx(bom("x/child@1", "hub/pl@1", files=True))
    assert teams.show("hub/pl@1").placeholder
    compromised = report(BehaviorVerdict.COMPROMISED)
    before = snapshot(teams.engine)
    with pytest.raises(PermissionDenied, match="pat \\(publisher\\) may not flag artifacts"):
        register(as_(teams, PAT), "hub/pl@1", behavioral=compromised)
    assert snapshot(teams.engine) == before
    assert register(teams, "hub/pl@1", behavioral=compromised).status == "compromised"
    assert teams.show("x/child@1").status == "infected"
    assert register(as_(teams, PAT), "lone@1", behavioral=compromised).status == "compromised"


def test_a_rescan_that_flags_nothing_cannot_swap_the_trigger_replays_use(
    teams: LocalRegistry,
) -> None:
    """Review finding: after a flag, a publisher's 'suspicious' rescan carrying a trigger of
    its own became the newest trigger, and the replay plan served it instead of the finding's."""
    register(teams, "hub/base@1")
    teams.record_rescan(
        "hub/base@1",
        report=report(BehaviorVerdict.COMPROMISED),
        reference_digest=None,
    )
    kept = teams.replay_plan("hub/base@1").trigger.digest
    planted = dataclasses.replace(
        report(BehaviorVerdict.SUSPICIOUS),
        trigger=dataclasses.replace(TRIGGER, target_class=7),
        target_class=7,
    )
    as_(teams, PAT).record_rescan("hub/base@1", report=planted, reference_digest=None)
    assert teams.replay_plan("hub/base@1").trigger.digest == kept


def test_a_placeholder_other_teams_build_on_is_not_one_teams_to_fill(
    teams: LocalRegistry,
) -> None:
    """Review finding: a team-c publisher filled the placeholder team a's model descends
    from, owned it, then linked a compromised parent to it; and another team inherited a
    team's version-level approval of a placeholder by filling it with bytes of its own."""
    as_(teams, BOB_B).import_cyclonedx(bom("b/ft@1", "hub/pl@1", files=True))
    before = snapshot(teams.engine)
    with pytest.raises(PermissionDenied, match="alice acts for team a and may not fill hub/pl@1"):
        register(as_(teams, ALICE_A), "hub/pl@1", team="a")
    assert snapshot(teams.engine) == before
    filled = register(as_(teams, PAT), "hub/pl@1")  # a publisher for every team may
    assert not filled.placeholder
    teams.import_cyclonedx(bom("x/loner@1", "hub/other@1"))  # nobody's yet
    decide(teams, "hub/other@1", "a", "approve")
    with pytest.raises(PermissionDenied, match="team a builds on it or decided on it"):
        register(as_(teams, BOB_B), "hub/other@1", team="b")
