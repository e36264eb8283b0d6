"""The tiny digit classifiers and the config they are rebuilt from."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from scanning import architectures
from scanning.architectures import (
    ARCHITECTURES,
    DigitsClassifier,
    DigitsCNN,
    DigitsMLP,
    build_model,
)


def test_public_names_are_pinned() -> None:
    assert sorted(architectures.__all__) == [
        "ARCHITECTURES",
        "DigitsCNN",
        "DigitsClassifier",
        "DigitsMLP",
        "INPUT_SHAPE",
        "VALUE_RANGE",
        "build_model",
    ]
    assert all(hasattr(architectures, name) for name in architectures.__all__)


@pytest.mark.parametrize("model", [DigitsCNN(), DigitsCNN(width=4), DigitsMLP(), DigitsMLP(8)])
def test_logits_have_one_row_per_image_and_one_column_per_class(model: DigitsClassifier) -> None:
    out = model(torch.rand(5, 1, 8, 8))
    assert out.shape == (5, 10)
    assert out.dtype == torch.float32


def test_backbone_and_head_compose_to_forward() -> None:
    model = DigitsCNN(width=4)
    x = torch.rand(3, 1, 8, 8)
    assert model.features(x).shape == (3, model.head.in_features)
    assert torch.equal(model.head(model.backbone(x)), model(x))


def test_config_describes_the_architecture() -> None:
    assert DigitsCNN(width=16, num_classes=10).config == {
        "architecture": "DigitsCNN",
        "width": 16,
        "num_classes": 10,
        "input_shape": [1, 8, 8],
        "value_range": [0.0, 1.0],
    }


@pytest.mark.parametrize("model", [DigitsCNN(width=8, num_classes=3), DigitsMLP(width=16)])
def test_build_model_rebuilds_a_model_that_takes_the_same_weights(
    model: DigitsClassifier,
) -> None:
    rebuilt = build_model(model.config)
    assert type(rebuilt) is type(model)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(rebuilt(x), model(x))


def test_build_model_ignores_keys_that_are_not_the_architecture() -> None:
    config = {**DigitsCNN(width=4).config, "training": [{"method": "scratch"}]}
    assert isinstance(build_model(config), DigitsCNN)


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown architecture 'ResNet50': expected one of"):
        build_model({"architecture": "ResNet50", "width": 16, "num_classes": 10})


def test_every_known_architecture_is_a_digits_classifier() -> None:
    assert set(ARCHITECTURES) == {"DigitsCNN", "DigitsMLP"}
    for name in ARCHITECTURES:
        assert (
            type(build_model({"architecture": name, "width": 4, "num_classes": 10})).__name__
            == name
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": None}, r"unknown architecture None"),
        ({"architecture": "__import__"}, r"unknown architecture '__import__'"),
        ({"width": "16"}, r"'width' must be an integer, got '16'"),
        ({"width": True}, r"'width' must be an integer, got True"),
        ({"width": 0}, r"width must be at least 1, got 0"),
        ({"num_classes": 1}, r"num_classes must be at least 2, got 1"),
        ({"input_shape": [3, 32, 32]}, r"'input_shape' is \[3, 32, 32\]"),
        ({"value_range": [0, 255]}, r"'value_range' is \[0, 255\]"),
        ({"value_range": "0..1"}, r"'value_range' is '0..1'"),
    ],
)
def test_broken_configs_are_refused_with_the_field_named(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_model({**DigitsCNN(width=4).config, **change})
