"""Flag, propagate, unflag and clear through the service layer."""

from __future__ import annotations

import pytest

from lineage import Relation
from registry.client import LocalRegistry
from registry.errors import Conflict, InvalidInput, PermissionDenied, PolicyViolation
from registry.identity import Actor, Role
from tests.conftest import fake_manifest


@pytest.fixture
def cascade(reg: LocalRegistry) -> LocalRegistry:
    """base -> ft -> app, base -> ft2; data -> ft2; unrelated -> other."""
    reg.register_model(name="base", version="1", manifest=fake_manifest("base"))
    reg.register_model(name="ft", version="1", manifest=fake_manifest("ft"), parents=["base@1"]
    )
    reg.register_model(name="app", version="1", manifest=fake_manifest("app"), parents=["ft@1"]
    )
    reg.register_dataset(name="data", version="1", digest="sha256:" + "d" * 64)
    reg.register_model(name="ft2",
        version="1",
        manifest=fake_manifest("ft2"),
        parents=["base@1"],
        datasets=[("data@1", Relation.FINE_TUNED_ON)],
    )
    reg.register_model(name="other", version="1", manifest=fake_manifest("other"))
    reg.create_team(name="fraud")
    reg.deploy("app@1", environment="prod", team="fraud")
    return reg


def statuses(reg: LocalRegistry) -> dict[str, str]:
    return {a.ref: a.status for a in reg.list_artifacts(kind="model")}


def test_flag_infects_every_descendant_and_reports_deployments(cascade: LocalRegistry) -> None:
    change = cascade.flag("base@1", reason="backdoor found")
    assert change.status == "compromised"
    assert {e.ref: e.path for e in change.changed} == {
        "ft@1": ["base@1", "ft@1"],
        "ft2@1": ["base@1", "ft2@1"],
        "app@1": ["base@1", "ft@1", "app@1"],
    }
    assert [(d.ref, d.environment, d.team, d.path) for d in change.deployments] == [
        ("app@1", "prod", "fraud", ["base@1", "ft@1", "app@1"])
    ]
    assert statuses(cascade) == {
        "base@1": "compromised",
        "ft@1": "infected",
        "app@1": "infected",
        "ft2@1": "infected",
        "other@1": "clean",
    }
    assert cascade.find_inconsistencies() == []


def test_dataset_flag_infects_models_fine_tuned_on_it(cascade: LocalRegistry) -> None:
    cascade.flag("data@1", reason="poisoned labels")
    report = cascade.status_report("ft2@1")
    assert report.status == "infected"
    assert [(s.source, s.source_kind, s.path, s.reasons) for s in report.sources] == [
        ("data@1", "dataset", ["data@1", "ft2@1"], ["poisoned labels"])
    ]
    assert statuses(cascade)["ft@1"] == "clean"


def test_evaluated_on_does_not_propagate(reg: LocalRegistry) -> None:
    reg.register_dataset(name="bench", version="1", digest="sha256:" + "b" * 64)
    reg.register_model(name="m",
        version="1",
        manifest=fake_manifest("m"),
        datasets=[("bench@1", Relation.EVALUATED_ON)],
    )
    reg.flag("bench@1", reason="leaked")
    assert reg.status_report("m@1").status == "clean"


def test_status_lists_every_source_nearest_first(cascade: LocalRegistry) -> None:
    cascade.flag("base@1", reason="backdoor")
    cascade.flag("data@1", reason="poison")
    sources = cascade.status_report("ft2@1").sources
    assert [(s.source, s.depth) for s in sources] == [("base@1", 1), ("data@1", 1)]


def test_unflag_recomputes_descendants(cascade: LocalRegistry) -> None:
    cascade.flag("base@1", reason="scanner hit")
    change = cascade.unflag("base@1", reason="false positive")
    assert change.status == "clean"
    assert {e.ref for e in change.changed} == {"ft@1", "ft2@1", "app@1"}
    assert set(statuses(cascade).values()) == {"clean"}
    assert cascade.show("base@1").finding == "unscanned"
    assert cascade.find_inconsistencies() == []


def test_unflag_keeps_other_sources(cascade: LocalRegistry) -> None:
    cascade.flag("base@1", reason="a")
    cascade.flag("data@1", reason="b")
    cascade.unflag("base@1", reason="fp")
    assert statuses(cascade)["ft2@1"] == "infected"
    assert statuses(cascade)["ft@1"] == "clean"


def test_clear_covers_only_current_sources(cascade: LocalRegistry) -> None:
    cascade.flag("base@1", reason="a")
    assert cascade.clear("ft2@1", reason="retrained from scratch").status == "cleared"
    cascade.flag("data@1", reason="b")
    report = cascade.status_report("ft2@1")
    assert report.status == "infected"
    assert {s.source: s.cleared for s in report.sources} == {"base@1": True, "data@1": False}


def test_clear_refuses_clean_and_compromised(cascade: LocalRegistry) -> None:
    with pytest.raises(PolicyViolation, match="only an inherited infection"):
        cascade.clear("ft@1", reason="x")
    cascade.flag("base@1", reason="a")
    with pytest.raises(PolicyViolation, match="compromised"):
        cascade.clear("base@1", reason="x")


def test_clear_needs_an_approver(cascade: LocalRegistry) -> None:
    cascade.flag("base@1", reason="a")
    publisher = LocalRegistry(cascade.engine, Actor("bob", Role.PUBLISHER))
    with pytest.raises(PermissionDenied, match="approver"):
        publisher.clear("ft@1", reason="trust me")


def test_flag_twice_and_unflag_unflagged_are_refused(cascade: LocalRegistry) -> None:
    cascade.flag("base@1", reason="a")
    with pytest.raises(Conflict, match="flagged already"):
        cascade.flag("base@1", reason="again")
    with pytest.raises(InvalidInput, match="is not flagged"):
        cascade.unflag("ft@1", reason="x")


def test_flag_needs_reason_and_admin(cascade: LocalRegistry) -> None:
    with pytest.raises(InvalidInput, match="needs a --reason"):
        cascade.flag("base@1", reason="  ")
    approver = LocalRegistry(cascade.engine, Actor("carol", Role.APPROVER))
    with pytest.raises(PermissionDenied, match="admin"):
        approver.flag("base@1", reason="x")


def test_flag_blocks_for_every_team_and_refuses_deploys(cascade: LocalRegistry) -> None:
    cascade.flag("base@1", reason="backdoor")
    decisions = cascade.list_decisions(team="fraud")
    assert [(d.subject, d.team, d.verdict, d.origin) for d in decisions] == [
        ("base@1", None, "block", "flag")
    ]
    with pytest.raises(PolicyViolation, match="ft@1 is infected"):
        cascade.deploy("ft@1", environment="prod", team="fraud")


def test_merge_child_inherits_from_both_parents(reg: LocalRegistry) -> None:
    reg.register_model(name="a", version="1", manifest=fake_manifest("a"))
    reg.register_model(name="b", version="1", manifest=fake_manifest("b"))
    reg.register_model(name="m",
        version="1",
        manifest=fake_manifest("m"),
        parents=["a@1", "b@1"],
        relation=Relation.MERGE,
    )
    reg.flag("a@1", reason="x")
    reg.flag("b@1", reason="y")
    assert [s.source for s in reg.status_report("m@1").sources] == ["a@1", "b@1"]
