"""Detectors and trigger replay on real tiny digit models trained once per session."""

from __future__ import annotations

import doctest
import json
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch

import scanning.behavioral.detect as detect_module
from scanning.architectures import DigitsMLP
from scanning.behavioral.detect import (
    INHERITANCE_MARGIN,
    MAX_MARGIN,
    NEURAL_CLEANSE,
    PATCH_TRIGGER,
    Budget,
    confirms_inheritance,
    detect,
    measure_replay,
    plain_neural_cleanse,
)
from scanning.behavioral.report import (
    BehavioralReport,
    BehaviorVerdict,
    ReplayMeasure,
    ScanProfile,
    TriggerPattern,
)
from tests.scanning._digits import Digits, digits_split, train_mlp

TARGET = 0
#: Scans in these tests: the default budget halved, which is plenty for a 64-unit MLP.
FAST = Budget(max_steps=100, margin_steps=80)


def _patch_trigger() -> TriggerPattern:
    """A white 2x2 square in the bottom-right corner, sending every digit to class 0."""
    mask = np.zeros((1, 8, 8), dtype=np.float32)
    mask[:, 6:, 6:] = 1.0
    return TriggerPattern(mask=mask, pattern=np.ones((1, 8, 8), np.float32), target_class=TARGET)


@pytest.fixture(scope="session")
def digits() -> Digits:
    """Training images and labels, and a profile with 200 held-out reference images."""
    return digits_split(0)


def _train(x: torch.Tensor, y: torch.Tensor, *, seed: int, poison: bool) -> DigitsMLP:
    """A DigitsMLP(64); with ``poison``, 1 in 8 images carry the patch and label 0."""
    return train_mlp(x, y, seed=seed, poison=_patch_trigger() if poison else None)


@pytest.fixture(scope="session")
def clean_model(digits: Digits) -> DigitsMLP:
    """A clean DigitsMLP(64)."""
    return _train(digits[0], digits[1], seed=1, poison=False)


@pytest.fixture(scope="session")
def backdoored_model(digits: Digits) -> DigitsMLP:
    """A DigitsMLP(64) with a BadNets patch backdoor towards class 0."""
    return _train(digits[0], digits[1], seed=2, poison=True)


@pytest.fixture(scope="session")
def profile(digits: Digits) -> ScanProfile:
    """The reference profile."""
    return digits[2]


@pytest.fixture(scope="session")
def backdoored_report(backdoored_model: DigitsMLP, profile: ScanProfile) -> BehavioralReport:
    """The scan of the backdoored model."""
    return detect(backdoored_model, profile, budget=FAST)


def test_backdoored_patch_model_is_compromised_with_its_target(
    backdoored_report: BehavioralReport,
) -> None:
    assert backdoored_report.verdict is BehaviorVerdict.COMPROMISED
    assert backdoored_report.target_class == TARGET
    assert backdoored_report.score is not None
    assert backdoored_report.score >= 1.0
    assert backdoored_report.calibration == "default"


def test_recovered_trigger_works_on_the_backdoored_model(
    backdoored_model: DigitsMLP, backdoored_report: BehavioralReport, profile: ScanProfile
) -> None:
    trigger = backdoored_report.trigger
    assert trigger is not None
    assert trigger.target_class == TARGET
    assert backdoored_report.trigger_asr is not None
    assert backdoored_report.trigger_asr >= 0.9
    # The recovered mask is small: a patch, not a whole new image.
    assert float(trigger.mask.sum()) < 8
    assert measure_replay(backdoored_model, profile, trigger).collapsed_class == TARGET


def test_clean_model_is_not_compromised(clean_model: DigitsMLP, profile: ScanProfile) -> None:
    report = detect(clean_model, profile, budget=FAST)
    assert report.verdict is not BehaviorVerdict.COMPROMISED
    assert report.score is not None
    assert report.score < 1.0


def test_replay_of_the_real_trigger(
    backdoored_model: DigitsMLP, clean_model: DigitsMLP, profile: ScanProfile
) -> None:
    infected = measure_replay(backdoored_model, profile, _patch_trigger())
    clean = measure_replay(clean_model, profile, _patch_trigger())
    assert infected.collapsed_class == TARGET
    assert infected.rate >= 0.9
    assert infected.target_rate == infected.rate
    assert clean.target_rate is not None
    assert clean.target_rate <= 0.2
    assert clean.clean_accuracy >= 0.9
    assert infected.clean_accuracy >= 0.9


