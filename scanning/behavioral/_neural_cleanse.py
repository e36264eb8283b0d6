"""Neural Cleanse trigger reverse-engineering (Wang et al., IEEE S&P 2019), batched.

For each candidate class ``k`` find the smallest mask ``m_k`` and a pattern ``p_k``
such that stamping ``x' = (1 - m_k) x + m_k p_k`` sends the reference inputs to ``k``:
minimise ``CE(f(x'), k) + lambda_k * |m_k|_1``. Mask and pattern live in sigmoid space
(always inside [0, 1] and the value range), ``lambda_k`` follows the published schedule
(raised by 1.5 after ``cost_patience`` epochs in which the attack succeeded, lowered by
1.5^1.5 after as many in which it did not), and the smallest mask that reached the
attack threshold is kept. A backdoor's target needs a much smaller mask than any
other class: the MAD anomaly index of the norms finds it.

:func:`reverse_engineer` optimises any set of classes together: one forward pass over
``K x B`` stamped inputs per step. The published method is the same loop run on one
class at a time (``classes=[k]``), which is how :func:`scanning.behavioral.detect.
plain_neural_cleanse` calls it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from scanning.behavioral._torch_support import Adam, Classifier, logits_of, mask_shape

#: NC's consistency constant: 1.4826 * MAD estimates a normal distribution's sigma.
MAD_CONSISTENCY = 1.4826


@dataclass(frozen=True)
class CleanseSettings:
    """How long and how hard to optimise; an "epoch" is ``epoch_steps`` optimiser steps."""

    max_steps: int
    batch_size: int
    epoch_steps: int
    lr: float = 0.1
    init_cost: float = 1e-3
    attack_threshold: float = 0.99
    cost_patience: int = 5
    stop_patience: int = 10
    seed: int = 0
    mask_init: float = -1.0


@dataclass(frozen=True)
class ReversedTriggers:
    """Per candidate class: the smallest successful mask's L1 norm, mask and pattern.

    ``norms[i]`` is ``inf`` where no mask reached the attack threshold for
    ``classes[i]``; its mask and pattern are then the last ones tried.
    """

    classes: tuple[int, ...]
    norms: NDArray[np.float64]
    masks: NDArray[np.float32]
    patterns: NDArray[np.float32]
    steps: int


class _CostSchedule:
    """NC's per-class adaptive L1 weight and early-stopping state, vectorised over classes."""

    def __init__(self, count: int, settings: CleanseSettings) -> None:
        self.settings = settings
        self.cost = np.full(count, settings.init_cost)
        self.up = np.zeros(count, dtype=np.int64)
        self.down = np.zeros(count, dtype=np.int64)
        self.moved_up = np.zeros(count, dtype=bool)
        self.moved_down = np.zeros(count, dtype=bool)
        self.stale = np.zeros(count, dtype=np.int64)
        self.last_best = np.full(count, np.inf)

    def end_epoch(self, succeeded: NDArray[np.bool_], best: NDArray[np.float64]) -> None:
        """Adapt the costs to this epoch's attack success and count epochs without progress."""
        patience = self.settings.cost_patience
        self.up = np.where(succeeded, self.up + 1, 0)
        self.down = np.where(succeeded, 0, self.down + 1)
        raise_cost, lower_cost = self.up >= patience, self.down >= patience
        self.cost = np.where(raise_cost, self.cost * 1.5, self.cost)
        self.cost = np.where(lower_cost, self.cost / 1.5**1.5, self.cost)
        self.moved_up |= raise_cost
        self.moved_down |= lower_cost
        self.up[raise_cost] = 0
        self.down[lower_cost] = 0
        # Epochs before the first success do not count as stale: the search has not started.
        improved = (best < 0.99 * self.last_best) | ~np.isfinite(best)
        self.stale = np.where(improved, 0, self.stale + 1)
        self.last_best = np.minimum(self.last_best, best)

    def converged(self) -> bool:
        """Published rule: no 1% improvement for ``stop_patience`` epochs after the cost moved
        both ways, for every class."""
        settled = self.moved_up & self.moved_down & (self.stale >= self.settings.stop_patience)
        return bool(np.all(settled & np.isfinite(self.last_best)))


