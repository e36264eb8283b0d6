"""Turning detector statistics into one calibrated score and a verdict.

Every detector statistic ``s`` (higher = more suspicious) becomes a robust z-score
``z = (s - center) / scale`` against clean models:

- **default**: from the clean models of the benchmark's *calibration* zoo
  (``python -m benchmarks.backdoor_bench --calibrate``; those models share no seed,
  width or trigger with the evaluation zoo), measured with the default
  :class:`~scanning.behavioral.detect.Budget`, **per architecture family**
  (:func:`~scanning.behavioral._torch_support.architecture_family`;
  :func:`family_references`): ``center`` is the median of the model's family;
  ``scale`` is ``1.4826 * MAD`` of every clean model's distance from its own family's
  median, or the family's own ``1.4826 * MAD`` when that is wider. The clean
  statistics of fully connected and of convolutional digit classifiers sit one to
  two robust standard deviations apart (a dense model reaches some classes, 4 and 2
  on digits, with a few pixels; a convolutional one needs strokes), so one pooled
  distribution put every dense model closer to the threshold and every
  convolutional backdoor further from it. A dozen models per family are too few to
  trust a *narrower* spread of their own (the convolutional models' max-margin MAD
  came out a third of the dense ones'), but a wider one is kept (the dense models'
  Neural Cleanse and max-margin statistics, the convolutional models' patch
  statistics scatter more than the pooled spread). A model whose structure cannot
  be read is judged by the median and MAD of all clean models together (family
  ``any``);
- **relatives** (``relatives:N``, N >= 3 clean, admitted models scanned on the same
  references): their median and MAD, detector by detector (a detector the
  relatives' reports lack keeps the default). Three to ten relatives give a noisy
  MAD, so the scale is never taken below :data:`SCALE_FLOOR` times the default
  scale.

A detector flags at ``z >= Z_FLAGGED``. The report's ``score`` is the largest
``z / Z_FLAGGED`` over the detectors, or over the detectors that agree on the
suspected class pooled (Stouffer), so ``score >= 1`` means some detector flags;
:func:`verdict_for` maps the score to ``compromised`` (>= 1) or ``suspicious``
(>= :data:`SUSPICIOUS_SCORE`). Why 5 robust standard deviations: the per-model
statistics are maxima over 10 classes and the score a maximum over three detectors,
so clean models scatter with tails much heavier than normal (the published Neural
Cleanse threshold, 2, flagged 2 of 6 clean digit models here). The threshold was
set on the calibration zoo (22 clean, 18 backdoored bases), each clean model's z
taken against the 21 others (leave-one-out) so that it does not calibrate itself:
the largest clean z is 3.7, the smallest of a backdoor with a real attack success
rate >= 0.9 is 5.5. ``suspicious`` (0.8 x 5 = 4) lies above every clean model and
``compromised`` (5) below every such backdoor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from scanning.behavioral.report import BehaviorVerdict, RelativeStatistics

#: z-score at which one detector flags; the score is z / Z_FLAGGED (see module doc).
Z_FLAGGED = 5.0
#: Below 1 but at least this score: ``suspicious`` (an approver must look).
SUSPICIOUS_SCORE = 0.8
#: With relatives, the scale is at least this share of the default scale.
SCALE_FLOOR = 0.5
#: Relatives needed before they replace the default calibration.
MIN_RELATIVES = 3
#: The family of a model whose architecture could not be read: all clean models.
ANY_FAMILY = "any"
#: Median and MAD to a normal distribution's sigma.
MAD_CONSISTENCY = 1.4826


@dataclass(frozen=True)
class Reference:
    """Where a statistic of clean models sits: its median and robust standard deviation.

    ``source`` says what it was measured on: ``default:<family>`` or ``relatives:N``.
    """

    center: float
    scale: float
    source: str = f"default:{ANY_FAMILY}"

    def z(self, statistic: float) -> float:
        """How many robust standard deviations ``statistic`` lies above the clean median."""
        return (statistic - self.center) / self.scale

    @property
    def is_relatives(self) -> bool:
        """Measured on the model's clean relatives rather than the calibration zoo."""
        return self.source.startswith("relatives:")

    @classmethod
    def of(cls, values: Iterable[float], *, source: str, floor: float = 0.0) -> Reference:
        """Median and ``1.4826 * MAD`` of ``values``, the scale at least ``floor``."""
        array = np.asarray(list(values), dtype=np.float64)
        center = float(np.median(array))
        mad = MAD_CONSISTENCY * float(np.median(np.abs(array - center)))
        return cls(center=center, scale=max(mad, floor), source=source)