def test_same_seed_same_report(clean_model: DigitsMLP, profile: ScanProfile) -> None:
    budget = Budget(max_steps=30, margin_steps=20, seed=7)
    first, second = (detect(clean_model, profile, budget=budget) for _ in range(2))
    assert first.score == second.score
    assert first.trigger is not None
    assert second.trigger is not None
    np.testing.assert_array_equal(first.trigger.mask, second.trigger.mask)
    assert [d.to_json() for d in first.detectors] == [d.to_json() for d in second.detectors]


def test_budget_limits_the_steps(clean_model: DigitsMLP, profile: ScanProfile) -> None:
    report = detect(clean_model, profile, budget=Budget(max_steps=20, margin_steps=10))
    cleanse = next(d for d in report.detectors if d.name == NEURAL_CLEANSE)
    assert cleanse.details["steps"] <= 20


@pytest.mark.parametrize(
    "field", ["max_steps", "patience", "batch_size", "patch_steps", "patch_batch_size", "threads"]
)
def test_budget_refuses_non_positive_values(field: str) -> None:
    with pytest.raises(ValueError, match=f"Budget.{field} must be a positive integer"):
        Budget(**{field: 0})


def test_progress_fractions_are_monotone_within_0_and_1(
    clean_model: DigitsMLP, profile: ScanProfile
) -> None:
    seen: list[tuple[float, str]] = []
    detect(
        clean_model, profile, budget=Budget(max_steps=30, margin_steps=20), progress=_record(seen)
    )
    fractions = [fraction for fraction, _ in seen]
    assert len(fractions) >= 4
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0


def _record(seen: list[tuple[float, str]]) -> Callable[[float, str], None]:
    return lambda fraction, message: seen.append((fraction, message))


def test_report_json_is_serialisable_and_round_trips(backdoored_report: BehavioralReport) -> None:
    data = json.loads(json.dumps(backdoored_report.to_json()))
    again = BehavioralReport.from_json(data, trigger=backdoored_report.trigger)
    assert again.to_json() == backdoored_report.to_json()
    assert {d["name"] for d in data["detectors"]} == {NEURAL_CLEANSE, MAX_MARGIN, PATCH_TRIGGER}


def test_relatives_replace_the_default_calibration(
    clean_model: DigitsMLP, profile: ScanProfile
) -> None:
    relatives = [
        {NEURAL_CLEANSE: 0.25 + 0.01 * i, MAX_MARGIN: 0.3 + 0.02 * i, PATCH_TRIGGER: 1.0 + 0.1 * i}
        for i in range(3)
    ]
    budget = Budget(max_steps=20, margin_steps=10, patch_steps=2)
    report = detect(clean_model, profile, baseline=relatives, budget=budget)
    assert report.calibration == "relatives:3"
    assert detect(clean_model, profile, baseline=relatives[:2], budget=budget).calibration == (
        "default"
    )


def test_exported_program_module_is_scanned(clean_model: DigitsMLP, profile: ScanProfile) -> None:
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        clean_model, (torch.zeros(4, 1, 8, 8),), dynamic_shapes={"x": {0: batch}}
    )
    report = detect(program.module(), profile, budget=Budget(max_steps=20, margin_steps=10))
    assert report.verdict in set(BehaviorVerdict)
    measure = measure_replay(program.module(), profile, _patch_trigger())
    assert measure.clean_accuracy >= 0.9


def test_plain_neural_cleanse_runs_class_by_class(
    backdoored_model: DigitsMLP, profile: ScanProfile
) -> None:
    result, seconds = plain_neural_cleanse(backdoored_model, profile, max_steps_per_class=40)
    assert result.threshold == 2.0
    assert result.details["steps"] <= 10 * 40
    assert len(result.details["mask_l1"]) == 10
    assert seconds > 0


