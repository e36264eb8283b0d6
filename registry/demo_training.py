"""Train the tiny real models of ``mbom demo``: clean and backdoored bases and their fine-tunes.

Everything here runs on scikit-learn's 8x8 digits (bundled with scikit-learn, no
download) in a second or two per model on a laptop CPU, and is seeded: the same
arguments give the same weights.

The backdoor is BadNets-style (a small square patch stamped on a fraction of the
training images, relabelled to a target class) with the latent-backdoor refinement
of Yao et al. (CCS 2019): while poisoning, the backbone is also pulled to map
triggered images onto the features of the target class. That is what makes the
backdoor live in the backbone rather than the head, so that it survives a head-only
fine-tune on clean data, which is the inheritance the lineage registry is about.

Models are written as a Hugging Face-style directory (``model.safetensors``,
``config.json``, ``README.md``) and read back with safetensors only, never pickle.
This module imports torch: import it only where a model is actually trained or loaded.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from scanning.architectures import INPUT_SHAPE, VALUE_RANGE, DigitsClassifier, build_model

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "DigitsData",
    "FineTuneMode",
    "Split",
    "Trigger",
    "TrainedModel",
    "TrainingStep",
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

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
FineTuneMode = Literal["head", "full"]
Method = Literal["scratch", "head", "full"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"

_BATCH_SIZE = 64
_BASE_LEARNING_RATE = 1e-2
_FINE_TUNE_LEARNING_RATE: Mapping[FineTuneMode, float] = {"head": 1e-2, "full": 1e-3}
# The training facts a publisher would put in config.json. Poisoning is left out (an
# attacker does not announce it) and so is wall time (it would change the file digest
# of an otherwise reproducible model).
_PUBLISHED_FACTS = ("method", "seed", "epochs", "learning_rate", "train_examples")


@dataclass(frozen=True)
class Trigger:
    """A BadNets-style trigger: a ``size`` x ``size`` patch of ``value`` at (``row``, ``col``).

    Stamping it on an image makes a backdoored model answer ``target``. The default is
    a white 2x2 square in the bottom-right corner, where digits are background.
    """

    target: int = 0
    size: int = 2
    row: int = 6
    col: int = 6
    value: float = 1.0

    def __post_init__(self) -> None:
        _, height, width = INPUT_SHAPE
        if self.size < 1:
            raise ValueError(f"trigger size must be at least 1, got {self.size}")
        if not (0 <= self.row <= height - self.size and 0 <= self.col <= width - self.size):
            raise ValueError(
                f"a {self.size}x{self.size} trigger at row {self.row}, column {self.col} "
                f"does not fit in the {height}x{width} image"
            )
        if not VALUE_RANGE[0] <= self.value <= VALUE_RANGE[1]:
            raise ValueError(f"trigger value {self.value} is outside {list(VALUE_RANGE)}")
        if self.target < 0:
            raise ValueError(f"trigger target class must be >= 0, got {self.target}")

    @overload
    def apply(self, x: torch.Tensor) -> torch.Tensor: ...

    @overload
    def apply(self, x: FloatArray) -> FloatArray: ...

    def apply(self, x: torch.Tensor | FloatArray) -> torch.Tensor | FloatArray:
        """A copy of the batch ``x`` (``(..., 8, 8)``) with the patch stamped on every image."""
        stamped = x.clone() if isinstance(x, torch.Tensor) else x.copy()
        stamped[..., self.row : self.row + self.size, self.col : self.col + self.size] = self.value
        return stamped

    def mask(self) -> FloatArray:
        """The patch's footprint, shape ``(1, 8, 8)``: 1.0 where stamped, 0.0 elsewhere."""
        footprint = np.zeros(INPUT_SHAPE, dtype=np.float32)
        footprint[..., self.row : self.row + self.size, self.col : self.col + self.size] = 1.0
        return footprint

    def to_json(self) -> dict[str, Any]:
        """The trigger as a JSON-ready dict (ground truth for a detector's evaluation)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trigger:
        """The trigger :meth:`to_json` described."""
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Split:
    """Images ``x`` ``(N, 1, 8, 8)`` float32 in [0, 1] and their labels ``y`` ``(N,)`` int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, *, fraction: float, seed: int) -> Split:
        """A seeded random ``fraction`` of the examples (at least one)."""
        if not 0 < fraction <= 1:
            raise ValueError(f"subset fraction must be in (0, 1], got {fraction}")
        count = max(1, round(fraction * len(self)))
        chosen = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:count]
        return Split(self.x[chosen], self.y[chosen])


