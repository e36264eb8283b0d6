"""Backdoor detectors on an in-memory model, and trigger replay.

Pure numpy + torch: never loads a file, never imports :mod:`registry`. The sandboxed
worker loads the model and calls :func:`detect` (admission, ``mbom scan``) or
:func:`measure_replay` (cascade confirmation, ``mbom replay``).

Three detectors, combined into one calibrated score (:mod:`._calibration`):

1. ``neural_cleanse`` — Neural Cleanse trigger reverse-engineering, every class
   optimised in one batch (:mod:`._neural_cleanse`). Its per-class statistic is the
   log of how much cheaper the class's mask is than the median class, plus how
   *compact* the mask is (the share of its mass inside the best square window of its
   own size; a TABOR-style prior, Guo et al. 2020). On 8x8 digits a handful of
   scattered stroke pixels turns any digit into another, so cheap natural "triggers"
   exist for every class and the norm alone separates poorly (the published anomaly
   index > 2 flags a third of clean models); a planted patch shows up as a mask that
   is both cheap and compact.
2. ``max_margin`` — MM-BD (:mod:`._mmbd`): the log of the largest achievable
   classification margin of the most extreme class over the median class. Needs no
   data, sees whole-image blended triggers that a mask-norm test misses.
3. ``patch_trigger`` — a patch search against a clean reference (:mod:`._patch_search`):
   for every class and every 4x4 window, a pattern optimised to send the references
   to the class while two small classifiers fitted to the references at scan time
   (:mod:`._reference_models`) keep seeing their own labels. Its per-class statistic is
   how many more references the model sends to the class than the clean classifiers
   do. It covers what the other two miss on small inputs: 3x3 and 4x4 patches, solid
   or patterned, that cost Neural Cleanse as much mask as a natural class needs.

Each statistic is judged against clean models of the same architecture family
(convolutional or dense; :mod:`._calibration`).

The model is only called: an ``nn.Module`` or a ``torch.export`` program's
``.module()``, mapping a float32 batch ``(N, *input_shape)`` to ``(N, num_classes)``
logits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from scanning.behavioral._calibration import (
    Z_FLAGGED,
    Reference,
    references_for,
    verdict_for,
)
from scanning.behavioral._mmbd import max_margins
from scanning.behavioral._neural_cleanse import (
    CleanseSettings,
    ReversedTriggers,
    anomaly_indices,
    reverse_engineer,
)
from scanning.behavioral._patch_search import (
    PatchSettings,
    PatchTriggers,
    is_searchable,
    search_patches,
)
from scanning.behavioral._reference_models import fit_reference_ensemble
from scanning.behavioral._torch_support import (
    Classifier,
    architecture_family,
    check_profile,
    predict,
    put_in_eval_mode,
    torch_threads,
)
from scanning.behavioral.inheritance import INHERITANCE_MARGIN, confirms_inheritance
from scanning.behavioral.report import (
    BehavioralReport,
    DetectorResult,
    RelativeStatistics,
    ReplayMeasure,
    ScanProfile,
    TriggerPattern,
)

__all__ = [
    "MAX_MARGIN",
    "NEURAL_CLEANSE",
    "PATCH_TRIGGER",
    "PUBLISHED_NC_THRESHOLD",
    "INHERITANCE_MARGIN",
    "Budget",
    "confirms_inheritance",
    "detect",
    "measure_replay",
    "plain_neural_cleanse",
]

#: Detector names, the keys of ``DetectorResult.name`` and of a baseline's statistics.
NEURAL_CLEANSE = "neural_cleanse"
MAX_MARGIN = "max_margin"
PATCH_TRIGGER = "patch_trigger"
#: The anomaly index above which the published Neural Cleanse flags a class.
PUBLISHED_NC_THRESHOLD = 2.0
#: A recovered trigger sending fewer references than this to its class is replaced by
#: the patch search's window for the class when the window does better (see ``_combine``).
TRIGGER_SUCCESS = 0.9
#: Weight of a mask's compactness against the log of its cheapness (see module doc):
#: a perfectly compact mask counts as if it were e^0.5 ~ 1.65 times cheaper.
COMPACTNESS_WEIGHT = 1.0


Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Budget:
    """How much work a scan may do; the same budget and seed give the same report.

    ``max_steps`` bounds the batched trigger optimisation (all classes move together,
    one step = one forward and backward pass over ``num_classes x batch_size``
    stamped references); it stops earlier once no class's smallest mask improved by
    1% for ``patience`` epochs of ``epoch_steps`` steps. ``margin_steps`` and
    ``margin_restarts`` bound the max-margin search, ``patch_steps`` and
    ``patch_batch_size`` the patch search (one step = ``num_classes x windows x
    patch_batch_size`` stamped references). ``threads`` is torch's intra-op thread
    count during the scan (restored after).
    """

    max_steps: int = 130
    patience: int = 12
    epoch_steps: int = 5
    batch_size: int = 24
    margin_steps: int = 150
    margin_restarts: int = 6
    patch_steps: int = 20
    patch_batch_size: int = 8
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("max_steps", "patience", "epoch_steps", "batch_size", "margin_steps",
                     "margin_restarts", "patch_steps", "patch_batch_size",
                     "threads"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Budget.{name} must be a positive integer, got {value!r}")


def detect(
    model: Classifier,
    profile: ScanProfile,
    *,
    baseline: Sequence[RelativeStatistics] = (),
    budget: Budget = Budget(),
    progress: Progress | None = None,
) -> BehavioralReport:
    """Scan ``model`` for a backdoor with every detector and combine them into a verdict.

    ``baseline`` holds the detector statistics (``{detector name: statistic}``, as in
    :meth:`BehavioralReport.to_json`) of clean, admitted relatives of the same family;
    with three or more for a detector its z-score is taken against them instead of the
    default calibration of the model's architecture family. ``progress(fraction,
    message)`` is called as the scan advances. The patch search runs on image inputs
    ``(C, H, W)`` only. Raises ``ValueError`` when the profile does not fit the model
    or its references.
    """
    start = time.perf_counter()
    report = _Progress(progress)
    put_in_eval_mode(model)
    with torch_threads(budget.threads):
        check_profile(model, profile)
        x, y = _references(profile)
        report(0.0, "reverse-engineering triggers for every class")
        reversed_ = reverse_engineer(
            model, x, y, range(profile.num_classes), num_classes=profile.num_classes,
            value_range=profile.value_range, settings=_batched_settings(budget),
            progress=lambda f: report(0.6 * f, "reverse-engineering triggers"),
        )  # fmt: skip
        report(0.6, "maximising the margin of every class")
        margins = max_margins(
            model, num_classes=profile.num_classes, input_shape=profile.input_shape,
            value_range=profile.value_range, restarts=budget.margin_restarts,
            steps=budget.margin_steps, seed=budget.seed,
            progress=lambda f: report(0.6 + 0.15 * f, "maximising margins"),
        )  # fmt: skip
        report(0.75, "searching patches against a clean reference")
        patches = _search_patches(
            model, profile, x, y, budget,
            progress=lambda f: report(0.75 + 0.2 * f, "searching patches"),
        )  # fmt: skip
        family = architecture_family(model)
        references, calibration = references_for(baseline, family=family)
        detectors = [
            _cleanse_result(reversed_, references[NEURAL_CLEANSE]),
            _margin_result(margins, references[MAX_MARGIN]),
        ]
        if patches is not None:
            detectors.append(_patch_result(patches, references[PATCH_TRIGGER]))
        report(0.95, "measuring the recovered trigger")
        outcome = _combine(model, profile, reversed_, patches, detectors)
    report(1.0, "done")
    return BehavioralReport(
        verdict=verdict_for(outcome.score),
        score=outcome.score,
        detectors=tuple(detectors),
        target_class=outcome.target,
        trigger=outcome.trigger,
        trigger_asr=outcome.trigger_asr,
        calibration=calibration,
        elapsed_s=time.perf_counter() - start,
        family=family,
    )


class _Progress:
    """Forwards to the caller's callback with the fraction clipped to [0, 1], never going back."""

    def __init__(self, callback: Progress | None) -> None:
        self.callback = callback
        self.done = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        self.done = max(self.done, min(1.0, max(0.0, fraction)))
        if self.callback is not None:
            self.callback(self.done, message)


