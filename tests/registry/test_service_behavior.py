"""The registry's side of behavioral scanning: profiles, admission, triggers, replays.

The scans themselves are exercised in tests/scanning and the CLI tests; here the
reports are built directly, so every registry rule is checked on SQLite and
PostgreSQL without loading a model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from registry.client import LocalRegistry
from registry.errors import InvalidInput, NotFound, PermissionDenied, PolicyViolation
from registry.identity import Actor, Role
from registry.schemas import ReplayIn
from scanning.behavioral.report import (
    BehavioralReport,
    BehaviorVerdict,
    DetectorResult,
    ReplayMeasure,
    ReplayOutcome,
    ReplayReport,
    ScanProfile,
    TriggerPattern,
)
from tests.conftest import fake_manifest

TRIGGER = TriggerPattern(
    mask=np.pad(np.ones((1, 2, 2), np.float32), ((0, 0), (6, 0), (6, 0))),
    pattern=np.ones((1, 8, 8), np.float32),
    target_class=0,
)


def profile(seed: int = 0) -> ScanProfile:
    """A valid digits-shaped profile: 30 references in [0, 1], labels 0..9."""
    rng = np.random.default_rng(seed)
    return ScanProfile(
        input_shape=(1, 8, 8),
        value_range=(0.0, 1.0),
        num_classes=10,
        x=rng.random((30, 1, 8, 8), dtype=np.float32),
        y=np.arange(30, dtype=np.int64) % 10,
    )


def report(verdict: BehaviorVerdict, *, statistic: float = 0.1) -> BehavioralReport:
    """A behavioral report as the detectors would give it."""
    found = verdict is BehaviorVerdict.COMPROMISED
    return BehavioralReport(
        verdict=verdict,
        score=5.0 if found else 0.2,
        detectors=(DetectorResult("neural_cleanse", statistic, 0.5, found, (0,) if found else ()),),
        target_class=0 if found else None,
        trigger=TRIGGER if found else None,
        trigger_asr=0.95 if found else None,
        error="the worker timed out" if verdict is BehaviorVerdict.SCAN_ERROR else None,
    )


def replayed(rate: float | None) -> ReplayReport:
    """A replay that measured ``rate`` (None: it could not run)."""
    if rate is None:
        return ReplayReport(ReplayOutcome.SCAN_ERROR, 0.5, error="load failed")
    return ReplayReport(ReplayOutcome.MEASURED, 0.5, ReplayMeasure(rate, 0, rate, 0.97))


def register(reg: LocalRegistry, ref: str, *parents: str, **options: object) -> str:
    name, version = ref.split("@")
    reg.register_model(name=name,
        version=version,
        manifest=fake_manifest(ref),
        parents=list(parents),
        **options,
    )
    return ref


def test_a_profile_is_kept_and_inherited_by_descendants(reg: LocalRegistry) -> None:
    register(reg, "hub/base@1", profile=profile())
    register(reg, "acme/ft@1", "hub/base@1")
    register(reg, "acme/app@1", "acme/ft@1", profile=profile(seed=1))
    own = reg.profile_of("hub/base@1")
    inherited = reg.profile_of("acme/ft@1")
    assert (own.origin, inherited.origin) == ("hub/base@1", "hub/base@1")
    assert inherited.reference_digest == own.reference_digest
    assert reg.profile_of("acme/app@1").origin == "acme/app@1"
    assert reg.inherited_profile(["acme/ft@1"]).origin == "hub/base@1"
    assert reg.profile_of("hub/base@1").input_shape == [1, 8, 8]


def test_a_model_without_profile_anywhere_has_none(reg: LocalRegistry) -> None:
    register(reg, "hub/base@1")
    assert reg.profile_of("hub/base@1") is None
    assert reg.inherited_profile(["hub/base@1"]) is None


def test_a_compromised_admission_scan_flags_the_model_with_its_trigger(reg: LocalRegistry) -> None:
    register(reg, "hub/base@1", profile=profile(), behavioral=report(BehaviorVerdict.COMPROMISED))
    shown = reg.show("hub/base@1")
    assert (shown.status, shown.finding) == ("compromised", "compromised")
    status = reg.status_report("hub/base@1")
    assert "behavioral scan" in status.flags[0].reason
    assert "class 0" in status.flags[0].reason
    plan = reg.replay_plan("hub/base@1")
    assert TriggerPattern.from_npz(plan.trigger.data).target_class == 0
    assert plan.trigger.origin == "scan"


@pytest.mark.parametrize(
    ("verdict", "message"),
    [
        (BehaviorVerdict.SUSPICIOUS, "is suspicious"),
        (BehaviorVerdict.SCAN_ERROR, "could not be scanned .the worker timed out"),
    ],
)
def test_a_suspicious_or_failed_scan_needs_an_override(
    reg: LocalRegistry, verdict: BehaviorVerdict, message: str
) -> None:
    with pytest.raises(PolicyViolation, match=message):
        register(reg, "hub/base@1", profile=profile(), behavioral=report(verdict))
    with pytest.raises(NotFound):
        reg.show("hub/base@1")  # nothing half-written
    register(reg, "hub/base@1", profile=profile(), behavioral=report(verdict), override="reviewed")
    assert reg.show("hub/base@1").finding == "suspicious"


def test_clean_relatives_on_the_same_references_calibrate(reg: LocalRegistry) -> None:
    clean = report(BehaviorVerdict.CLEAN)
    for index in range(3):
        register(reg, f"zoo/m{index}@1", profile=profile(), behavioral=clean)
    register(reg, "zoo/other@1", profile=profile(seed=9), behavioral=clean)
    register(reg, "zoo/bad@1", profile=profile(), behavioral=report(BehaviorVerdict.COMPROMISED))
    digest = reg.profile_of("zoo/m0@1").reference_digest
    assert reg.behavior_baseline(digest) == [{"neural_cleanse": 0.1}] * 3
    dense = dataclasses.replace(clean, family="dense")
    register(reg, "zoo/mlp@1", profile=profile(), behavioral=dense)
    newest = reg.behavior_baseline(digest)[0]
    assert newest == {"neural_cleanse": 0.1, "family": "dense"}  # the scan filters by it


def lineage_with_trigger(reg: LocalRegistry) -> int:
    """hub/base@1 flagged with a trigger; ft and app below it; a clean relative beside."""
    register(reg, "hub/base@1", profile=profile())
    register(reg, "acme/ft@1", "hub/base@1")
    register(reg, "acme/app@1", "acme/ft@1")
    register(reg, "zoo/clean@1", profile=profile(), behavioral=report(BehaviorVerdict.CLEAN))
    register(reg, "zoo/none@1")  # no profile: never replayed
    reg.flag("hub/base@1", reason="backdoor reported")
    return int(reg.attach_trigger("hub/base@1", data=TRIGGER.to_npz()).id)


def test_a_confirming_replay_makes_the_descendant_confirmed(reg: LocalRegistry) -> None:
    trigger = lineage_with_trigger(reg)
    plan = reg.replay_plan("hub/base@1")
    assert [t.ref for t in plan.descendants] == ["acme/ft@1", "acme/app@1"]
    assert [t.ref for t in plan.baseline] == ["zoo/clean@1"]
    summary = reg.record_replays("hub/base@1",
        trigger_id=trigger,
        results=[
            ReplayIn(ref="acme/ft@1", report=replayed(0.9).to_json()),
            ReplayIn(ref="acme/app@1", report=replayed(0.2).to_json()),
            ReplayIn(ref="zoo/clean@1", role="baseline", report=replayed(0.05).to_json()),
        ],
    )
    assert summary.confirmed == ["acme/ft@1"]
    assert (summary.baseline_rates, summary.notes) == ([0.05], [])
    statuses = {r: reg.show(r).status for r in ("acme/ft@1", "acme/app@1", "zoo/clean@1")}
    assert statuses == {"acme/ft@1": "confirmed", "acme/app@1": "infected", "zoo/clean@1": "clean"}
    source = reg.status_report("acme/ft@1").sources[0]
    assert (source.replay.rate, source.replay.confirmed) == (0.9, True)
    rates = {e.ref: e.replay_rate for e in reg.descendants("hub/base@1")}
    assert rates == {"acme/ft@1": 0.9, "acme/app@1": 0.2}
    assert reg.find_inconsistencies() == []


def test_a_trigger_that_fools_clean_relatives_confirms_nothing(reg: LocalRegistry) -> None:
    trigger = lineage_with_trigger(reg)
    summary = reg.record_replays("hub/base@1",
        trigger_id=trigger,
        results=[
            ReplayIn(ref="acme/ft@1", report=replayed(0.9).to_json()),
            # A natural adversarial patch: it sends a clean relative's references over too.
            ReplayIn(ref="zoo/clean@1", role="baseline", report=replayed(0.7).to_json()),
        ],
    )
    assert summary.confirmed == []
    assert reg.show("acme/ft@1").status == "infected"
    alone = [ReplayIn(ref="acme/ft@1", report=replayed(0.9).to_json())]
    summary = reg.record_replays("hub/base@1", trigger_id=trigger, results=alone)
    assert summary.confirmed == ["acme/ft@1"]
    assert "no clean relative was measured" in summary.notes[0]
    own = [ReplayIn(ref="acme/app@1", role="baseline", report=replayed(0.1).to_json())]
    with pytest.raises(InvalidInput, match="no baseline"):
        reg.record_replays("hub/base@1", trigger_id=trigger, results=own)


def test_the_newest_replay_counts_and_a_withdrawn_flag_ends_the_confirmation(
    reg: LocalRegistry,
) -> None:
    trigger = lineage_with_trigger(reg)
    again = [ReplayIn(ref="acme/ft@1", report=replayed(0.9).to_json())]
    reg.record_replays("hub/base@1", trigger_id=trigger, results=again)
    later = [ReplayIn(ref="acme/ft@1", report=replayed(None).to_json())]
    summary = reg.record_replays("hub/base@1", trigger_id=trigger, results=later)
    assert summary.results[0].outcome == "scan_error"
    assert reg.show("acme/ft@1").status == "infected"  # an error never confirms
    reg.record_replays("hub/base@1", trigger_id=trigger, results=again)
    reg.unflag("hub/base@1", reason="false positive")
    assert reg.show("acme/ft@1").status == "clean"
    assert reg.find_inconsistencies() == []
    reg.flag("hub/base@1", reason="it was real after all")
    assert reg.show("acme/ft@1").status == "confirmed"  # the evidence still stands
    assert reg.find_inconsistencies() == []


def test_replays_are_refused_where_they_make_no_sense(reg: LocalRegistry) -> None:
    trigger = lineage_with_trigger(reg)
    outsider = [ReplayIn(ref="zoo/clean@1", report=replayed(0.9).to_json())]
    with pytest.raises(InvalidInput, match="does not descend from hub/base@1"):
        reg.record_replays("hub/base@1", trigger_id=trigger, results=outsider)
    with pytest.raises(NotFound):
        reg.record_replays("acme/ft@1", trigger_id=trigger, results=[])
    broken = [ReplayIn(ref="acme/ft@1", report={"outcome": "measured"})]
    with pytest.raises(InvalidInput, match="malformed"):
        reg.record_replays("hub/base@1", trigger_id=trigger, results=broken)
    with pytest.raises(InvalidInput, match="not a usable trigger"):
        reg.attach_trigger("hub/base@1", data=b"not an npz")
    with pytest.raises(NotFound, match="trigger"):
        reg.replay_plan("acme/ft@1")
    reader = LocalRegistry(reg.engine, Actor("rita", Role.READER))
    with pytest.raises(PermissionDenied):
        reader.record_replays("hub/base@1", trigger_id=trigger, results=[])
    assert reg.show("acme/ft@1").status == "infected"
