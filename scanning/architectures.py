"""Tiny digit classifiers: the architectures the demo trains and the scans rebuild.

A model directory carries no code, only weights (safetensors) and a ``config.json``.
The config names one of the architectures below and its few hyper-parameters, and
:func:`build_model` turns it back into an ``nn.Module`` with freshly initialised
weights, ready for ``load_state_dict``. Only the names in :data:`ARCHITECTURES` are
ever built, so a config cannot make the loader run arbitrary code.

Every architecture is a :class:`DigitsClassifier`: a ``backbone`` that maps an input
batch ``(N, 1, 8, 8)`` of float32 in ``[0, 1]`` to features, then a linear ``head``
that maps features to ``num_classes`` logits. Keeping the two apart is what lets a
fine-tune freeze the backbone and replace the head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "INPUT_SHAPE",
    "VALUE_RANGE",
    "DigitsCNN",
    "DigitsClassifier",
    "DigitsMLP",
    "build_model",
]

#: Shape of one input: one channel of 8x8 pixels (scikit-learn's digits).
INPUT_SHAPE: tuple[int, int, int] = (1, 8, 8)
#: Range of the input pixel values.
VALUE_RANGE: tuple[float, float] = (0.0, 1.0)


class DigitsClassifier(nn.Module):
    """A ``backbone`` producing features followed by a linear ``head`` producing logits.

    Subclasses build both in ``__init__``; ``forward`` is always ``head(backbone(x))``.
    """

    backbone: nn.Sequential
    head: nn.Linear

    def __init__(self, *, width: int, num_classes: int) -> None:
        super().__init__()
        _check_positive("width", width)
        _check_positive("num_classes", num_classes, minimum=2)
        self.width = width
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's output for a batch ``x`` of shape ``(N, 1, 8, 8)``."""
        out: torch.Tensor = self.backbone(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)`` for a batch ``x`` of shape ``(N, 1, 8, 8)``."""
        out: torch.Tensor = self.head(self.features(x))
        return out

    @property
    def config(self) -> dict[str, Any]:
        """The JSON-ready description :func:`build_model` rebuilds this architecture from."""
        return {
            "architecture": type(self).__name__,
            "width": self.width,
            "num_classes": self.num_classes,
            "input_shape": list(INPUT_SHAPE),
            "value_range": list(VALUE_RANGE),
        }


class DigitsCNN(DigitsClassifier):
    """Two 3x3 convolutions (the second with stride 2), a dense layer, a linear head.

    ``width`` channels in the first convolution, ``2 * width`` in the second and
    ``2 * width`` features. ``DigitsCNN(16)`` has about 21.5k parameters.
    """

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__(width=width, num_classes=num_classes)
        features = 2 * width
        self.backbone = nn.Sequential(
            nn.Conv2d(1, width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 4 * 4, features),
            nn.ReLU(),
        )
        self.head = nn.Linear(features, num_classes)


class DigitsMLP(DigitsClassifier):
    """Two dense layers of ``width`` units over the 64 pixels, then a linear head."""

    def __init__(self, width: int = 64, num_classes: int = 10) -> None:
        super().__init__(width=width, num_classes=num_classes)
        self.backbone = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * 8, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
        )
        self.head = nn.Linear(width, num_classes)


#: The architectures :func:`build_model` knows, by the name a config uses.
ARCHITECTURES: Mapping[str, type[DigitsClassifier]] = {
    "DigitsCNN": DigitsCNN,
    "DigitsMLP": DigitsMLP,
}


def build_model(config: Mapping[str, Any]) -> DigitsClassifier:
    """Build the architecture a config describes, with freshly initialised weights.

    ``config`` is what :attr:`DigitsClassifier.config` returns; keys other than the
    architecture's own (training facts, say) are ignored, so a whole ``config.json``
    can be passed. Raises ``ValueError`` naming the problem when the architecture is
    unknown or a field is missing or out of range.

    >>> build_model({"architecture": "DigitsCNN", "width": 4, "num_classes": 10}).width
    4
    """
    name = config.get("architecture")
    if not isinstance(name, str) or name not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {name!r}: expected one of {known}")
    _check_input_contract(config)
    width = _int_field(config, "width")
    num_classes = _int_field(config, "num_classes")
    return ARCHITECTURES[name](width=width, num_classes=num_classes)


def _int_field(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    # bool is an int subclass, but "width": true is a broken config, not width 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"architecture config field {key!r} must be an integer, got {value!r}")
    return value


def _check_input_contract(config: Mapping[str, Any]) -> None:
    """Refuse configs that promise inputs these fixed-size architectures cannot take."""
    for key, expected in (("input_shape", INPUT_SHAPE), ("value_range", VALUE_RANGE)):
        value = config.get(key, expected)
        if not isinstance(value, list | tuple) or tuple(value) != expected:
            raise ValueError(
                f"architecture config field {key!r} is {value!r}, "
                f"but these architectures only take {list(expected)!r}"
            )


def _check_positive(name: str, value: int, *, minimum: int = 1) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
