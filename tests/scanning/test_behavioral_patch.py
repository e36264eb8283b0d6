"""The patch detector, the reference classifiers and the per-family calibration, on real
tiny digit models trained once per session."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from torch import nn

import scanning.behavioral._calibration as calibration_module
import scanning.behavioral._patch_search as patch_module
from scanning.architectures import DigitsCNN, DigitsMLP
from scanning.behavioral._calibration import (
    DEFAULT_REFERENCES,
    references_for,
)
from scanning.behavioral._patch_search import (
    PatchSettings,
    PatchTriggers,
    search_patches,
    window_corners,
)
from scanning.behavioral._reference_models import ReferenceEnsemble, fit_reference_ensemble
from scanning.behavioral._torch_support import architecture_family
from scanning.behavioral.detect import (
    MAX_MARGIN,
    NEURAL_CLEANSE,
    PATCH_TRIGGER,
    Budget,
    detect,
    measure_replay,
)
from scanning.behavioral.report import BehaviorVerdict, ScanProfile, TriggerPattern
from tests.scanning._digits import Digits, digits_split, train_mlp

TARGET = 3
#: Neural Cleanse and MM-BD shortened; the patch search keeps its default budget.
QUICK = Budget(max_steps=60, margin_steps=40)


def _checker_trigger() -> TriggerPattern:
    """A 4x4 checkerboard (1 and 0) at the top right, sending every digit to class 3.

    Large and patterned: as many mask pixels as a natural class needs, which is what
    hides such a patch from Neural Cleanse on 8x8 digits.
    """
    mask = np.zeros((1, 8, 8), dtype=np.float32)
    mask[:, 0:4, 4:8] = 1.0
    rows, cols = np.indices((8, 8))
    pattern = ((rows + cols) % 2 == 0).astype(np.float32)[None]
    return TriggerPattern(mask=mask, pattern=pattern, target_class=TARGET)


@pytest.fixture(scope="module")
def digits() -> Digits:
    """Training images and labels, and a profile with 200 held-out reference images."""
    return digits_split(1)


def _train(x: torch.Tensor, y: torch.Tensor, *, seed: int, poison: bool) -> DigitsMLP:
    """A DigitsMLP(64); with ``poison``, 1 in 8 images carry the checkerboard and label 3."""
    return train_mlp(x, y, seed=seed, poison=_checker_trigger() if poison else None)


@pytest.fixture(scope="module")
def profile(digits: Digits) -> ScanProfile:
    """The reference profile."""
    return digits[2]


@pytest.fixture(scope="module")
def large_patch_model(digits: Digits) -> DigitsMLP:
    """A DigitsMLP(64) with the 4x4 checkerboard backdoor towards class 3."""
    return _train(digits[0], digits[1], seed=3, poison=True)


@pytest.fixture(scope="module")
def clean_model(digits: Digits) -> DigitsMLP:
    """A clean DigitsMLP(64)."""
    return _train(digits[0], digits[1], seed=4, poison=False)


@pytest.fixture(scope="module")
def reference(profile: ScanProfile) -> ReferenceEnsemble:
    """The clean reference classifiers of the profile."""
    return fit_reference_ensemble(
        profile.x, profile.y, num_classes=10, value_range=profile.value_range, seed=0
    )


def test_the_planted_trigger_works(large_patch_model: DigitsMLP, profile: ScanProfile) -> None:
    assert measure_replay(large_patch_model, profile, _checker_trigger()).target_rate == 1.0


def test_every_3x3_square_lies_inside_one_default_window() -> None:
    side = PatchSettings().side
    corners = window_corners(8, 8, side=side, stride=PatchSettings().stride)
    for row in range(6):
        for col in range(6):
            assert any(
                r <= row and row + 3 <= r + side and c <= col and col + 3 <= c + side
                for r, c in corners
            )


@pytest.mark.parametrize(("size", "count"), [(8, 3), (9, 4), (32, 8), (4, 1)])
def test_window_positions_include_the_last_and_are_capped(size: int, count: int) -> None:
    corners = window_corners(size, size, side=4, stride=2)
    rows = sorted({r for r, _ in corners})
    assert len(rows) == count
    assert rows[0] == 0
    assert rows[-1] == max(size - 4, 0)


def test_reference_ensemble_is_a_clean_classifier_of_the_references(
    digits: Digits, reference: ReferenceEnsemble
) -> None:
    train_x, train_y, profile = digits
    assert reference.accuracy(train_x.numpy(), train_y.numpy()) >= 0.85
    again = fit_reference_ensemble(
        profile.x, profile.y, num_classes=10, value_range=profile.value_range, seed=0
    )
    batch = torch.from_numpy(profile.x[:5])
    torch.testing.assert_close(again(batch), reference(batch))
    members = torch.stack([m(batch).log_softmax(dim=1) for m in reference.members])
    torch.testing.assert_close(reference(batch), members.mean(dim=0))


def test_reference_ensemble_rescales_the_value_range(profile: ScanProfile) -> None:
    """The same images in [0, 255] give the same classifier as in [0, 1]."""
    scaled = fit_reference_ensemble(
        profile.x * 255, profile.y, num_classes=10, value_range=(0.0, 255.0), seed=0
    )
    assert scaled.accuracy(profile.x * 255, profile.y) >= 0.95


def test_patch_search_finds_the_large_patterned_patch(
    large_patch_model: DigitsMLP, profile: ScanProfile, reference: ReferenceEnsemble
) -> None:
    patches = search_patches(
        large_patch_model, profile.x, profile.y, range(10), num_classes=10,
        value_range=profile.value_range, reference=reference, settings=PatchSettings(),
    )  # fmt: skip
    scores = patches.class_scores()
    assert int(scores.argmax()) == TARGET
    best = int(patches.best_windows()[TARGET])
    assert patches.advantages[TARGET, best] >= 0.9
    assert patches.reference_rates[TARGET, best] <= 0.1
    trigger = patches.trigger(TARGET)
    assert float(trigger.mask.sum()) == 16.0
    assert measure_replay(large_patch_model, profile, trigger).target_rate >= 0.9


def test_patch_search_is_seeded(clean_model: DigitsMLP, profile: ScanProfile) -> None:
    settings = PatchSettings(steps=4, seed=5)
    runs = [_search(clean_model, profile, settings) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].patterns, runs[1].patterns)
    np.testing.assert_array_equal(runs[0].class_scores(), runs[1].class_scores())


def _search(model: nn.Module, profile: ScanProfile, settings: PatchSettings) -> PatchTriggers:
    reference = fit_reference_ensemble(
        profile.x, profile.y, num_classes=10, value_range=profile.value_range, seed=settings.seed
    )
    return search_patches(
        model, profile.x, profile.y, range(10), num_classes=10, value_range=profile.value_range,
        reference=reference, settings=settings,
    )  # fmt: skip


def test_detect_flags_the_large_patch_through_the_patch_detector(
    large_patch_model: DigitsMLP, profile: ScanProfile
) -> None:
    report = detect(large_patch_model, profile, budget=QUICK)
    assert report.verdict is BehaviorVerdict.COMPROMISED
    assert report.target_class == TARGET
    patch = next(d for d in report.detectors if d.name == PATCH_TRIGGER)
    assert patch.flagged
    assert patch.suspected_classes[0] == TARGET
    assert patch.details["calibration"] == "default:dense"
    assert len(patch.details["window"]) == 10
    assert report.trigger_asr is not None
    assert report.trigger_asr >= 0.9


def test_clean_model_is_not_flagged_by_the_patch_detector(
    clean_model: DigitsMLP, profile: ScanProfile
) -> None:
    report = detect(clean_model, profile, budget=QUICK)
    patch = next(d for d in report.detectors if d.name == PATCH_TRIGGER)
    assert not patch.flagged
    assert report.verdict is not BehaviorVerdict.COMPROMISED


def test_inputs_that_are_not_images_skip_the_patch_search(profile: ScanProfile) -> None:
    torch.manual_seed(0)
    flat = ScanProfile((64,), (0.0, 1.0), 10, profile.x.reshape(-1, 64), profile.y)
    model = nn.Sequential(nn.Linear(64, 10)).eval()
    report = detect(model, flat, budget=Budget(max_steps=10, margin_steps=10))
    assert [d.name for d in report.detectors] == [NEURAL_CLEANSE, MAX_MARGIN]


def _identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


def _exported(model: nn.Module) -> object:
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        model.eval(), (torch.zeros(4, 1, 8, 8),), dynamic_shapes={"x": {0: batch}}
    )
    return program.module()


@pytest.mark.parametrize(
    ("make", "family"),
    [
        (lambda: DigitsCNN(8), "convolutional"),
        (lambda: DigitsMLP(32), "dense"),
        (lambda: _exported(DigitsCNN(8)), "convolutional"),
        (lambda: _exported(DigitsMLP(32)), "dense"),
        (lambda: nn.ReLU(), None),
        (lambda: _identity, None),
    ],
)
def test_architecture_family(make: object, family: str | None) -> None:
    assert callable(make)
    assert architecture_family(make()) == family


def test_default_references_follow_the_family() -> None:
    dense, _ = references_for([], family="dense")
    unknown, label = references_for([], family=None)
    assert label == "default"
    assert dense[NEURAL_CLEANSE] == DEFAULT_REFERENCES["dense"][NEURAL_CLEANSE]
    assert dense[PATCH_TRIGGER].source == "default:dense"
    assert unknown[MAX_MARGIN].source == "default:any"


def test_relatives_replace_the_default_detector_by_detector() -> None:
    old = [{NEURAL_CLEANSE: 0.2 + 0.01 * i, MAX_MARGIN: 0.3 + 0.02 * i} for i in range(4)]
    references, label = references_for(old, family="convolutional")
    assert label == "relatives:4; default for patch_trigger"
    assert references[NEURAL_CLEANSE].source == "relatives:4"
    assert references[NEURAL_CLEANSE].center == pytest.approx(0.215)
    assert references[PATCH_TRIGGER].source == "default:convolutional"
    full = [{**stats, PATCH_TRIGGER: 0.5 + 0.1 * i} for i, stats in enumerate(old[:3])]
    assert references_for(full, family="convolutional")[1] == "relatives:3"


def test_only_relatives_of_the_scanned_models_family_calibrate() -> None:
    stats = {NEURAL_CLEANSE: 0.2, MAX_MARGIN: 0.3, PATCH_TRIGGER: 0.5}
    dense = [{**stats, "family": "dense"}] * 3
    convolutional = [{**stats, "family": "convolutional"}] * 3
    unrecorded = [stats] * 3  # scanned before reports named the family: counted as before
    assert references_for(dense, family="convolutional")[1] == "default"
    assert references_for(dense + convolutional, family="convolutional")[1] == "relatives:3"
    assert references_for(dense + unrecorded, family="dense")[1] == "relatives:6"
    assert references_for(dense, family=None)[1] == "default"


def test_relatives_scale_is_floored_at_half_the_default() -> None:
    same = [{NEURAL_CLEANSE: 0.3, MAX_MARGIN: 0.3, PATCH_TRIGGER: 0.8} for _ in range(5)]
    references, _ = references_for(same, family="dense")
    default = DEFAULT_REFERENCES["dense"][PATCH_TRIGGER]
    assert references[PATCH_TRIGGER].scale == pytest.approx(0.5 * default.scale)


@pytest.mark.parametrize("module", [calibration_module, patch_module])
def test_docstring_examples(module: object) -> None:
    failures, _ = doctest.testmod(module, verbose=False)  # type: ignore[arg-type]
    assert failures == 0