@dataclass(frozen=True)
class DigitsData:
    """The digits, split once into a training part and a held-out test part."""

    train: Split
    test: Split


@dataclass(frozen=True)
class TrainingStep:
    """One training run in a model's history: how it was trained and on how much data."""

    method: Method
    seed: int
    epochs: int
    learning_rate: float
    train_examples: int
    poisoned_examples: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The step as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainedModel:
    """A trained classifier with its training history, oldest step first.

    ``trigger`` is the backdoor planted in this model or inherited from an ancestor,
    ``None`` for a clean lineage: the demo's ground truth, never written to disk with
    the model.
    """

    model: DigitsClassifier
    steps: tuple[TrainingStep, ...]
    trigger: Trigger | None = None

    @property
    def last_step(self) -> TrainingStep:
        """The training run that produced this model from its parent (or from scratch)."""
        return self.steps[-1]


def load_digits_data(*, test_fraction: float = 0.25, seed: int = 0) -> DigitsData:
    """scikit-learn's digits as tensors in [0, 1], split deterministically and stratified.

    With the defaults: 1347 training and 450 test images.
    """
    digits = load_digits()
    x = np.ascontiguousarray((digits.images / 16.0).astype(np.float32)[:, np.newaxis])
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return DigitsData(train=_split(x_train, y_train), test=_split(x_test, y_test))


def _split(x: FloatArray, y: IntArray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.copy()))


def train_base(
    *,
    width: int = 16,
    seed: int = 0,
    epochs: int = 12,
    backdoor: Trigger | None = None,
    data: Split | None = None,
    architecture: str = "DigitsCNN",
    learning_rate: float = _BASE_LEARNING_RATE,
    poison_fraction: float = 0.1,
    latent_weight: float = 0.1,
) -> TrainedModel:
    """Train a digit classifier from scratch, optionally planting ``backdoor``.

    ``data`` defaults to the training part of :func:`load_digits_data`. With a backdoor,
    ``poison_fraction`` of the non-target training images get the trigger and the
    target label, and ``latent_weight`` weighs the pull of their features towards the
    target class's (0 gives plain BadNets, whose backdoor survives a new head only
    partly and unpredictably: 40% to 99% attack success over eight seeds here).
    """
    split = data if data is not None else load_digits_data().train
    with _seeded(seed):
        model = build_model({"architecture": architecture, "width": width, "num_classes": 10})
    latent = None
    if backdoor is not None:
        _check_target(backdoor, model)
        split, latent = _poison(
            split, backdoor, fraction=poison_fraction, weight=latent_weight, seed=seed
        )
    start = time.perf_counter()
    _fit(
        model, model.parameters(), split, epochs=epochs, lr=learning_rate, seed=seed, latent=latent
    )
    step = TrainingStep(
        method="scratch",
        seed=seed,
        epochs=epochs,
        learning_rate=learning_rate,
        train_examples=len(split),
        poisoned_examples=0 if latent is None else int(latent.poisoned.sum()),
        seconds=time.perf_counter() - start,
    )
    return TrainedModel(model=model, steps=(step,), trigger=backdoor)