def reverse_engineer(
    model: Classifier,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    classes: Sequence[int],
    *,
    num_classes: int,
    value_range: tuple[float, float],
    settings: CleanseSettings,
    progress: Callable[[float], None] | None = None,
) -> ReversedTriggers:
    """Optimise a mask and pattern for every class in ``classes`` at once (see module doc)."""
    generator = torch.Generator().manual_seed(settings.seed)
    low, high = value_range
    count, shape = len(classes), tuple(x.shape[1:])
    mask_logit = (
        torch.randn((count, *mask_shape(shape)), generator=generator) * 0.5 + settings.mask_init
    )
    pattern_logit = torch.randn((count, *shape), generator=generator)
    mask_logit.requires_grad_(True)
    pattern_logit.requires_grad_(True)
    optimiser = Adam([mask_logit, pattern_logit], lr=settings.lr)
    references = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    targets = torch.tensor(list(classes), dtype=torch.int64)
    schedule = _CostSchedule(count, settings)
    best = np.full(count, np.inf)
    best_mask = torch.sigmoid(mask_logit.detach()).clone()
    best_pattern = (low + (high - low) * torch.sigmoid(pattern_logit.detach())).clone()
    epoch_success = np.zeros(count)
    order = _batches(len(x), settings.batch_size, generator)
    step = 0
    for step in range(1, settings.max_steps + 1):
        batch = next(order)
        mask = torch.sigmoid(mask_logit)
        pattern = low + (high - low) * torch.sigmoid(pattern_logit)
        stamped = (1 - mask[:, None]) * references[batch][None] + (mask * pattern)[:, None]
        logits = logits_of(model, stamped.reshape(-1, *shape), num_classes=num_classes).reshape(
            count, len(batch), num_classes
        )
        # A reference already of class k says nothing about a trigger towards k.
        victims = (labels[batch][None, :] != targets[:, None]).float()
        per_input = torch.nn.functional.cross_entropy(
            logits.reshape(-1, num_classes), targets.repeat_interleave(len(batch)), reduction="none"
        ).reshape(count, len(batch))
        weight = victims.sum(dim=1).clamp(min=1)
        cross_entropy = (per_input * victims).sum(dim=1) / weight
        norms = mask.reshape(count, -1).sum(dim=1)
        cost = torch.from_numpy(schedule.cost).float()
        loss = (cross_entropy + cost * norms).sum()
        gradients = torch.autograd.grad(loss, [mask_logit, pattern_logit])
        with torch.no_grad():
            hits = (logits.argmax(dim=2) == targets[:, None]).float()
            success = ((hits * victims).sum(dim=1) / weight).numpy()
            better = (success >= settings.attack_threshold) & (norms.numpy() < best)
            if better.any():
                chosen = torch.from_numpy(better)
                best = np.where(better, norms.numpy(), best)
                best_mask[chosen] = mask[chosen].detach()
                best_pattern[chosen] = pattern[chosen].detach()
        optimiser.step(gradients)
        epoch_success += success
        if step % settings.epoch_steps == 0:
            schedule.end_epoch(
                epoch_success / settings.epoch_steps >= settings.attack_threshold, best
            )
            epoch_success[:] = 0
            if progress is not None:
                progress(step / settings.max_steps)
            if schedule.converged():
                break
    return ReversedTriggers(
        classes=tuple(int(c) for c in classes),
        norms=best,
        masks=best_mask.numpy().astype(np.float32),
        patterns=best_pattern.numpy().astype(np.float32),
        steps=step,
    )


def _batches(size: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless seeded mini-batches of indices, reshuffled every pass over the references."""
    while True:
        order = torch.randperm(size, generator=generator)
        for start in range(0, size, batch_size):
            chunk = order[start : start + batch_size]
            if len(chunk) == batch_size or start == 0:
                yield chunk


def anomaly_indices(norms: NDArray[np.float64]) -> NDArray[np.float64]:
    """NC's anomaly index of every class: how far below the median its mask norm lies, in
    robust standard deviations (``1.4826 * MAD``); 0 for classes at or above the median.

    Classes whose attack never succeeded count as needing the whole input.
    """
    finite = np.isfinite(norms)
    if not finite.any():
        return np.zeros_like(norms)
    filled = np.where(finite, norms, max(float(norms[finite].max()), 1.0) * 2)
    median = float(np.median(filled))
    mad = MAD_CONSISTENCY * float(np.median(np.abs(filled - median)))
    spread = max(mad, 1e-6 * max(median, 1e-6))
    return np.maximum(median - filled, 0.0) / spread


def mask_norm_ratio(norms: NDArray[np.float64]) -> float:
    """The median mask norm over the smallest: how much cheaper the best trigger is (>= 1)."""
    finite = norms[np.isfinite(norms)]
    if len(finite) == 0:
        return 1.0
    median = float(np.median(np.where(np.isfinite(norms), norms, finite.max() * 2)))
    return median / max(float(finite.min()), 1e-6) if math.isfinite(median) else 1.0