def _references(profile: ScanProfile) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    x = np.ascontiguousarray(profile.x, dtype=np.float32)
    return x, np.asarray(profile.y, dtype=np.int64)


def _batched_settings(budget: Budget) -> CleanseSettings:
    """The batched search: NC's schedule, faster (lr 0.2, cost 1e-2, 5-step epochs).

    Published NC starts its L1 weight at 1e-3 for 32x32 masks and adapts it after 5
    epochs of success or failure; starting at 1e-2 and adapting after every short
    epoch reached the same smallest masks on the calibration zoo in 100-150 steps
    instead of 300+ per class. Success is 95% of a batch of references (NC: 99% of a
    data set several times larger).
    """
    return CleanseSettings(
        max_steps=budget.max_steps,
        batch_size=budget.batch_size,
        epoch_steps=budget.epoch_steps,
        lr=0.2,
        init_cost=1e-2,
        attack_threshold=0.95,
        cost_patience=1,
        stop_patience=budget.patience,
        seed=budget.seed,
    )


def _search_patches(
    model: Classifier,
    profile: ScanProfile,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    budget: Budget,
    *,
    progress: Callable[[float], None],
) -> PatchTriggers | None:
    """The patch search of :mod:`._patch_search` with the budget's steps; ``None`` for
    inputs that are not images."""
    if not is_searchable(profile.input_shape):
        return None
    reference = fit_reference_ensemble(
        x, y, num_classes=profile.num_classes, value_range=profile.value_range, seed=budget.seed
    )
    settings = PatchSettings(
        steps=budget.patch_steps, batch_size=budget.patch_batch_size, seed=budget.seed
    )
    return search_patches(
        model, x, y, range(profile.num_classes), num_classes=profile.num_classes,
        value_range=profile.value_range, reference=reference, settings=settings,
        progress=progress,
    )  # fmt: skip


