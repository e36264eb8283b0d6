"""Small clean classifiers fitted to the scan profile's references at scan time.

The patch search (:mod:`._patch_search`) asks of every candidate trigger whether it
changes what a *clean* model of the same data sees. Natural "triggers" of a clean
classifier are mostly semantic: a patch that turns a 3 into an 8 draws an 8's
strokes, and other models trained on digits agree that it now looks like an 8. A
planted trigger means nothing to a model that was never poisoned. The profile's
references are the only clean data a scan has, so the scan fits two tiny
classifiers of different inductive bias to them (a linear softmax regression and a
one-hidden-layer perceptron; full batch, a fixed number of Adam steps, seeded) and
uses their averaged log-probabilities as that clean model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from scanning.behavioral._torch_support import Adam

#: Hidden units of the perceptron; Adam steps, learning rate and L2 weight of the fit.
HIDDEN_UNITS = 32
FIT_STEPS = 50
FIT_LR = 0.1
WEIGHT_DECAY = 1e-3


class ReferenceEnsemble:
    """Clean classifiers of the references; called like a model, returns log-probabilities."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        self.members = list(members)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Mean log-softmax of the members, shape ``(N, num_classes)``."""
        return torch.stack([m(batch).log_softmax(dim=1) for m in self.members]).mean(dim=0)

    def accuracy(self, x: NDArray[np.float32], y: NDArray[np.int64]) -> float:
        """Share of ``x`` the ensemble labels as ``y``."""
        with torch.no_grad():
            predicted = self(torch.from_numpy(np.ascontiguousarray(x))).argmax(dim=1)
        return float((predicted.numpy() == y).mean())


def fit_reference_ensemble(
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    *,
    num_classes: int,
    value_range: tuple[float, float],
    seed: int,
) -> ReferenceEnsemble:
    """Fit the linear and the perceptron classifier to ``(x, y)`` (see module doc)."""
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    features = int(np.prod(x.shape[1:]))
    torch.manual_seed(seed)
    linear = nn.Sequential(_Rescale(value_range), nn.Linear(features, num_classes))
    perceptron = nn.Sequential(
        _Rescale(value_range),
        nn.Linear(features, HIDDEN_UNITS),
        nn.ReLU(),
        nn.Linear(HIDDEN_UNITS, num_classes),
    )
    members = [linear, perceptron]
    _fit(members, inputs, labels)
    return ReferenceEnsemble(members)


class _Rescale(nn.Module):
    """Flattens an input batch and maps the value range onto [0, 1]."""

    def __init__(self, value_range: tuple[float, float]) -> None:
        super().__init__()
        self.low, self.span = value_range[0], value_range[1] - value_range[0]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """``(batch - low) / (high - low)``, flattened to ``(N, features)``."""
        return (batch.flatten(1) - self.low) / self.span


def _fit(members: Sequence[nn.Module], inputs: torch.Tensor, labels: torch.Tensor) -> None:
    """Fit every member at once: one loss, one gradient call per step (the fit's cost
    is mostly per-call overhead at this size)."""
    parameters = [p for member in members for p in member.parameters()]
    optimiser = Adam(parameters, lr=FIT_LR)
    for _ in range(FIT_STEPS):
        fit = torch.stack([nn.functional.cross_entropy(m(inputs), labels) for m in members])
        penalty = torch.stack([(p**2).sum() for p in parameters])
        loss = fit.sum() + WEIGHT_DECAY * penalty.sum()
        optimiser.step(torch.autograd.grad(loss, parameters))
    for member in members:
        member.requires_grad_(False)
        member.eval()
