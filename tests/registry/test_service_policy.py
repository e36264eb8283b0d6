"""Teams, approve/block decisions, overrides, and the deployment gate."""

from __future__ import annotations

import pytest

from registry.client import LocalRegistry
from registry.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied, PolicyViolation
from registry.identity import Actor, Role
from tests.conftest import fake_manifest
from tests.registry.test_db_support import (  # noqa: F401  (fixtures: engine and what it needs)
    SQLITE_ONLY,
    fast_engine,
    pg_database,
    snapshot,
    sqlite_template,
)


@pytest.fixture
def teams(reg: LocalRegistry) -> LocalRegistry:
    """Teams a (requires approval) and b (does not); base@1, base@2 and other@1."""
    reg.create_team(name="a", require_approval=True)
    reg.create_team(name="b")
    for ref in ("base@1", "base@2", "other@1"):
        register(reg, ref)
    return reg


def register(reg: LocalRegistry, ref: str, **options: object) -> object:
    name, version = ref.split("@")
    return reg.register_model(name=name, version=version, manifest=fake_manifest(ref), **options)


def as_actor(reg: LocalRegistry, user: str, role: Role, team: str | None = None) -> LocalRegistry:
    return LocalRegistry(reg.engine, Actor(user, role, team=team))


def decide(reg: LocalRegistry, ref: str, team: str, verdict: str, **options: object) -> object:
    return reg.decide(ref=ref, team=team, verdict=verdict, reason=f"{verdict} {ref}", **options)


# --- teams ------------------------------------------------------------------------------


def test_teams_are_created_and_listed(teams: LocalRegistry) -> None:
    assert [(t.name, t.require_approval) for t in teams.list_teams()] == [
        ("a", True),
        ("b", False),
    ]


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("a", AlreadyExists, "team a is already registered"),
        ("two words", InvalidInput, "is not a team name"),
        ("  ", InvalidInput, "is not a team name"),
    ],
)
def test_bad_team_names_are_refused(
    teams: LocalRegistry, name: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        teams.create_team(name=name)


def test_only_admins_create_teams(teams: LocalRegistry) -> None:
    with pytest.raises(PermissionDenied, match="needs the admin role"):
        as_actor(teams, "carol", Role.APPROVER).create_team(name="c")


# --- approve and block ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decisions", "parent", "team", "refusal"),
    [
        ([], "base@1", "a", "parent base@1 is not approved for team a"),
        ([], "base@1", "b", None),
        ([], "base@1", None, None),
        ([("base@1", "a", "approve", False)], "base@1", "a", None),
        (
            [("base@1", "a", "approve", False)],
            "base@2",
            "a",
            "parent base@2 is not approved for team a",
        ),
        ([("base@1", "a", "approve", True)], "base@2", "a", None),
        ([("base@1", "b", "approve", True)], "base@1", "a", "not approved for team a"),
        (
            [("base@1", "b", "block", False)],
            "base@1",
            "b",
            "parent base@1 is blocked for team b: block base@1",
        ),
        ([("base@1", "b", "block", False)], "base@2", "b", None),
        ([("base@1", "b", "block", False)], "base@1", None, None),
        ([("base@1", "b", "block", True)], "base@2", "b", "parent base@2 is blocked for team b"),
        ([("base@1", "a", "block", False)], "base@1", "b", None),
        (
            [("base@1", "a", "approve", True), ("base@1", "a", "block", False)],
            "base@1",
            "a",
            "blocked for team a",
        ),
        ([("base@1", "a", "approve", True), ("base@1", "a", "block", False)], "base@2", "a", None),
        ([("base@1", "a", "block", True), ("base@1", "a", "approve", False)], "base@1", "a", None),
        (
            [("base@1", "a", "block", True), ("base@1", "a", "approve", False)],
            "base@2",
            "a",
            "blocked for team a",
        ),
        ([("base@1", "a", "block", False), ("base@1", "a", "approve", False)], "base@1", "a", None),
        (
            [("base@1", "a", "approve", False), ("base@1", "a", "block", False)],
            "base@1",
            "a",
            "blocked",
        ),
    ],
)
def test_registration_follows_the_teams_decisions(
    teams: LocalRegistry,
    decisions: list[tuple[str, str, str, bool]],
    parent: str,
    team: str | None,
    refusal: str | None,
) -> None:
    for ref, for_team, verdict, all_versions in decisions:
        decide(teams, ref, for_team, verdict, all_versions=all_versions)
    if refusal is None:
        assert register(teams, "child@1", parents=[parent], team=team).team == team
        return
    before = snapshot(teams.engine)
    with pytest.raises(PolicyViolation, match=refusal):
        register(teams, "child@1", parents=[parent], team=team)
    assert snapshot(teams.engine) == before


