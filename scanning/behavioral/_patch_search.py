"""Patch trigger search: square patches a clean model of the references does not notice.

Neural Cleanse looks for the *cheapest* mask; a planted patch of 3x3 or 4x4 pixels is
not cheap on an 8x8 input (natural "triggers" of a few scattered stroke pixels cost
as much), so its norm is unremarkable. Searching a fixed square window instead
removes the cost question but raises another: an optimised 4x4 patch, a quarter of
an 8x8 image, can draw enough strokes to send almost any digit to almost any class,
so on a clean model nearly every class is reachable. What a natural patch draws is
*semantic*, though: other clean classifiers of the same data see the new class as
well. A planted trigger only works on the poisoned model.

So for every candidate class ``k`` and every window (side ``side``, top-left corners
every ``stride`` pixels: with the defaults, 4x4 windows every 2 pixels, every 3x3
square of an 8x8 image lies inside one window) the search optimises the pattern
inside the window, all classes and windows in one batch, to send the references to
``k`` **while the clean reference ensemble** (:mod:`._reference_models`) **keeps
seeing their own label**. The pair's *advantage* is the share of references of other
classes the model sends to ``k`` minus the share the reference ensemble sends there.
A class's score is ``-log(1 - a + 1/n)`` for its best window's advantage ``a`` over
``n`` evaluation references: the log of how few references the patch leaves alone,
which keeps apart what a share saturating at 1 would squash (a planted trigger
flips all but one or two references, a natural patch a quarter of them fewer).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from scanning.behavioral._reference_models import ReferenceEnsemble
from scanning.behavioral._torch_support import Adam, Classifier, logits_of, mask_shape
from scanning.behavioral.report import TriggerPattern

#: At most this many window positions per image axis (larger images get a larger stride).
MAX_POSITIONS = 8


@dataclass(frozen=True)
class PatchSettings:
    """The search's window, step budget and evaluation set."""

    side: int = 4
    stride: int = 2
    steps: int = 20
    batch_size: int = 8
    evaluation_size: int = 128
    lr: float = 0.3
    keep_weight: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class PatchTriggers:
    """Per candidate class and window: the optimised pattern and where it sends references.

    ``model_rates[i, j]`` is the share of evaluation references not of class
    ``classes[i]`` that the model sends there with window ``windows[j]`` stamped,
    ``reference_rates[i, j]`` the same for the clean reference ensemble.
    """

    classes: tuple[int, ...]
    windows: tuple[tuple[int, int], ...]
    side: int
    masks: NDArray[np.float32]
    patterns: NDArray[np.float32]
    model_rates: NDArray[np.float64]
    reference_rates: NDArray[np.float64]
    reference_accuracy: float
    evaluated: int

    @property
    def advantages(self) -> NDArray[np.float64]:
        """Model rate minus reference rate, shape ``(classes, windows)``."""
        return self.model_rates - self.reference_rates

    def best_windows(self) -> NDArray[np.int64]:
        """Index of each class's best window."""
        return np.asarray(self.advantages.argmax(axis=1), dtype=np.int64)

    def class_scores(self) -> NDArray[np.float64]:
        """``-log(1 - a + 1/n)`` of each class's best advantage ``a`` (see module doc)."""
        best = self.advantages.max(axis=1)
        return np.asarray(-np.log(1.0 - best + 1.0 / max(self.evaluated, 1)), dtype=np.float64)

    def trigger(self, target: int) -> TriggerPattern:
        """The best window's patch for ``target`` as a mask and pattern."""
        index = self.classes.index(target)
        window = int(self.best_windows()[index])
        return TriggerPattern(
            mask=self.masks[window].copy(),
            pattern=self.patterns[index, window].copy(),
            target_class=target,
        )


def is_searchable(input_shape: Sequence[int]) -> bool:
    """The search needs channels-first images ``(C, H, W)``."""
    return len(tuple(input_shape)) == 3