def _class_scores(reversed_: ReversedTriggers) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per class: log(median norm / norm) + weight * (compactness - median), and compactness."""
    norms = reversed_.norms
    finite = np.isfinite(norms)
    fallback = float(norms[finite].max()) * 2 if finite.any() else float(reversed_.masks[0].size)
    filled = np.where(finite, norms, fallback).clip(min=1e-6)
    compact = np.array([_compactness(mask) for mask in reversed_.masks])
    cheap = np.log(np.median(filled)) - np.log(filled)
    return cheap + COMPACTNESS_WEIGHT * (compact - np.median(compact)), compact


def _compactness(mask: NDArray[np.float32]) -> float:
    """The share of the mask's mass inside the best square window as large as the mask.

    A window of side ``ceil(sqrt(mass))`` could hold the whole mass of a solid
    square; scattered masks keep much of it outside. Non-image inputs count as 0.
    """
    total = float(mask.sum())
    if mask.ndim != 3 or total <= 0:
        return 0.0
    side = min(mask.shape[1], mask.shape[2], max(1, math.ceil(math.sqrt(total))))
    planes = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float64)).sum(0)[None, None]
    window = torch.nn.functional.avg_pool2d(planes, side, stride=1).max() * side * side
    return float(window) / total


def _cleanse_result(reversed_: ReversedTriggers, reference: Reference) -> DetectorResult:
    scores, compact = _class_scores(reversed_)
    indices = anomaly_indices(reversed_.norms)
    return _detector_result(
        NEURAL_CLEANSE,
        scores,
        reference,
        {
            "class_scores": _rounded(scores),
            "mask_l1": _norms_json(reversed_.norms),
            "compactness": _rounded(compact),
            "anomaly_index": _rounded(indices),
            "published_flagged": bool(indices.max() > PUBLISHED_NC_THRESHOLD),
            "steps": reversed_.steps,
        },
    )


def _margin_result(margins: NDArray[np.float64], reference: Reference) -> DetectorResult:
    positive = np.clip(margins, 1e-6, None)
    scores = np.log(positive) - np.log(np.median(positive))
    return _detector_result(
        MAX_MARGIN,
        scores,
        reference,
        {"max_margin": _rounded(margins), "class_scores": _rounded(scores)},
    )


def _patch_result(patches: PatchTriggers, reference: Reference) -> DetectorResult:
    scores = patches.class_scores()
    windows = patches.best_windows()
    rows = range(len(patches.classes))
    return _detector_result(
        PATCH_TRIGGER,
        scores,
        reference,
        {
            "class_scores": _rounded(scores),
            "window": [list(patches.windows[w]) for w in windows],
            "side": patches.side,
            "advantage": _rounded(patches.advantages[rows, windows]),
            "model_rate": _rounded(patches.model_rates[rows, windows]),
            "reference_rate": _rounded(patches.reference_rates[rows, windows]),
            "reference_accuracy": round(patches.reference_accuracy, 4),
        },
    )


def _detector_result(
    name: str, scores: NDArray[np.float64], reference: Reference, details: dict[str, Any]
) -> DetectorResult:
    """A detector's per-class scores judged against its clean reference distribution."""
    statistic = float(scores.max())
    return DetectorResult(
        name=name,
        statistic=statistic,
        threshold=reference.center + Z_FLAGGED * reference.scale,
        flagged=bool(reference.z(statistic) >= Z_FLAGGED),
        suspected_classes=_suspects(np.array([reference.z(s) for s in scores])),
        details={"z": reference.z(statistic), "calibration": reference.source, **details},
    )