def test_every_violating_parent_is_named(teams: LocalRegistry) -> None:
    decide(teams, "base@1", "a", "block")
    with pytest.raises(
        PolicyViolation,
        match=(
            "refused: parent base@1 is blocked for team a: block base@1; "
            "parent other@1 is not approved for team a"
        ),
    ) as caught:
        register(teams, "child@1", parents=["base@1", "other@1"], team="a")
    assert caught.value.hint == "an approver of the team may pass --override REASON"


def test_decisions_are_listed_per_team_with_the_global_ones(teams: LocalRegistry) -> None:
    decide(teams, "base@1", "a", "approve", all_versions=True)
    decide(teams, "base@2", "b", "block")
    teams.flag("other@1", reason="backdoor")
    listed = {
        team: [(d.subject, d.team, d.verdict, d.origin) for d in teams.list_decisions(team=team)]
        for team in ("a", "b", None)
    }
    assert listed == {
        "a": [("base@*", "a", "approve", "person"), ("other@1", None, "block", "flag")],
        "b": [("base@2", "b", "block", "person"), ("other@1", None, "block", "flag")],
        None: [
            ("base@*", "a", "approve", "person"),
            ("base@2", "b", "block", "person"),
            ("other@1", None, "block", "flag"),
        ],
    }


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"ref": "nope@1"}, NotFound, "model nope@1 is not registered"),
        ({"ref": "data@1"}, NotFound, "model data@1 is not registered"),
        ({"team": "nobody"}, NotFound, "team nobody is not registered"),
        ({"reason": " "}, InvalidInput, "a decision needs a --reason"),
    ],
)
def test_bad_decisions_are_refused(
    teams: LocalRegistry, options: dict[str, str], error: type[Exception], message: str
) -> None:
    teams.register_dataset(name="data", version="1", digest="sha256:" + "d" * 64)
    before = snapshot(teams.engine)
    with pytest.raises(error, match=message):
        teams.decide(**{"ref": "base@1", "team": "a", "verdict": "block", "reason": "r", **options})
    assert snapshot(teams.engine) == before


@pytest.mark.parametrize(
    ("actor", "team", "message"),
    [
        (
            Actor("carol", Role.APPROVER, team="a"),
            "b",
            "carol acts for team a and may not block models for team b",
        ),
        (Actor("bob", Role.PUBLISHER, team="a"), "a", "bob \\(publisher\\) may not block models"),
        (Actor("eve", Role.READER), "a", "needs the approver role"),
    ],
)
def test_only_the_teams_approvers_decide(
    teams: LocalRegistry, actor: Actor, team: str, message: str
) -> None:
    with pytest.raises(PermissionDenied, match=message):
        LocalRegistry(teams.engine, actor).decide(
            ref="base@1", team=team, verdict="block", reason="r"
        )


def test_a_scoped_approver_decides_for_their_own_team(teams: LocalRegistry) -> None:
    carol = as_actor(teams, "carol", Role.APPROVER, team="a")
    decision = carol.decide(ref="base@1", team="a", verdict="approve", reason="reviewed")
    assert (decision.team, decision.subject, decision.actor, decision.active) == (
        "a",
        "base@1",
        "carol",
        True,
    )
    assert register(carol, "child@1", parents=["base@1"], team="a").created_by == "carol"


# --- overrides --------------------------------------------------------------------------


def test_an_approvers_override_is_audited_with_what_it_overrode(teams: LocalRegistry) -> None:
    decide(teams, "base@1", "a", "block")
    carol = as_actor(teams, "carol", Role.APPROVER, team="a")
    created = register(carol, "child@1", parents=["base@1"], team="a", override="emergency fix")
    assert created.ref == "child@1"
    events = [(e.operation, e.actor, e.details) for e in teams.list_events(subject="child@1")]
    assert events[0] == (
        "policy.override",
        "carol",
        {
            "team": "a",
            "reason": "emergency fix",
            "overridden": ["parent base@1 is blocked for team a: block base@1"],
        },
    )
    assert [operation for operation, _, _ in events] == ["policy.override", "register"]