def family_references(by_family: Mapping[str, Sequence[float]]) -> dict[str, Reference]:
    """Default references of one detector from its clean statistics per family (see
    module doc), and over all of them as family ``any``.

    >>> refs = family_references({"dense": [1.0, 2.0, 3.0], "convolutional": [0.0, 0.5, 1.0]})
    >>> refs["dense"].center, refs["convolutional"].center
    (2.0, 0.5)
    >>> round(refs["dense"].scale, 3), round(refs["convolutional"].scale, 3)
    (1.483, 0.741)
    """
    values = {family: np.asarray(v, dtype=np.float64) for family, v in by_family.items()}
    own = {family: Reference.of(v, source=f"default:{family}") for family, v in values.items()}
    offsets = np.concatenate([v - own[family].center for family, v in values.items()])
    pooled = MAD_CONSISTENCY * float(np.median(np.abs(offsets)))
    references = {
        family: replace(reference, scale=max(reference.scale, pooled))
        for family, reference in own.items()
    }
    everything = np.concatenate(list(values.values()))
    references[ANY_FAMILY] = Reference.of(everything, source=f"default:{ANY_FAMILY}")
    return references


def _defaults(table: Mapping[str, tuple[float, float]], family: str) -> dict[str, Reference]:
    return {
        name: Reference(center, scale, f"default:{family}")
        for name, (center, scale) in table.items()
    }


#: Default references per family and detector, from the calibration zoo's clean models
#: (see module doc). Re-measure with ``python -m benchmarks.backdoor_bench --calibrate``
#: whenever a detector or the default budget changes.
DEFAULT_REFERENCES: Mapping[str, Mapping[str, Reference]] = {
    "convolutional": _defaults(
        {"neural_cleanse": (0.296, 0.114), "max_margin": (0.322, 0.113),
         "patch_trigger": (0.796, 0.306)},
        "convolutional",
    ),
    "dense": _defaults(
        {"neural_cleanse": (0.404, 0.136), "max_margin": (0.416, 0.148),
         "patch_trigger": (1.196, 0.280)},
        "dense",
    ),
    ANY_FAMILY: _defaults(
        {"neural_cleanse": (0.315, 0.134), "max_margin": (0.361, 0.137),
         "patch_trigger": (1.023, 0.308)},
        ANY_FAMILY,
    ),
}  # fmt: skip


def default_references(family: str | None) -> dict[str, Reference]:
    """The default references of ``family`` (all clean models when unknown)."""
    return dict(DEFAULT_REFERENCES.get(family or ANY_FAMILY, DEFAULT_REFERENCES[ANY_FAMILY]))


def references_for(
    baseline: Sequence[RelativeStatistics], *, family: str | None
) -> tuple[dict[str, Reference], str]:
    """The references to judge a model by, and the report's ``calibration`` label.

    The label is ``default`` when no detector had enough relatives, ``relatives:N``
    when every one had (N the fewest), and otherwise ``relatives:N`` followed by the
    detectors that kept the default.
    """
    references = default_references(family)
    # A relative of another architecture family has another null distribution; one
    # scanned before families were recorded counts as the registry always counted it.
    kin = [stats for stats in baseline if stats.get("family", family) == family]
    for name, default in list(references.items()):
        values = [float(stats[name]) for stats in kin if name in stats]
        if len(values) >= MIN_RELATIVES:
            references[name] = Reference.of(
                values, source=f"relatives:{len(values)}", floor=SCALE_FLOOR * default.scale
            )
    return references, _label(references)


def _label(references: Mapping[str, Reference]) -> str:
    counts = [int(r.source.split(":")[1]) for r in references.values() if r.is_relatives]
    if not counts:
        return "default"
    kept = sorted(name for name, r in references.items() if not r.is_relatives)
    label = f"relatives:{min(counts)}"
    return label if not kept else f"{label}; default for {', '.join(kept)}"


def verdict_for(score: float) -> BehaviorVerdict:
    """``compromised`` at score >= 1, ``suspicious`` at >= 0.8, else ``clean``."""
    if score >= 1.0:
        return BehaviorVerdict.COMPROMISED
    if score >= SUSPICIOUS_SCORE:
        return BehaviorVerdict.SUSPICIOUS
    return BehaviorVerdict.CLEAN