def window_corners(height: int, width: int, *, side: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the search windows, the last row and column always included.

    >>> window_corners(8, 8, side=4, stride=2)[:4]
    [(0, 0), (0, 2), (0, 4), (2, 0)]
    >>> len(window_corners(8, 8, side=4, stride=2))
    9
    """
    rows, cols = _positions(height, side, stride), _positions(width, side, stride)
    return [(row, col) for row in rows for col in cols]


def _positions(length: int, side: int, stride: int) -> list[int]:
    last = max(length - side, 0)
    step = max(stride, math.ceil(last / (MAX_POSITIONS - 1)) if last else 1)
    positions = list(range(0, last + 1, step))
    return positions if positions[-1] == last else [*positions, last]


def search_patches(
    model: Classifier,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    classes: Sequence[int],
    *,
    num_classes: int,
    value_range: tuple[float, float],
    reference: ReferenceEnsemble,
    settings: PatchSettings,
    progress: Callable[[float], None] | None = None,
) -> PatchTriggers:
    """Optimise a patch for every class and window at once and score it (see module doc).

    ``x`` must hold channels-first images (:func:`is_searchable`).
    """
    shape = tuple(x.shape[1:])
    side = min(settings.side, shape[1], shape[2])
    corners = window_corners(shape[1], shape[2], side=side, stride=settings.stride)
    masks = _window_masks(shape, corners, side)
    generator = torch.Generator().manual_seed(settings.seed + 4099)
    latent = torch.randn((len(classes), len(corners), *shape), generator=generator) * 0.5
    latent.requires_grad_(True)
    optimiser = Adam([latent], lr=settings.lr)
    references = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    targets = torch.tensor(list(classes), dtype=torch.int64)
    low, high = value_range
    for step in range(1, settings.steps + 1):
        batch = torch.randperm(len(x), generator=generator)[: settings.batch_size]
        pattern = low + (high - low) * torch.sigmoid(latent)
        loss = _loss(model, reference, _stamp(references[batch], masks, pattern),
                     labels[batch], targets, num_classes=num_classes,
                     keep_weight=settings.keep_weight)  # fmt: skip
        optimiser.step(torch.autograd.grad(loss, [latent]))
        if progress is not None and step % 5 == 0:
            progress(0.9 * step / settings.steps)
    with torch.no_grad():
        patterns = low + (high - low) * torch.sigmoid(latent)
        chosen = torch.randperm(len(x), generator=generator)[: settings.evaluation_size]
        model_rates, reference_rates = _rates(
            model, reference, references[chosen], labels[chosen], masks, patterns, targets,
            num_classes=num_classes,
        )  # fmt: skip
    return PatchTriggers(
        classes=tuple(int(c) for c in classes),
        windows=tuple(corners),
        side=side,
        masks=masks.numpy(),
        patterns=patterns.numpy().astype(np.float32),
        model_rates=model_rates,
        reference_rates=reference_rates,
        reference_accuracy=reference.accuracy(x, y),
        evaluated=len(chosen),
    )


def _window_masks(
    shape: tuple[int, ...], corners: Sequence[tuple[int, int]], side: int
) -> torch.Tensor:
    masks = torch.zeros((len(corners), *mask_shape(shape)))
    for index, (row, col) in enumerate(corners):
        masks[index, ..., row : row + side, col : col + side] = 1.0
    return masks


def _stamp(batch: torch.Tensor, masks: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """Every (class, window) pattern on every input: shape ``(K, W, N, *input_shape)``."""
    return (1 - masks)[None, :, None] * batch[None, None] + (masks[None] * patterns)[:, :, None]


def _loss(
    model: Classifier,
    reference: ReferenceEnsemble,
    stamped: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor,
    *,
    num_classes: int,
    keep_weight: float,
) -> torch.Tensor:
    """Cross-entropy towards each target on the model plus, weighted, the reference
    ensemble's cross-entropy towards each input's own label; inputs already of the
    target class do not count."""
    count, windows, size = stamped.shape[:3]
    flat = stamped.reshape(-1, *stamped.shape[3:])
    logits = logits_of(model, flat, num_classes=num_classes)
    towards = targets[:, None, None].expand(count, windows, size).reshape(-1)
    attack = torch.nn.functional.cross_entropy(logits, towards, reduction="none")
    own = labels.repeat(count * windows)
    keep = torch.nn.functional.nll_loss(reference(flat), own, reduction="none")
    victims = (labels[None, :] != targets[:, None]).float()[:, None, :]
    return ((attack + keep_weight * keep).reshape(count, windows, size) * victims).sum()


def _rates(
    model: Classifier,
    reference: ReferenceEnsemble,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    patterns: torch.Tensor,
    targets: torch.Tensor,
    *,
    num_classes: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per (class, window): the share of other-class inputs each classifier sends to the class."""
    model_rates = np.zeros((len(targets), len(masks)))
    reference_rates = np.zeros_like(model_rates)
    for index, target in enumerate(targets.tolist()):
        victims = inputs[labels != target]
        if len(victims) == 0:
            continue
        stamped = _stamp(victims, masks, patterns[index : index + 1])[0]
        flat = stamped.reshape(-1, *stamped.shape[2:])
        for rates, classifier in ((model_rates, model), (reference_rates, reference)):
            logits = logits_of(classifier, flat, num_classes=num_classes)
            hits = (logits.argmax(dim=1) == target).reshape(len(masks), len(victims))
            rates[index] = hits.double().mean(dim=1).numpy()
    return model_rates, reference_rates