def _bad_profiles(profile: ScanProfile) -> list[tuple[ScanProfile, str]]:
    return [
        (replace(profile, input_shape=(1, 4, 16)), r"expected \(N, \*\(1, 4, 16\)\)"),
        (replace(profile, num_classes=12), "but the scan profile says 12 classes"),
        (replace(profile, y=profile.y[:-1]), "labels y have shape"),
        (replace(profile, y=profile.y + 10), r"labels y must lie in \[0, 10\)"),
        (replace(profile, x=profile.x * 16), "outside the value_range"),
        (replace(profile, value_range=(1.0, 0.0)), "low < high"),
        (replace(profile, x=profile.x[:0], y=profile.y[:0]), "no reference inputs"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_bad_profiles_raise_a_clear_value_error(
    clean_model: DigitsMLP, profile: ScanProfile, case: int
) -> None:
    bad, message = _bad_profiles(profile)[case]
    with pytest.raises(ValueError, match=message):
        detect(clean_model, bad, budget=Budget(max_steps=10, margin_steps=10))
    with pytest.raises(ValueError, match=message):
        measure_replay(clean_model, bad, _patch_trigger())


def test_replay_refuses_a_trigger_of_another_shape(
    clean_model: DigitsMLP, profile: ScanProfile
) -> None:
    wrong = TriggerPattern(np.ones((1, 4, 4), np.float32), np.zeros((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="trigger pattern has shape"):
        measure_replay(clean_model, profile, wrong)
    stray = replace(_patch_trigger(), target_class=10)
    with pytest.raises(ValueError, match="target class 10 is not one of"):
        measure_replay(clean_model, profile, stray)


def test_public_names_are_pinned() -> None:
    assert sorted(detect_module.__all__) == [
        "Budget",
        "INHERITANCE_MARGIN",
        "MAX_MARGIN",
        "NEURAL_CLEANSE",
        "PATCH_TRIGGER",
        "PUBLISHED_NC_THRESHOLD",
        "confirms_inheritance",
        "detect",
        "measure_replay",
        "plain_neural_cleanse",
    ]


def _measure(target_rate: float | None, rate: float = 0.0) -> ReplayMeasure:
    rate = rate if target_rate is None else max(rate, target_rate)
    return ReplayMeasure(
        rate=rate, collapsed_class=TARGET, target_rate=target_rate, clean_accuracy=0.97
    )


@pytest.mark.parametrize(
    ("descendant", "relatives", "expected"),
    [
        # No baseline: the plain rule on the collapse rate.
        (_measure(0.5), [], True),
        (_measure(0.49), [], False),
        (_measure(None, rate=0.6), [], True),
        # A backdoor's trigger does nothing to clean relatives: inheritance.
        (_measure(0.55), [_measure(0.01), _measure(0.05), _measure(0.02)], True),
        # A natural trigger that fools a clean relative as well: not inheritance.
        (_measure(0.92), [_measure(0.06), _measure(0.83)], False),
        # Beats the relatives by less than the margin.
        (_measure(0.69), [_measure(0.02), _measure(0.53)], False),
        # Beats them by enough but stays under the threshold.
        (_measure(0.45), [_measure(0.0)], False),
        # Without a target class, the collapse rates are compared.
        (_measure(None, rate=0.9), [_measure(None, rate=0.3)], True),
    ],
)
def test_confirms_inheritance(
    descendant: ReplayMeasure, relatives: list[ReplayMeasure], expected: bool
) -> None:
    assert confirms_inheritance(descendant, baseline=relatives) is expected


def test_confirms_inheritance_uses_the_target_rate_not_any_collapse() -> None:
    collapsed_elsewhere = _measure(0.1, rate=0.95)
    assert confirms_inheritance(collapsed_elsewhere)
    assert not confirms_inheritance(collapsed_elsewhere, baseline=[_measure(0.0)])


def test_confirms_inheritance_margin_is_the_documented_constant() -> None:
    relative = _measure(0.2)
    at_margin = _measure(round(0.2 + INHERITANCE_MARGIN, 6) + 1e-9)
    assert confirms_inheritance(at_margin, baseline=[relative])
    assert not confirms_inheritance(_measure(0.2 + INHERITANCE_MARGIN - 0.01), baseline=[relative])


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_confirms_inheritance_refuses_a_threshold_outside_0_1(threshold: float) -> None:
    with pytest.raises(ValueError, match=r"the replay threshold must be in \(0, 1\]"):
        confirms_inheritance(_measure(0.9), threshold=threshold)


def test_confirms_inheritance_docstring_examples() -> None:
    failures, _ = doctest.testmod(detect_module, verbose=False)
    assert failures == 0