@pytest.mark.parametrize(
    ("actor", "override", "error", "message"),
    [
        (
            Actor("bob", Role.PUBLISHER, team="a"),
            "trust me",
            PermissionDenied,
            "may not override the policy: it needs the approver role",
        ),
        (Actor("alice", Role.ADMIN), "  ", InvalidInput, "--override needs a reason"),
    ],
)
def test_overrides_need_an_approver_and_a_reason(
    teams: LocalRegistry, actor: Actor, override: str, error: type[Exception], message: str
) -> None:
    decide(teams, "base@1", "a", "block")
    before = snapshot(teams.engine)
    with pytest.raises(error, match=message):
        register(
            LocalRegistry(teams.engine, actor),
            "child@1",
            parents=["base@1"],
            team="a",
            override=override,
        )
    assert snapshot(teams.engine) == before


def test_an_override_without_violations_is_not_recorded(teams: LocalRegistry) -> None:
    register(teams, "child@1", parents=["base@1"], team="b", override="not needed")
    assert [e.operation for e in teams.list_events(subject="child@1")] == ["register"]


# --- flags block everywhere -------------------------------------------------------------


def test_a_flag_blocks_for_every_team_and_unflag_lifts_it(teams: LocalRegistry) -> None:
    decide(teams, "base@1", "a", "approve")
    teams.flag("base@1", reason="backdoor")
    for team in ("a", "b"):
        with pytest.raises(
            PolicyViolation,
            match=(
                "parent base@1 is compromised; "
                "parent base@1 is blocked for every team: flagged: backdoor"
            ),
        ):
            register(teams, f"child-{team}@1", parents=["base@1"], team=team)
    teams.unflag("base@1", reason="false positive")
    assert [d.origin for d in teams.list_decisions(team="a")] == ["person"]
    assert register(teams, "child@1", parents=["base@1"], team="a").status == "clean"


def test_a_flag_block_outranks_a_team_approval(teams: LocalRegistry) -> None:
    teams.flag("base@1", reason="backdoor")
    decide(teams, "base@1", "a", "approve")
    with pytest.raises(PolicyViolation, match="blocked for every team"):
        teams.deploy("base@1", environment="prod", team="a")


def test_only_an_approver_of_the_models_team_clears_it(teams: LocalRegistry) -> None:
    register(teams, "ft@1", parents=["other@1"], team="b")
    teams.flag("other@1", reason="backdoor")
    for actor, message in [
        (Actor("carol", Role.APPROVER, team="a"), "carol acts for team a and may not clear"),
        (Actor("bob", Role.PUBLISHER, team="b"), "needs the approver role"),
    ]:
        with pytest.raises(PermissionDenied, match=message):
            LocalRegistry(teams.engine, actor).clear("ft@1", reason="retrained")
    dave = as_actor(teams, "dave", Role.APPROVER, team="b")
    assert dave.clear("ft@1", reason="retrained").status == "cleared"


def test_tainted_parents_are_refused_but_cleared_ones_are_not(teams: LocalRegistry) -> None:
    register(teams, "ft@1", parents=["other@1"])
    teams.flag("other@1", reason="backdoor")
    with pytest.raises(PolicyViolation, match="refused: parent ft@1 is infected$"):
        register(teams, "app@1", parents=["ft@1"])
    teams.clear("ft@1", reason="retrained from clean data")
    assert register(teams, "app@1", parents=["ft@1"]).ref == "app@1"


# --- deployments ------------------------------------------------------------------------


@pytest.fixture
def infected(teams: LocalRegistry) -> LocalRegistry:
    """other@1 flagged; ft@1 (its child) infected; base@1 blocked for team a."""
    register(teams, "ft@1", parents=["other@1"])
    teams.flag("other@1", reason="backdoor")
    decide(teams, "base@1", "a", "block")
    return teams


@pytest.mark.parametrize(
    ("ref", "team", "refusal"),
    [
        (
            "other@1",
            "b",
            "refused: other@1 is compromised; other@1 is blocked for every team: flagged: backdoor",
        ),
        ("ft@1", "b", "refused: ft@1 is infected$"),
        ("base@1", "a", "refused: base@1 is blocked for team a: block base@1"),
        ("base@1", "b", None),
        ("base@2", "a", None),
    ],
)
def test_deployments_are_gated_by_status_and_decisions(
    infected: LocalRegistry, ref: str, team: str, refusal: str | None
) -> None:
    if refusal is None:
        deployed = infected.deploy(ref, environment="prod", team=team)
        assert (deployed.ref, deployed.environment, deployed.team, deployed.active) == (
            ref,
            "prod",
            team,
            True,
        )
        return
    before = snapshot(infected.engine)
    with pytest.raises(PolicyViolation, match=refusal):
        infected.deploy(ref, environment="prod", team=team)
    assert snapshot(infected.engine) == before


