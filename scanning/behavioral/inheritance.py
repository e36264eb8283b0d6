"""Whether a replayed trigger shows a real inheritance: a pure rule, no torch.

The registry applies it when it records ``mbom replay`` results; the detectors'
benchmark applies it to its zoo. See :func:`confirms_inheritance` for the rule
and how its margin was calibrated.
"""

from __future__ import annotations

from collections.abc import Sequence

from scanning.behavioral.report import ReplayMeasure

__all__ = ["INHERITANCE_MARGIN", "confirms_inheritance"]

#: How much more often than the most susceptible clean relative a descendant must be sent
#: to the trigger's target before replay confirms it inherited the backdoor (see
#: :func:`confirms_inheritance`).
INHERITANCE_MARGIN = 0.35


def confirms_inheritance(
    measure: ReplayMeasure,
    *,
    baseline: Sequence[ReplayMeasure] = (),
    threshold: float = 0.5,
) -> bool:
    """Whether a descendant's replay shows it inherited the trigger rather than noise.

    ``measure`` is the trigger replayed on the descendant, ``baseline`` the same
    trigger replayed (same run, same references) on clean relatives: clean models
    outside the source's lineage. Without a baseline this is the issue's plain rule,
    ``measure.rate >= threshold``.

    Why a baseline: a trigger reverse-engineered from a model is partly a *universal
    adversarial patch* of that model, and every model trained on the same data, and
    above all a fine-tune that kept the weights, is fooled by it too. On the digits
    zoo (calibration set) a clean base's recovered trigger sends 67-92% of its
    fine-tunes' references to its class, about as often as a backdoored base's
    recovered trigger does for its descendants (80-97%), so a fixed threshold cannot
    tell them apart. What does separate them is how the trigger fares on clean
    relatives: a backdoor's trigger does little to an unrelated model, a natural one
    fools many of them. So, with a baseline, confirmed means the rate towards the
    trigger's target (``target_rate``; ``rate`` for a trigger without target) reaches
    ``threshold`` *and* beats every clean relative's by :data:`INHERITANCE_MARGIN`.
    Calibration zoo, most susceptible of 13-14 relatives: descendants that inherited
    a backdoor beat it by 0.41 or more, descendants of clean bases by 0.16 at most;
    0.35 lies between. The maximum needs enough relatives to include a susceptible
    one: with 3 a clean lineage still confirmed in ~10% of draws of relatives on the
    calibration zoo, with 8 in under 1%.

    Raises ``ValueError`` when ``threshold`` is not in (0, 1].

    >>> inherited = ReplayMeasure(rate=0.9, collapsed_class=3, target_rate=0.9,
    ...                           clean_accuracy=0.97)
    >>> relative = ReplayMeasure(rate=0.2, collapsed_class=3, target_rate=0.02,
    ...                          clean_accuracy=0.98)
    >>> confirms_inheritance(inherited, baseline=[relative])
    True
    >>> susceptible = ReplayMeasure(rate=0.8, collapsed_class=3, target_rate=0.8,
    ...                             clean_accuracy=0.98)
    >>> confirms_inheritance(inherited, baseline=[relative, susceptible])
    False
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"the replay threshold must be in (0, 1], got {threshold}")
    if not baseline:
        return measure.rate >= threshold
    rate = _towards_target(measure)
    noise = max(_towards_target(relative) for relative in baseline)
    return rate >= threshold and rate >= noise + INHERITANCE_MARGIN


def _towards_target(measure: ReplayMeasure) -> float:
    return measure.target_rate if measure.target_rate is not None else measure.rate
