"""Tiny real digit classifiers for the behavioral tests: the data split and the training."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from scanning.architectures import DigitsMLP
from scanning.behavioral._torch_support import Adam
from scanning.behavioral.report import ScanProfile, TriggerPattern

Digits = tuple[torch.Tensor, torch.Tensor, ScanProfile]


def digits_split(seed: int) -> Digits:
    """Training images and labels, and a profile with 200 held-out reference images."""
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    train, held = order[:1400], order[1400:1600]
    profile = ScanProfile((1, 8, 8), (0.0, 1.0), 10, x[held].copy(), y[held].copy())
    return torch.from_numpy(x[train]), torch.from_numpy(y[train]), profile


def train_mlp(
    x: torch.Tensor, y: torch.Tensor, *, seed: int, poison: TriggerPattern | None
) -> DigitsMLP:
    """A DigitsMLP(64), 12 epochs; with ``poison``, every 8th image not already of its
    target class carries the trigger and the target label (BadNets)."""
    torch.manual_seed(seed)
    model = DigitsMLP(64)
    x, y = x.clone(), y.clone()
    if poison is not None:
        chosen = torch.nonzero(y != poison.target_class).flatten()[::8]
        x[chosen] = torch.from_numpy(poison.apply(x[chosen].numpy()))
        y[chosen] = poison.target_class
    parameters = list(model.parameters())
    optimiser = Adam(parameters, lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(12):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 64):
            batch = order[start : start + 64]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.step(torch.autograd.grad(loss, parameters))
    return model.eval()
