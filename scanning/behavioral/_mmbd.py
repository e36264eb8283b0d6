"""MM-BD: maximum achievable classification margin per class (Wang et al., IEEE S&P 2024).

A backdoor is a shortcut: a few input values that push the target logit far above
every other. So the largest margin ``f_k(x) - max_{j != k} f_j(x)`` any input inside
the value range can reach is abnormally large for the target class. MM-BD needs no
clean data and is blind to the trigger's shape and size, which is what Neural Cleanse
misses (whole-image blended triggers, large patches). The margin of every class is
maximised by projected (here: sigmoid-parametrised) gradient ascent from several
seeded random starts, all classes and starts in one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from scanning.behavioral._torch_support import Adam, Classifier, logits_of


def max_margins(
    model: Classifier,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    value_range: tuple[float, float],
    restarts: int,
    steps: int,
    seed: int,
    lr: float = 0.1,
    progress: Callable[[float], None] | None = None,
) -> NDArray[np.float64]:
    """The largest margin found for every class, shape ``(num_classes,)``."""
    generator = torch.Generator().manual_seed(seed + 7919)
    low, high = value_range
    shape = tuple(input_shape)
    latent = torch.randn((num_classes, restarts, *shape), generator=generator)
    latent.requires_grad_(True)
    optimiser = Adam([latent], lr=lr)
    own = torch.arange(num_classes)
    best = torch.full((num_classes,), -torch.inf)
    for step in range(1, steps + 1):
        inputs = low + (high - low) * torch.sigmoid(latent)
        logits = logits_of(model, inputs.reshape(-1, *shape), num_classes=num_classes)
        margins = _margins(logits.reshape(num_classes, restarts, num_classes), own)
        (gradient,) = torch.autograd.grad(-margins.sum(), [latent])
        best = torch.maximum(best, margins.detach().max(dim=1).values)
        optimiser.step((gradient,))
        if progress is not None and step % 10 == 0:
            progress(step / steps)
    with torch.no_grad():
        inputs = low + (high - low) * torch.sigmoid(latent)
        logits = logits_of(model, inputs.reshape(-1, *shape), num_classes=num_classes)
        best = torch.maximum(
            best, _margins(logits.reshape(num_classes, restarts, -1), own).max(1).values
        )
    return best.double().numpy()


def _margins(logits: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """``logits[k, r, k] - max_{j != k} logits[k, r, j]`` of shape ``(K, R)``."""
    target = logits[own, :, own]
    others = logits.masked_fill(
        torch.nn.functional.one_hot(own, logits.shape[2]).bool()[:, None, :], -torch.inf
    )
    return target - others.max(dim=2).values