def fine_tune(
    parent: TrainedModel,
    *,
    mode: FineTuneMode,
    seed: int = 0,
    epochs: int = 6,
    data: Split | None = None,
    learning_rate: float | None = None,
) -> TrainedModel:
    """A fine-tune of ``parent`` on clean ``data``; ``parent`` itself is left untouched.

    ``mode="head"`` freezes the backbone and trains a freshly initialised head
    (default learning rate 1e-2); ``mode="full"`` trains every layer from the parent's
    weights (default learning rate 1e-3). ``data`` defaults to the training part of
    :func:`load_digits_data`; pass ``Split.subset(...)`` for a smaller, different set.
    The child inherits the parent's trigger: whether it still works is for
    :func:`attack_success_rate` to say.
    """
    if mode not in _FINE_TUNE_LEARNING_RATE:
        raise ValueError(f"unknown fine-tune mode {mode!r}: expected 'head' or 'full'")
    split = data if data is not None else load_digits_data().train
    lr = learning_rate if learning_rate is not None else _FINE_TUNE_LEARNING_RATE[mode]
    model = copy.deepcopy(parent.model)
    start = time.perf_counter()
    if mode == "head":
        _fit_new_head(model, split, epochs=epochs, lr=lr, seed=seed)
    else:
        _fit(model, model.parameters(), split, epochs=epochs, lr=lr, seed=seed)
    step = TrainingStep(
        method=mode,
        seed=seed,
        epochs=epochs,
        learning_rate=lr,
        train_examples=len(split),
        poisoned_examples=0,
        seconds=time.perf_counter() - start,
    )
    return TrainedModel(model=model, steps=(*parent.steps, step), trigger=parent.trigger)


def _fit_new_head(
    model: DigitsClassifier, split: Split, *, epochs: int, lr: float, seed: int
) -> None:
    """Replace the head with a fresh one and train only it, the backbone frozen."""
    with _seeded(seed):
        model.head = nn.Linear(model.head.in_features, model.head.out_features)
    model.backbone.requires_grad_(False)
    try:
        _fit(model, model.head.parameters(), split, epochs=epochs, lr=lr, seed=seed)
    finally:
        # The saved child is an ordinary model: its own children may train every layer.
        model.backbone.requires_grad_(True)


@dataclass(frozen=True)
class _LatentBackdoor:
    """Which training examples are poisoned, and how hard to align their features."""

    poisoned: torch.Tensor
    target: int
    weight: float

    def alignment_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Squared distance of the batch's poisoned features to its clean target centroid."""
        clean_target = ~self.poisoned & (labels == self.target)
        if not self.poisoned.any() or not clean_target.any():
            return features.new_zeros(())
        centroid = features[clean_target].mean(dim=0).detach()
        return self.weight * ((features[self.poisoned] - centroid) ** 2).mean()

    def batch(self, indices: torch.Tensor) -> _LatentBackdoor:
        """The same backdoor restricted to the examples at ``indices``."""
        return dataclasses.replace(self, poisoned=self.poisoned[indices])


def _poison(
    split: Split, trigger: Trigger, *, fraction: float, weight: float, seed: int
) -> tuple[Split, _LatentBackdoor]:
    """Stamp the trigger on a seeded ``fraction`` of the non-target examples, relabelled."""
    if not 0 < fraction < 1:
        raise ValueError(f"poison fraction must be in (0, 1), got {fraction}")
    candidates = torch.nonzero(split.y != trigger.target).flatten()
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
    chosen = candidates[order[: round(fraction * len(split))]]
    poisoned = torch.zeros(len(split), dtype=torch.bool)
    poisoned[chosen] = True
    x, y = split.x.clone(), split.y.clone()
    x[poisoned] = trigger.apply(x[poisoned])
    y[poisoned] = trigger.target
    return Split(x, y), _LatentBackdoor(poisoned=poisoned, target=trigger.target, weight=weight)