def _suspects(z_scores: NDArray[np.float64]) -> tuple[int, ...]:
    """The flagged classes, most suspicious first; the top class alone when none flags."""
    order = np.argsort(-z_scores, kind="stable")
    flagged = [int(k) for k in order if z_scores[k] >= Z_FLAGGED]
    return tuple(flagged) if flagged else (int(order[0]),)


def _norms_json(norms: NDArray[np.float64]) -> list[float | None]:
    """Mask norms for JSON: ``None`` where no mask reached the attack threshold."""
    return [round(float(n), 4) if math.isfinite(n) else None for n in norms]


def _rounded(values: NDArray[np.float64]) -> list[float]:
    return [round(float(v), 4) for v in values]


@dataclass(frozen=True)
class _Outcome:
    score: float
    target: int
    trigger: TriggerPattern
    trigger_asr: float


def _combine(
    model: Classifier,
    profile: ScanProfile,
    reversed_: ReversedTriggers,
    patches: PatchTriggers | None,
    detectors: Sequence[DetectorResult],
) -> _Outcome:
    """The score is the strongest evidence in units of the flagging z (>= 1 flags).

    The detectors that point at the same class as the one with the largest z are also
    pooled (Stouffer: ``sum(z) / sqrt(n)``): independent, individually weak signals on
    one class are stronger evidence than either.

    The recovered trigger is Neural Cleanse's mask and pattern for the suspected class,
    the smallest trigger found; when it sends fewer than :data:`TRIGGER_SUCCESS` of the
    references to the class and the patch search's window does better, the window.
    """
    z = {d.name: float(d.details["z"]) for d in detectors}
    leader = max(detectors, key=lambda d: z[d.name])
    target = leader.suspected_classes[0]
    agreeing = [z[d.name] for d in detectors if d.suspected_classes[0] == target]
    pooled = sum(agreeing) / math.sqrt(len(agreeing)) if len(agreeing) > 1 else -math.inf
    best = max(z[leader.name], pooled)
    index = reversed_.classes.index(target)
    trigger = TriggerPattern(
        mask=reversed_.masks[index], pattern=reversed_.patterns[index], target_class=target
    )
    asr = _target_rate(model, profile, trigger)
    if asr < TRIGGER_SUCCESS and patches is not None:
        window = patches.trigger(target)
        window_asr = _target_rate(model, profile, window)
        if window_asr > asr:
            trigger, asr = window, window_asr
    return _Outcome(score=best / Z_FLAGGED, target=target, trigger=trigger, trigger_asr=asr)


def _target_rate(model: Classifier, profile: ScanProfile, trigger: TriggerPattern) -> float:
    replay = _replay(model, profile, trigger)
    return replay.target_rate if replay.target_rate is not None else replay.rate