def test_an_overridden_deployment_is_audited(infected: LocalRegistry) -> None:
    infected.deploy("ft@1", environment="prod", team="b", override="isolated sandbox")
    events = infected.list_events(subject="ft@1")
    assert [(e.operation, e.details) for e in events[-2:]] == [
        (
            "policy.override",
            {"team": "b", "reason": "isolated sandbox", "overridden": ["ft@1 is infected"]},
        ),
        ("deploy", {"environment": "prod", "team": "b"}),
    ]


def test_a_cleared_model_may_be_deployed(infected: LocalRegistry) -> None:
    infected.clear("ft@1", reason="replay failed")
    assert infected.deploy("ft@1", environment="prod", team="b").status == "cleared"


def test_deploy_and_undeploy(teams: LocalRegistry) -> None:
    teams.deploy("base@1", environment="prod", team="a")
    teams.deploy("base@1", environment="staging", team="a")
    teams.deploy("other@1", environment="prod", team="b")
    with pytest.raises(
        AlreadyExists, match="deployment of base@1 in prod for a is already registered"
    ):
        teams.deploy("base@1", environment="prod", team="a")
    ended = teams.undeploy("base@1", environment="prod", team="a")
    assert (ended.ref, ended.active) == ("base@1", False)
    with pytest.raises(NotFound, match="deployment of base@1 in prod for a is not registered"):
        teams.undeploy("base@1", environment="prod", team="a")
    listed = [(d.ref, d.environment, d.team) for d in teams.list_deployments()]
    assert listed == [("base@1", "staging", "a"), ("other@1", "prod", "b")]
    assert [d.ref for d in teams.list_deployments(team="b")] == ["other@1"]
    assert [d.ref for d in teams.list_deployments(environment="staging")] == ["base@1"]
    teams.deploy("base@1", environment="prod", team="a")
    assert len(teams.list_deployments(environment="prod")) == 2


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("ref", "options", "error", "message"),
    [
        ("base@1", {"environment": "my env"}, InvalidInput, "is not an environment name"),
        ("base@1", {"team": "nobody"}, NotFound, "team nobody is not registered"),
        ("nope@1", {}, NotFound, "model nope@1 is not registered"),
    ],
)
def test_bad_deployments_are_refused(
    teams: LocalRegistry, ref: str, options: dict[str, str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        teams.deploy(ref, **{"environment": "prod", "team": "a", **options})


@pytest.mark.parametrize(
    ("verb", "actor", "message"),
    [
        (
            "deploy",
            Actor("bob", Role.PUBLISHER, team="a"),
            "bob acts for team a and may not deploy models for team b",
        ),
        ("undeploy", Actor("bob", Role.PUBLISHER, team="a"), "may not undeploy models for team b"),
        ("deploy", Actor("eve", Role.READER), "needs the publisher role"),
    ],
)
def test_deployers_act_for_their_own_team(
    teams: LocalRegistry, verb: str, actor: Actor, message: str
) -> None:
    teams.deploy("base@1", environment="prod", team="b")
    with pytest.raises(PermissionDenied, match=message):
        LocalRegistry(teams.engine, actor).call(verb, "base@1", environment="prod", team="b")


def test_a_flag_reports_the_deployments_it_hits_and_unflag_reenables_deploys(
    teams: LocalRegistry,
) -> None:
    register(teams, "ft@1", parents=["base@1"])
    teams.deploy("ft@1", environment="prod", team="b")
    change = teams.flag("base@1", reason="backdoor")
    assert [(d.ref, d.team, d.status, d.path) for d in change.deployments] == [
        ("ft@1", "b", "infected", ["base@1", "ft@1"])
    ]
    with pytest.raises(PolicyViolation, match="ft@1 is infected"):
        teams.deploy("ft@1", environment="staging", team="b")
    teams.unflag("base@1", reason="false positive")
    assert teams.deploy("ft@1", environment="staging", team="b").status == "clean"
    assert teams.deploy("base@1", environment="prod", team="b").status == "clean"