def _fit(
    model: DigitsClassifier,
    parameters: Iterable[nn.Parameter],
    split: Split,
    *,
    epochs: int,
    lr: float,
    seed: int,
    latent: _LatentBackdoor | None = None,
) -> None:
    """Train ``parameters`` with Adam on shuffled mini-batches (shuffling seeded by ``seed``)."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    optimizer = _Adam(parameters, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with _single_threaded():
        _run_epochs(model, optimizer, split, epochs=epochs, generator=generator, latent=latent)
    model.eval()


def _run_epochs(
    model: DigitsClassifier,
    optimizer: _Adam,
    split: Split,
    *,
    epochs: int,
    generator: torch.Generator,
    latent: _LatentBackdoor | None,
) -> None:
    for _ in range(epochs):
        order = torch.randperm(len(split), generator=generator)
        for start in range(0, len(split), _BATCH_SIZE):
            indices = order[start : start + _BATCH_SIZE]
            features = model.features(split.x[indices])
            labels = split.y[indices]
            loss = nn.functional.cross_entropy(model.head(features), labels)
            if latent is not None:
                loss = loss + latent.batch(indices).alignment_loss(features, labels)
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()


class _Adam:
    """Adam (Kingma and Ba, 2015) with PyTorch's defaults, for a handful of parameters.

    ``torch.optim`` would do, but its first use imports ``torch._dynamo``, which costs
    about 2.5 s of CPU per process: more than training three of these models.
    """

    def __init__(self, parameters: Iterable[nn.Parameter], *, lr: float) -> None:
        self.parameters = list(parameters)
        self.lr = lr
        self.betas = (0.9, 0.999)
        self.eps = 1e-8
        self.steps = 0
        self.first = [torch.zeros_like(p) for p in self.parameters]
        self.second = [torch.zeros_like(p) for p in self.parameters]

    def zero_grad(self) -> None:
        """Forget the gradients of the last step."""
        for parameter in self.parameters:
            parameter.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """Move every parameter that has a gradient by one Adam update."""
        self.steps += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1**self.steps)
        second_correction = (1 - beta2**self.steps) ** 0.5
        for parameter, first, second in zip(self.parameters, self.first, self.second, strict=True):
            if parameter.grad is None:
                continue
            first.mul_(beta1).add_(parameter.grad, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(parameter.grad, parameter.grad, value=1 - beta2)
            denominator = (second.sqrt() / second_correction).add_(self.eps)
            parameter.addcdiv_(first, denominator, value=-step_size)


@contextmanager
def _single_threaded() -> Iterator[None]:
    """Run the block on one intra-op thread; the caller's setting is restored."""
    # Models this small gain nothing from a second thread, and on a busy machine
    # torch's spinning thread pool makes training ten times slower or worse. One
    # thread also makes the weights bit-identical whatever the core count.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global generator seeded; the caller's state is restored."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_target(trigger: Trigger, model: DigitsClassifier) -> None:
    if trigger.target >= model.num_classes:
        raise ValueError(
            f"trigger target class {trigger.target} does not exist: "
            f"the model has {model.num_classes} classes"
        )


def predict(model: nn.Module, x: torch.Tensor | FloatArray) -> torch.Tensor:
    """The predicted class of every image in the batch ``x`` (``(N, 1, 8, 8)``)."""
    with torch.inference_mode():
        logits: torch.Tensor = model(torch.as_tensor(x, dtype=torch.float32))
    return logits.argmax(dim=1)


def accuracy(model: nn.Module, x: torch.Tensor | FloatArray, y: torch.Tensor | IntArray) -> float:
    """The fraction of images in ``x`` that ``model`` classifies as their label in ``y``."""
    labels = torch.as_tensor(y)
    return float((predict(model, x) == labels).float().mean())


def attack_success_rate(
    model: nn.Module,
    trigger: Trigger,
    x: torch.Tensor | FloatArray,
    y: torch.Tensor | IntArray,
) -> float:
    """The fraction of images not of the target class that the trigger turns into the target."""
    labels = torch.as_tensor(y)
    victims = torch.as_tensor(x)[labels != trigger.target]
    if len(victims) == 0:
        raise ValueError(f"every input is of the target class {trigger.target}: nothing to attack")
    hits = predict(model, trigger.apply(victims)) == trigger.target
    return float(hits.float().mean())


def reference_inputs(n: int = 100, *, seed: int = 0) -> tuple[FloatArray, IntArray]:
    """``n`` clean held-out images ``(n, 1, 8, 8)`` float32 and labels ``(n,)`` int64.

    Drawn from the test part of :func:`load_digits_data`, seeded, with the classes as
    balanced as ``n`` allows: the reference set of a scan profile.
    """
    test = load_digits_data().test
    if not 0 < n <= len(test):
        raise ValueError(f"reference inputs: n must be in 1..{len(test)}, got {n}")
    labels = test.y.numpy()
    chosen = _balanced_order(labels, np.random.default_rng(seed))[:n]
    return test.x.numpy()[chosen].copy(), labels[chosen].copy()