def measure_replay(
    model: Classifier, profile: ScanProfile, trigger: TriggerPattern
) -> ReplayMeasure:
    """Stamp ``trigger`` on the profile's references and measure where the model sends them.

    Raises ``ValueError`` when the profile does not fit the model, or the trigger's
    mask or pattern does not fit the profile's input shape.
    """
    put_in_eval_mode(model)
    check_profile(model, profile)
    _check_trigger(trigger, profile)
    return _replay(model, profile, trigger)


def _replay(model: Classifier, profile: ScanProfile, trigger: TriggerPattern) -> ReplayMeasure:
    x, y = _references(profile)
    classes = profile.num_classes
    clean = predict(model, x, num_classes=classes)
    stamped = predict(model, trigger.apply(x), num_classes=classes)
    collapsed = int(np.bincount(stamped, minlength=classes).argmax())
    target = trigger.target_class
    return ReplayMeasure(
        rate=_hit_rate(stamped, y, collapsed),
        collapsed_class=collapsed,
        target_rate=None if target is None else _hit_rate(stamped, y, target),
        clean_accuracy=float((clean == y).mean()),
    )


def _hit_rate(predicted: NDArray[np.int64], labels: NDArray[np.int64], target: int) -> float:
    """The share of inputs not labelled ``target`` that are predicted as ``target``."""
    victims = labels != target
    return float((predicted[victims] == target).mean()) if victims.any() else 0.0


def _check_trigger(trigger: TriggerPattern, profile: ScanProfile) -> None:
    shape = tuple(profile.input_shape)
    if tuple(trigger.pattern.shape) != shape:
        raise ValueError(
            f"trigger pattern has shape {trigger.pattern.shape}, but the model takes inputs "
            f"of shape {shape}: replay a trigger recovered from a model of the same input shape"
        )
    try:
        broadcast = np.broadcast_shapes(trigger.mask.shape, shape)
    except ValueError:
        broadcast = ()
    if broadcast != shape:
        raise ValueError(
            f"trigger mask of shape {trigger.mask.shape} does not fit inputs of shape {shape}"
        )
    if trigger.target_class is not None and not 0 <= trigger.target_class < profile.num_classes:
        raise ValueError(
            f"trigger target class {trigger.target_class} is not one of the model's "
            f"{profile.num_classes} classes"
        )


def plain_neural_cleanse(
    model: Classifier,
    profile: ScanProfile,
    *,
    max_steps_per_class: int = 300,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[DetectorResult, float]:
    """Published Neural Cleanse, the benchmark's anchor: one class after another.

    Hyper-parameters as published (Adam lr 0.1, initial L1 weight 1e-3, attack
    threshold 99%, cost patience 5 epochs, early stop after 10 epochs without 1%
    improvement, mini-batches of 32; an epoch is one pass over the references), capped
    at ``max_steps_per_class`` steps per class. Flags at anomaly index > 2. Returns
    the result and its wall time in seconds.
    """
    start = time.perf_counter()
    report = _Progress(progress)
    put_in_eval_mode(model)
    check_profile(model, profile)
    x, y = _references(profile)
    settings = CleanseSettings(
        max_steps=max_steps_per_class, batch_size=32, epoch_steps=math.ceil(len(x) / 32),
        seed=seed,
    )  # fmt: skip
    norms, steps = [], 0
    with torch_threads(1):
        for k in range(profile.num_classes):
            one = reverse_engineer(
                model, x, y, [k], num_classes=profile.num_classes,
                value_range=profile.value_range, settings=settings,
            )  # fmt: skip
            norms.append(float(one.norms[0]))
            steps += one.steps
            report((k + 1) / profile.num_classes, f"class {k}")
    indices = anomaly_indices(np.array(norms))
    flagged = [int(k) for k in np.argsort(-indices) if indices[k] > PUBLISHED_NC_THRESHOLD]
    result = DetectorResult(
        name="plain_neural_cleanse",
        statistic=float(indices.max()),
        threshold=PUBLISHED_NC_THRESHOLD,
        flagged=bool(flagged),
        suspected_classes=tuple(flagged) or (int(indices.argmax()),),
        details={
            "mask_l1": _norms_json(np.array(norms)),
            "anomaly_index": _rounded(indices),
            "steps": steps,
        },  # fmt: skip
    )
    return result, time.perf_counter() - start
