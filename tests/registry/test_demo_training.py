"""Training the demo's real tiny models: accuracy, backdoor survival, saving and loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from registry import demo_training
from registry.demo_training import (
    DigitsData,
    TrainedModel,
    Trigger,
    accuracy,
    attack_success_rate,
    fine_tune,
    load_digits_data,
    load_model_dir,
    predict,
    reference_inputs,
    save_model_dir,
    save_reference,
    train_base,
)
from scanning.architectures import DigitsCNN, DigitsMLP

pytestmark = pytest.mark.slow

TRIGGER = Trigger(target=0, size=2, row=6, col=6, value=1.0)


@pytest.fixture(scope="module")
def data() -> DigitsData:
    return load_digits_data()


@pytest.fixture(scope="module")
def backdoored(data: DigitsData) -> TrainedModel:
    return train_base(width=16, seed=0, epochs=12, backdoor=TRIGGER, data=data.train)


@pytest.fixture(scope="module")
def clean(data: DigitsData) -> TrainedModel:
    return train_base(width=16, seed=1, epochs=12, data=data.train)


@pytest.fixture(scope="module")
def head_tuned(backdoored: TrainedModel, data: DigitsData) -> TrainedModel:
    subset = data.train.subset(fraction=0.5, seed=2)
    return fine_tune(backdoored, mode="head", seed=2, epochs=6, data=subset)


@pytest.fixture(scope="module")
def fully_tuned(backdoored: TrainedModel, data: DigitsData) -> TrainedModel:
    subset = data.train.subset(fraction=0.5, seed=3)
    return fine_tune(backdoored, mode="full", seed=3, epochs=6, data=subset)


def test_public_names_are_pinned() -> None:
    assert sorted(demo_training.__all__) == [
        "CARD_FILE",
        "CONFIG_FILE",
        "DigitsData",
        "FineTuneMode",
        "Split",
        "TrainedModel",
        "TrainingStep",
        "Trigger",
        "WEIGHTS_FILE",
        "accuracy",
        "attack_success_rate",
        "fine_tune",
        "load_digits_data",
        "load_model_dir",
        "predict",
        "reference_inputs",
        "save_model_dir",
        "save_reference",
        "train_base",
    ]
    assert all(hasattr(demo_training, name) for name in demo_training.__all__)


# --- data -----------------------------------------------------------------------------


def test_digits_are_scaled_float_images_split_deterministically(data: DigitsData) -> None:
    assert data.train.x.shape == (1347, 1, 8, 8)
    assert data.test.x.shape == (450, 1, 8, 8)
    assert data.train.x.dtype == torch.float32
    assert data.train.y.dtype == torch.int64
    assert float(data.train.x.min()) == 0.0
    assert float(data.train.x.max()) == 1.0
    again = load_digits_data()
    assert torch.equal(again.test.x, data.test.x)
    assert torch.equal(again.test.y, data.test.y)


def test_subset_is_a_seeded_fraction(data: DigitsData) -> None:
    half = data.train.subset(fraction=0.5, seed=4)
    assert len(half) == 674
    assert torch.equal(half.y, data.train.subset(fraction=0.5, seed=4).y)
    assert not torch.equal(half.y, data.train.subset(fraction=0.5, seed=5).y)


def test_subset_fraction_out_of_range_is_refused(data: DigitsData) -> None:
    with pytest.raises(ValueError, match=r"subset fraction must be in \(0, 1\], got 1.5"):
        data.train.subset(fraction=1.5, seed=0)


# --- the trigger ----------------------------------------------------------------------


def test_trigger_stamps_a_copy_of_tensors_and_arrays() -> None:
    images = torch.zeros(2, 1, 8, 8)
    stamped = TRIGGER.apply(images)
    assert float(images.sum()) == 0.0
    assert torch.equal(stamped[:, :, 6:, 6:], torch.ones(2, 1, 2, 2))
    assert float(stamped.sum()) == 8.0
    as_array = TRIGGER.apply(np.zeros((2, 1, 8, 8), dtype=np.float32))
    np.testing.assert_array_equal(as_array, stamped.numpy())


def test_trigger_mask_is_its_footprint() -> None:
    mask = Trigger(size=3, row=0, col=1).mask()
    assert mask.shape == (1, 8, 8)
    assert mask.sum() == 9.0
    assert mask[0, 0:3, 1:4].min() == 1.0


def test_trigger_json_round_trip() -> None:
    trigger = Trigger(target=7, size=3, row=1, col=2, value=0.5)
    assert Trigger.from_json(json.loads(json.dumps(trigger.to_json()))) == trigger


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"size": 0}, r"trigger size must be at least 1, got 0"),
        ({"row": 7}, r"a 2x2 trigger at row 7, column 6 does not fit in the 8x8 image"),
        ({"col": -1}, r"a 2x2 trigger at row 6, column -1 does not fit"),
        ({"size": 9, "row": 0, "col": 0}, r"a 9x9 trigger at row 0, column 0 does not fit"),
        ({"value": 2.0}, r"trigger value 2.0 is outside \[0.0, 1.0\]"),
        ({"target": -1}, r"trigger target class must be >= 0, got -1"),
    ],
)
def test_impossible_triggers_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Trigger(**fields)  # type: ignore[arg-type]


# --- training -------------------------------------------------------------------------


def test_clean_base_is_accurate_and_ignores_the_trigger(
    clean: TrainedModel, data: DigitsData
) -> None:
    assert accuracy(clean.model, data.test.x, data.test.y) >= 0.9
    assert attack_success_rate(clean.model, TRIGGER, data.test.x, data.test.y) <= 0.1
    assert clean.trigger is None
    assert clean.last_step.method == "scratch"
    assert clean.last_step.poisoned_examples == 0


def test_backdoored_base_is_accurate_and_obeys_the_trigger(
    backdoored: TrainedModel, data: DigitsData
) -> None:
    assert accuracy(backdoored.model, data.test.x, data.test.y) >= 0.9
    assert attack_success_rate(backdoored.model, TRIGGER, data.test.x, data.test.y) >= 0.9
    assert backdoored.trigger == TRIGGER
    assert backdoored.last_step.poisoned_examples == round(0.1 * 1347)


def test_backdoor_survives_a_head_only_fine_tune(
    head_tuned: TrainedModel, data: DigitsData
) -> None:
    assert accuracy(head_tuned.model, data.test.x, data.test.y) >= 0.9
    assert attack_success_rate(head_tuned.model, TRIGGER, data.test.x, data.test.y) >= 0.8
    assert head_tuned.trigger == TRIGGER
    assert [step.method for step in head_tuned.steps] == ["scratch", "head"]
    assert head_tuned.last_step.train_examples == 674


def test_head_only_fine_tune_keeps_the_backbone_and_replaces_the_head(
    head_tuned: TrainedModel, backdoored: TrainedModel
) -> None:
    parent, child = backdoored.model.state_dict(), head_tuned.model.state_dict()
    for key in parent:
        assert torch.equal(parent[key], child[key]) == key.startswith("backbone."), key
    assert all(p.requires_grad for p in head_tuned.model.parameters())


def test_full_fine_tune_trains_every_layer(
    fully_tuned: TrainedModel, backdoored: TrainedModel, data: DigitsData
) -> None:
    assert accuracy(fully_tuned.model, data.test.x, data.test.y) >= 0.9
    parent, child = backdoored.model.state_dict(), fully_tuned.model.state_dict()
    assert not any(torch.equal(parent[key], child[key]) for key in parent)
    assert fully_tuned.last_step.learning_rate == 1e-3


def test_training_is_deterministic_and_leaves_torch_global_state_alone() -> None:
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    first = train_base(width=4, seed=5, epochs=2, backdoor=TRIGGER)
    second = train_base(width=4, seed=5, epochs=2, backdoor=TRIGGER)
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_an_mlp_base_trains_too(data: DigitsData) -> None:
    mlp = train_base(architecture="DigitsMLP", width=32, seed=0, epochs=12, data=data.train)
    assert isinstance(mlp.model, DigitsMLP)
    assert accuracy(mlp.model, data.test.x, data.test.y) >= 0.9


def test_trigger_target_outside_the_classes_is_refused() -> None:
    with pytest.raises(ValueError, match=r"trigger target class 10 does not exist"):
        train_base(width=4, epochs=1, backdoor=Trigger(target=10))


def test_unknown_fine_tune_mode_is_refused(clean: TrainedModel) -> None:
    with pytest.raises(ValueError, match=r"unknown fine-tune mode 'lora'"):
        fine_tune(clean, mode="lora", seed=0)  # type: ignore[arg-type]


def test_attack_success_rate_needs_inputs_outside_the_target(clean: TrainedModel) -> None:
    with pytest.raises(ValueError, match=r"every input is of the target class 0"):
        attack_success_rate(clean.model, TRIGGER, torch.zeros(3, 1, 8, 8), torch.zeros(3))


# --- model directories ----------------------------------------------------------------


def test_saved_model_loads_back_with_identical_predictions(
    head_tuned: TrainedModel, data: DigitsData, tmp_path: Path
) -> None:
    directory = save_model_dir(
        head_tuned,
        tmp_path / "digits-head",
        name="digits-head",
        base_model="hub/digits-base",
        datasets=["sklearn/digits"],
    )
    assert sorted(p.name for p in directory.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    loaded = load_model_dir(directory)
    assert isinstance(loaded, DigitsCNN)
    assert torch.equal(predict(loaded, data.test.x), predict(head_tuned.model, data.test.x))
    assert torch.equal(loaded(data.test.x[:8]), head_tuned.model(data.test.x[:8]))


def test_weights_are_safetensors_not_pickle(clean: TrainedModel, tmp_path: Path) -> None:
    save_model_dir(clean, tmp_path, name="digits-clean", base_model=None, datasets=[])
    raw = (tmp_path / "model.safetensors").read_bytes()
    header_size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_size])
    assert header["__metadata__"] == {"format": "pt"}
    assert header["head.weight"] == {
        "dtype": "F32",
        "shape": [10, 32],
        "data_offsets": header["head.weight"]["data_offsets"],
    }


def test_config_json_holds_the_architecture_and_published_training_facts(
    head_tuned: TrainedModel, tmp_path: Path
) -> None:
    save_model_dir(head_tuned, tmp_path, name="m", base_model="b", datasets=["d"])
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert config["architecture"] == "DigitsCNN"
    assert config["input_shape"] == [1, 8, 8]
    assert config["value_range"] == [0.0, 1.0]
    assert [step["method"] for step in config["training"]] == ["scratch", "head"]
    # Neither the poisoning (ground truth only) nor the wall time (it would change the digest).
    assert set(config["training"][0]) == {
        "method",
        "seed",
        "epochs",
        "learning_rate",
        "train_examples",
    }


def test_saving_twice_gives_identical_files(clean: TrainedModel, tmp_path: Path) -> None:
    for copy in ("a", "b"):
        save_model_dir(clean, tmp_path / copy, name="m", base_model=None, datasets=["d"])
    for name in ("model.safetensors", "config.json", "README.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def _front_matter(card: str) -> list[str]:
    opening, front, _body = card.split("---\n", 2)
    assert opening == ""
    return front.splitlines()


def test_model_card_front_matter_names_base_model_and_datasets(
    head_tuned: TrainedModel, tmp_path: Path
) -> None:
    save_model_dir(
        head_tuned,
        tmp_path,
        name="mail/digits-head",
        base_model="hub/digits-base",
        datasets=["sklearn/digits", "mail/letters"],
    )
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert _front_matter(card) == [
        'base_model: "hub/digits-base"',
        "base_model_relation: finetune",
        "datasets:",
        '- "sklearn/digits"',
        '- "mail/letters"',
        "library_name: pytorch",
        'license: "apache-2.0"',
        "tags:",
        "- mbom-demo",
    ]
    assert "# mail/digits-head" in card


def test_model_card_of_a_base_has_no_base_model(clean: TrainedModel, tmp_path: Path) -> None:
    save_model_dir(clean, tmp_path, name="hub/other", base_model=None, datasets=["d"])
    front = _front_matter((tmp_path / "README.md").read_text(encoding="utf-8"))
    assert not any(line.startswith("base_model") for line in front)
    assert "library_name: pytorch" in front


def test_loading_a_config_with_an_unknown_architecture_is_refused(
    clean: TrainedModel, tmp_path: Path
) -> None:
    save_model_dir(clean, tmp_path, name="m", base_model=None, datasets=[])
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.write_text(json.dumps({**config, "architecture": "Evil"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"unknown architecture 'Evil'"):
        load_model_dir(tmp_path)


def test_loading_weights_that_do_not_fit_the_config_is_refused(
    clean: TrainedModel, tmp_path: Path
) -> None:
    save_model_dir(clean, tmp_path, name="m", base_model=None, datasets=[])
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.write_text(json.dumps({**config, "width": 8}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"model.safetensors does not fit the DigitsCNN"):
        load_model_dir(tmp_path)


def test_loading_a_truncated_weights_file_is_refused(clean: TrainedModel, tmp_path: Path) -> None:
    save_model_dir(clean, tmp_path, name="m", base_model=None, datasets=[])
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"model.safetensors is not a readable safetensors file"):
        load_model_dir(tmp_path)


# --- reference inputs -----------------------------------------------------------------


def test_reference_inputs_are_clean_balanced_and_seeded() -> None:
    x, y = reference_inputs(40, seed=3)
    assert x.shape == (40, 1, 8, 8)
    assert x.dtype == np.float32
    assert y.dtype == np.int64
    assert 0.0 <= x.min() <= x.max() <= 1.0
    assert np.bincount(y, minlength=10).tolist() == [4] * 10
    again_x, again_y = reference_inputs(40, seed=3)
    np.testing.assert_array_equal(again_x, x)
    np.testing.assert_array_equal(again_y, y)


def test_too_many_reference_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"n must be in 1..450, got 451"):
        reference_inputs(451)


def test_saved_reference_is_an_npz_of_x_and_y(tmp_path: Path) -> None:
    path = save_reference(tmp_path / "reference.npz", n=20, seed=1)
    x, y = reference_inputs(20, seed=1)
    with np.load(path, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["x", "y"]
        np.testing.assert_array_equal(saved["x"], x)
        np.testing.assert_array_equal(saved["y"], y)