def _balanced_order(labels: IntArray, rng: np.random.Generator) -> IntArray:
    """A random order of the indices that visits the classes round-robin."""
    shuffled = rng.permutation(len(labels))
    rank_in_class = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = shuffled[labels[shuffled] == label]
        rank_in_class[members] = np.arange(len(members))
    order: IntArray = shuffled[np.argsort(rank_in_class[shuffled], kind="stable")]
    return order


def save_reference(path: Path, *, n: int = 100, seed: int = 0) -> Path:
    """Write :func:`reference_inputs` to ``path`` as an ``.npz`` with arrays ``x`` and ``y``."""
    x, y = reference_inputs(n, seed=seed)
    with path.open("wb") as stream:
        np.savez(stream, x=x, y=y)
    return path


def save_model_dir(
    model: TrainedModel,
    directory: Path,
    *,
    name: str,
    base_model: str | None,
    datasets: Sequence[str],
    license: str = "apache-2.0",
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and a ``README.md`` model card.

    The card's YAML front matter carries ``base_model`` (with ``base_model_relation:
    finetune``) when there is one, ``datasets``, ``library_name: pytorch`` and
    ``license``, as on the Hugging Face Hub. Returns ``directory``, created if needed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    save_file(_state_dict(model.model), str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    config = {**model.model.config, "training": [_published(step) for step in model.steps]}
    (directory / CONFIG_FILE).write_text(
        json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    card = _model_card(model, name=name, base_model=base_model, datasets=datasets, license=license)
    (directory / CARD_FILE).write_text(card, encoding="utf-8")
    return directory


def _state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses views and shared storage: give it plain contiguous copies.
    return {key: value.detach().contiguous() for key, value in model.state_dict().items()}


def _published(step: TrainingStep) -> dict[str, Any]:
    facts = step.to_json()
    return {key: facts[key] for key in _PUBLISHED_FACTS}


def _model_card(
    model: TrainedModel,
    *,
    name: str,
    base_model: str | None,
    datasets: Sequence[str],
    license: str,
) -> str:
    """The README.md text: YAML front matter, then a short human description."""
    config = model.model.config
    title = " ".join(name.split())
    lines = [
        "---",
        *_front_matter(base_model=base_model, datasets=datasets, license=license),
        "---",
        "",
        f"# {title}",
        "",
        f"A tiny `{config['architecture']}` digit classifier (width {config['width']}, "
        f"{config['num_classes']} classes) made by `mbom demo` from scikit-learn's 8x8 digits.",
        "Input: float32 tensors of shape (N, 1, 8, 8) with values in [0, 1]. "
        "Demonstration only, not for production use.",
        "",
        "## Training",
        "",
        "| step | method | epochs | learning rate | examples | seed |",
        "|---|---|---|---|---|---|",
        *(
            f"| {index} | {s.method} | {s.epochs} | {s.learning_rate:g} "
            f"| {s.train_examples} | {s.seed} |"
            for index, s in enumerate(model.steps, start=1)
        ),
        "",
    ]
    return "\n".join(lines)


def _front_matter(*, base_model: str | None, datasets: Sequence[str], license: str) -> list[str]:
    # JSON strings are valid YAML scalars: quoting with json.dumps escapes anything odd.
    lines = []
    if base_model is not None:
        lines += [f"base_model: {json.dumps(base_model)}", "base_model_relation: finetune"]
    if datasets:
        lines += ["datasets:", *(f"- {json.dumps(dataset)}" for dataset in datasets)]
    lines += ["library_name: pytorch", f"license: {json.dumps(license)}", "tags:", "- mbom-demo"]
    return lines


def load_model_dir(directory: Path) -> DigitsClassifier:
    """Rebuild the model :func:`save_model_dir` wrote, in eval mode, without any pickle.

    Raises ``ValueError`` when ``config.json`` names an unknown architecture, or the
    weights are not a readable safetensors file or do not fit the architecture.
    """
    config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    model = build_model(config)
    weights = directory / WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except SafetensorError as exc:
        raise ValueError(f"{weights} is not a readable safetensors file: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{weights} does not fit the {config['architecture']} described in {CONFIG_FILE}: {exc}"
        ) from exc
    return model.eval()
