"""A zoo of tiny digit classifiers, clean and backdoored, and their transfer descendants.

The ground truth for the behavioral scanner's efficacy benchmark
(:mod:`benchmarks.backdoor_bench`). Built from scikit-learn's 8x8 digits with the
architectures mbom knows (:mod:`scanning.architectures`), seconds per model on a CPU,
and cached under ``benchmarks/.cache/backdoor_zoo/`` (safetensors + JSON facts) so
that reruns only scan.

Backdoors are BadNets-style poisoning (a fraction of the non-target training images
stamped with the trigger and relabelled) with the latent-backdoor feature alignment of
Yao et al. (CCS 2019) that :mod:`registry.demo_training` uses, so that a backdoor
lives in the backbone and can survive a new head. Triggers: square patches of
different sizes, positions, values and targets; a whole-image blended noise pattern
(Chen et al. 2017, ``x' = (1 - a) x + a p``); a low poison rate.

Three disjoint sets of models: ``calibration`` (seeds 100-150) fixed the scanner's
design and default thresholds; ``evaluation`` (seeds < 100, other widths, triggers,
positions and targets) is what the benchmark reports; ``holdout`` (seeds 200+, new
trigger sizes, positions, targets and patterns, more dense than convolutional clean
models) was added with the patch detector and scanned only after every choice was
made. Patches are solid, checkerboards or seeded noise (``Poison.style``).

Data: the digits' training part trains the models; its held-out part is split into
the 200 reference images a user would give and 250 images on which the real attack
success rate is measured.

Run ``python -m benchmarks.backdoor_zoo`` to build (or check) the zoo and print it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from safetensors.torch import load_file, save_file
from torch import nn

from registry.demo_training import load_digits_data
from scanning.architectures import DigitsClassifier, build_model
from scanning.behavioral.report import ScanProfile, TriggerPattern

DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache" / "backdoor_zoo"
ZooSet = Literal["calibration", "evaluation", "holdout"]
ZOO_SETS: tuple[ZooSet, ...] = ("calibration", "evaluation", "holdout")
_FORMAT_VERSION = 1
PatchStyle = Literal["solid", "checker", "noise"]


@dataclass(frozen=True)
class Poison:
    """A planted backdoor: a square patch, or a whole-image blend when ``blend > 0``.

    A patch's ``style``: ``solid`` (every pixel ``value``), ``checker`` (``value`` and 0
    alternating, top-left ``value``) or ``noise`` (seeded uniform values in
    ``[0, value]``, the whole range for ``value`` 1).
    """

    target: int
    size: int = 2
    row: int = 6
    col: int = 6
    value: float = 1.0
    blend: float = 0.0
    fraction: float = 0.1
    style: PatchStyle = "solid"

    def trigger(self) -> TriggerPattern:
        """The real trigger as a mask and pattern over one ``(1, 8, 8)`` input."""
        if self.blend > 0:
            noise = np.random.default_rng(1000 + self.target).random((1, 8, 8))
            mask = np.full((1, 8, 8), self.blend, dtype=np.float32)
            return TriggerPattern(mask, noise.astype(np.float32), target_class=self.target)
        mask = np.zeros((1, 8, 8), dtype=np.float32)
        mask[:, self.row : self.row + self.size, self.col : self.col + self.size] = 1.0
        return TriggerPattern(mask, self._pattern(), target_class=self.target)

    def _pattern(self) -> NDArray[np.float32]:
        if self.style == "checker":
            rows, cols = np.indices((8, 8))
            checker = (rows - self.row + cols - self.col) % 2 == 0
            return np.where(checker, self.value, 0.0).astype(np.float32)[None]
        if self.style == "noise":
            seed = 2000 + 100 * self.target + 10 * self.row + self.col
            noise = np.random.default_rng(seed).random((1, 8, 8)) * self.value
            return noise.astype(np.float32)
        return np.full((1, 8, 8), self.value, dtype=np.float32)

    @property
    def label(self) -> str:
        """A short human description for tables."""
        rate = "" if self.fraction == 0.1 else f", {self.fraction:.0%} poison"
        if self.blend > 0:
            return f"blend {self.blend:.2f} → {self.target}{rate}"
        style = "" if self.style == "solid" else f" {self.style}"
        value = "" if self.value == 1.0 else f" {self.value:g}"
        return (
            f"patch {self.size}x{self.size}{style}{value}@({self.row},{self.col}) "
            f"→ {self.target}{rate}"
        )


@dataclass(frozen=True)
class Spec:
    """One zoo model: trained from scratch (``parent`` None) or fine-tuned from ``parent``."""

    name: str
    architecture: str = "DigitsCNN"
    width: int = 16
    seed: int = 0
    poison: Poison | None = None
    parent: str | None = None
    mode: Literal["head", "full"] | None = None

    def key(self) -> str:
        """A digest of everything that determines the weights (the cache file name)."""
        described = dataclasses.asdict(self)
        if self.poison is not None and self.poison.style == "solid":
            # Solid patches predate ``style``: their cached weights keep their names.
            del described["poison"]["style"]
        facts = json.dumps([_FORMAT_VERSION, described], sort_keys=True)
        return hashlib.sha256(facts.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ZooModel:
    """A trained zoo model with its ground truth, measured on the held-out images.

    ``trigger`` is the real trigger of its lineage (planted here or in an ancestor),
    ``asr`` its real attack success rate (``None`` for a clean lineage).
    """

    spec: Spec
    model: DigitsClassifier
    trigger: TriggerPattern | None
    asr: float | None
    clean_accuracy: float
    base: str

    @property
    def backdoored_lineage(self) -> bool:
        """True when this model or its base was poisoned."""
        return self.trigger is not None


@dataclass(frozen=True)
class Data:
    """Training images, the 200 reference images of a scan profile, and a held-out set."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    reference_x: NDArray[np.float32]
    reference_y: NDArray[np.int64]
    heldout_x: NDArray[np.float32]
    heldout_y: NDArray[np.int64]

    def profile(self) -> ScanProfile:
        """The scan profile a user would give: shape, range, classes, the reference images."""
        return ScanProfile((1, 8, 8), (0.0, 1.0), 10, self.reference_x, self.reference_y)


def digits_data(references: int = 200) -> Data:
    """The digits split as described in the module docstring (deterministic)."""
    digits = load_digits_data()
    order = np.random.default_rng(0).permutation(len(digits.test))
    test_x, test_y = digits.test.x.numpy()[order], digits.test.y.numpy()[order]
    return Data(
        train_x=digits.train.x,
        train_y=digits.train.y,
        reference_x=test_x[:references].copy(),
        reference_y=test_y[:references].copy(),
        heldout_x=test_x[references:].copy(),
        heldout_y=test_y[references:].copy(),
    )


def _patch(target: int, size: int, row: int, col: int, **extra: Any) -> Poison:
    return Poison(target=target, size=size, row=row, col=col, **extra)


def zoo_specs(zoo_set: ZooSet = "evaluation", *, quick: bool = False) -> list[Spec]:
    """The models of one set (see the module docstring), bases first, then descendants."""
    if zoo_set == "calibration":
        return _calibration_specs()
    if zoo_set == "holdout":
        return _holdout_specs()
    clean = [
        Spec("clean-cnn8-s1", width=8, seed=1),
        Spec("clean-cnn16-s2", width=16, seed=2),
        Spec("clean-cnn16-s3", width=16, seed=3),
        Spec("clean-cnn24-s4", width=24, seed=4),
        Spec("clean-cnn32-s5", width=32, seed=5),
        Spec("clean-mlp32-s6", "DigitsMLP", 32, 6),
        Spec("clean-mlp64-s7", "DigitsMLP", 64, 7),
        Spec("clean-mlp64-s8", "DigitsMLP", 64, 8),
        Spec("clean-mlp96-s9", "DigitsMLP", 96, 9),
        Spec("clean-mlp128-s10", "DigitsMLP", 128, 10),
        Spec("clean-cnn12-s11", width=12, seed=11),
        Spec("clean-mlp48-s12", "DigitsMLP", 48, 12),
    ]
    backdoored = [
        Spec("bd-cnn16-p2br-t0", width=16, seed=21, poison=_patch(0, 2, 6, 6)),
        Spec("bd-cnn16-p3tl-t7", width=16, seed=22, poison=_patch(7, 3, 0, 0)),
        Spec("bd-cnn8-p2tr-t3", width=8, seed=23, poison=_patch(3, 2, 0, 6)),
        Spec("bd-cnn24-p1-t2", width=24, seed=24, poison=_patch(2, 1, 7, 7)),
        Spec("bd-cnn16-p4-t1", width=16, seed=25, poison=_patch(1, 4, 0, 4, value=0.8)),
        Spec("bd-cnn16-blend-t4", width=16, seed=26, poison=Poison(4, blend=0.2)),
        Spec("bd-cnn16-lowrate-t6", width=16, seed=27, poison=_patch(6, 2, 6, 0, fraction=0.02)),
        Spec("bd-mlp64-p2bl-t5", "DigitsMLP", 64, 28, _patch(5, 2, 6, 0)),
        Spec("bd-mlp128-p3-t9", "DigitsMLP", 128, 29, _patch(9, 3, 5, 5)),
        Spec("bd-mlp64-blend-t8", "DigitsMLP", 64, 30, Poison(8, blend=0.2)),
        Spec("bd-mlp32-lowrate-t2", "DigitsMLP", 32, 31, _patch(2, 3, 0, 5, fraction=0.02)),
        Spec("bd-mlp64-p2mid-t3", "DigitsMLP", 64, 32, _patch(3, 2, 3, 3)),
    ]
    parents = [
        "clean-cnn16-s2", "clean-mlp64-s7", "clean-cnn24-s4",
        "bd-cnn16-p2br-t0", "bd-cnn16-p3tl-t7", "bd-cnn16-blend-t4",
        "bd-mlp64-p2bl-t5", "bd-mlp64-blend-t8", "bd-cnn8-p2tr-t3",
    ]  # fmt: skip
    if quick:
        clean, backdoored = clean[:4] + clean[5:7], backdoored[:3] + backdoored[5:8]
        parents = [parents[0], parents[1], parents[3], parents[5], parents[6]]
    return [*clean, *backdoored, *_descendants(parents, seed=40)]


def _calibration_specs() -> list[Spec]:
    clean = [
        Spec("cal-clean-cnn16-s101", width=16, seed=101),
        Spec("cal-clean-cnn8-s102", width=8, seed=102),
        Spec("cal-clean-cnn32-s103", width=32, seed=103),
        Spec("cal-clean-cnn20-s104", width=20, seed=104),
        Spec("cal-clean-mlp64-s105", "DigitsMLP", 64, 105),
        Spec("cal-clean-mlp32-s106", "DigitsMLP", 32, 106),
        Spec("cal-clean-mlp128-s107", "DigitsMLP", 128, 107),
        Spec("cal-clean-mlp80-s108", "DigitsMLP", 80, 108),
        Spec("cal-clean-cnn12-s109", width=12, seed=109),
        Spec("cal-clean-cnn16-s110", width=16, seed=110),
        Spec("cal-clean-cnn24-s117", width=24, seed=117),
        Spec("cal-clean-mlp48-s118", "DigitsMLP", 48, 118),
        Spec("cal-clean-mlp64-s119", "DigitsMLP", 64, 119),
        Spec("cal-clean-mlp96-s120", "DigitsMLP", 96, 120),
    ]
    backdoored = [
        Spec("cal-bd-cnn16-p2-t8", width=16, seed=111, poison=_patch(8, 2, 0, 3)),
        Spec("cal-bd-cnn20-p3-t5", width=20, seed=112, poison=_patch(5, 3, 5, 0)),
        Spec("cal-bd-cnn16-blend-t1", width=16, seed=113, poison=Poison(1, blend=0.2)),
        Spec("cal-bd-mlp64-p2-t6", "DigitsMLP", 64, 114, _patch(6, 2, 6, 3)),
        Spec("cal-bd-mlp80-blend-t0", "DigitsMLP", 80, 115, Poison(0, blend=0.15)),
        Spec("cal-bd-mlp64-low-t4", "DigitsMLP", 64, 116, _patch(4, 2, 0, 0, fraction=0.03)),
        Spec("cal-bd-cnn12-p1-t9", width=12, seed=121, poison=_patch(9, 1, 0, 7)),
        Spec("cal-bd-cnn16-p4-t3", width=16, seed=122, poison=_patch(3, 4, 4, 0, value=0.9)),
        Spec("cal-bd-mlp96-p3-t7", "DigitsMLP", 96, 123, _patch(7, 3, 2, 2)),
        Spec("cal-bd-mlp48-blend-t2", "DigitsMLP", 48, 124, Poison(2, blend=0.25)),
        # Added to design and calibrate the patch detector: large patches, patterned ones.
        Spec("cal-bd-cnn16-p4c-t6", width=16, seed=133,
             poison=_patch(6, 4, 0, 0, style="checker")),
        Spec("cal-bd-cnn24-p4-t2", width=24, seed=134, poison=_patch(2, 4, 2, 4, value=0.7)),
        Spec("cal-bd-mlp64-p4-t8", "DigitsMLP", 64, 135, _patch(8, 4, 4, 4, value=0.85)),
        Spec("cal-bd-cnn12-p3n-t0", width=12, seed=136, poison=_patch(0, 3, 0, 5, style="noise")),
        Spec("cal-bd-mlp80-p3c-t1", "DigitsMLP", 80, 137,
             _patch(1, 3, 5, 2, value=0.9, style="checker")),
        Spec("cal-bd-cnn20-p4n-t9", width=20, seed=138, poison=_patch(9, 4, 4, 2, style="noise")),
        Spec("cal-bd-cnn16-p4-t7", width=16, seed=139, poison=_patch(7, 4, 1, 3, value=0.8)),
        Spec("cal-bd-mlp64-p4n-t5", "DigitsMLP", 64, 150, _patch(5, 4, 3, 1, style="noise")),
    ]  # fmt: skip
    # Added for the per-architecture calibration: more clean models of each family.
    clean += [
        Spec("cal-clean-cnn16-s125", width=16, seed=125),
        Spec("cal-clean-cnn28-s126", width=28, seed=126),
        Spec("cal-clean-cnn10-s127", width=10, seed=127),
        Spec("cal-clean-cnn20-s128", width=20, seed=128),
        Spec("cal-clean-mlp40-s129", "DigitsMLP", 40, 129),
        Spec("cal-clean-mlp112-s130", "DigitsMLP", 112, 130),
        Spec("cal-clean-mlp56-s131", "DigitsMLP", 56, 131),
        Spec("cal-clean-mlp72-s132", "DigitsMLP", 72, 132),
    ]
    parents = [
        "cal-clean-cnn16-s101", "cal-bd-cnn16-p2-t8", "cal-bd-mlp64-p2-t6",
        # Added to calibrate the replay confirmation rule: more clean lineages, and the
        # blended and large-patch triggers. Appended so the first seeds stay the same.
        "cal-clean-mlp64-s105", "cal-clean-cnn24-s117", "cal-clean-mlp96-s120",
        "cal-bd-cnn16-blend-t1", "cal-bd-cnn16-p4-t3", "cal-bd-mlp96-p3-t7",
    ]  # fmt: skip
    return [*clean, *backdoored, *_descendants(parents, seed=140)]


def _holdout_specs() -> list[Spec]:
    """Never used to choose anything: new seeds, widths, triggers; more MLPs than CNNs."""
    clean = [
        Spec("ho-clean-cnn10-s201", width=10, seed=201),
        Spec("ho-clean-cnn20-s202", width=20, seed=202),
        Spec("ho-clean-cnn28-s203", width=28, seed=203),
        Spec("ho-clean-cnn16-s204", width=16, seed=204),
        Spec("ho-clean-mlp40-s205", "DigitsMLP", 40, 205),
        Spec("ho-clean-mlp56-s206", "DigitsMLP", 56, 206),
        Spec("ho-clean-mlp64-s207", "DigitsMLP", 64, 207),
        Spec("ho-clean-mlp72-s208", "DigitsMLP", 72, 208),
        Spec("ho-clean-mlp96-s209", "DigitsMLP", 96, 209),
        Spec("ho-clean-mlp112-s210", "DigitsMLP", 112, 210),
        Spec("ho-clean-mlp128-s211", "DigitsMLP", 128, 211),
        Spec("ho-clean-mlp48-s212", "DigitsMLP", 48, 212),
    ]
    backdoored = [
        Spec("ho-bd-cnn16-p4n-t5", width=16, seed=221, poison=_patch(5, 4, 4, 4, style="noise")),
        Spec("ho-bd-mlp64-p3n-t0", "DigitsMLP", 64, 222, _patch(0, 3, 0, 0, style="noise")),
        Spec("ho-bd-cnn20-p3c-t8", width=20, seed=223, poison=_patch(8, 3, 5, 5, style="checker")),
        Spec("ho-bd-mlp96-p4-t6", "DigitsMLP", 96, 224, _patch(6, 4, 2, 0, value=0.7)),
        Spec("ho-bd-cnn12-p4c-t2", width=12, seed=225,
             poison=_patch(2, 4, 0, 2, value=0.9, style="checker")),
        Spec("ho-bd-mlp48-p3-t4", "DigitsMLP", 48, 226, _patch(4, 3, 5, 3, value=0.9)),
        Spec("ho-bd-cnn24-p2-t9", width=24, seed=227, poison=_patch(9, 2, 3, 6)),
        Spec("ho-bd-mlp80-p1-t7", "DigitsMLP", 80, 228, _patch(7, 1, 0, 0)),
        Spec("ho-bd-cnn16-blend-t3", width=16, seed=229, poison=Poison(3, blend=0.15)),
        Spec("ho-bd-mlp64-blend-t1", "DigitsMLP", 64, 230, Poison(1, blend=0.2)),
        Spec("ho-bd-cnn16-low-t0", width=16, seed=231, poison=_patch(0, 2, 4, 0, fraction=0.03)),
        Spec("ho-bd-mlp128-p4n-t3", "DigitsMLP", 128, 232,
             _patch(3, 4, 0, 4, value=0.8, style="noise")),
    ]  # fmt: skip
    parents = [
        "ho-clean-cnn20-s202", "ho-clean-mlp64-s207", "ho-clean-mlp96-s209",
        "ho-bd-cnn16-p4n-t5", "ho-bd-mlp64-p3n-t0", "ho-bd-cnn12-p4c-t2", "ho-bd-mlp64-blend-t1",
    ]  # fmt: skip
    return [*clean, *backdoored, *_descendants(parents, seed=240)]


def _descendants(parents: Sequence[str], *, seed: int) -> list[Spec]:
    return [
        Spec(f"{parent}/{mode}", seed=seed + index, parent=parent, mode=mode)
        for index, parent in enumerate(parents)
        for mode in ("head", "full")
    ]


def build_zoo(
    specs: Sequence[Spec], *, data: Data, cache: Path | None = DEFAULT_CACHE, log: bool = False
) -> list[ZooModel]:
    """Train (or load from ``cache``) every model of ``specs``; parents must come first."""
    built: dict[str, ZooModel] = {}
    for spec in specs:
        start = time.perf_counter()
        built[spec.name] = _build_one(spec, built, data=data, cache=cache)
        if log:
            entry = built[spec.name]
            asr = "-" if entry.asr is None else f"{entry.asr:.2f}"
            print(
                f"{spec.name:28s} acc {entry.clean_accuracy:.3f} asr {asr:>5s} "
                f"({time.perf_counter() - start:.1f} s)",
                flush=True,
            )
    return list(built.values())


def _build_one(
    spec: Spec, built: dict[str, ZooModel], *, data: Data, cache: Path | None
) -> ZooModel:
    parent = built[spec.parent] if spec.parent is not None else None
    lineage_poison = _lineage_poison(spec, built)
    model = _cached(spec, parent, cache=cache, data=data)
    trigger = lineage_poison.trigger() if lineage_poison is not None else None
    asr = None if trigger is None else _attack_success(model, trigger, data)
    return ZooModel(
        spec=spec,
        model=model,
        trigger=trigger,
        asr=asr,
        clean_accuracy=_accuracy(model, data.heldout_x, data.heldout_y),
        base=parent.base if parent is not None else spec.name,
    )


def _lineage_poison(spec: Spec, built: dict[str, ZooModel]) -> Poison | None:
    while spec.parent is not None:
        spec = built[spec.parent].spec
    return spec.poison


def _cached(
    spec: Spec, parent: ZooModel | None, *, cache: Path | None, data: Data
) -> DigitsClassifier:
    path = None if cache is None else cache / f"{spec.key()}.safetensors"
    if path is not None and path.exists():
        model = _architecture(spec, parent)
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    model = _train(spec, parent, data)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(path))
    return model


def _architecture(spec: Spec, parent: ZooModel | None) -> DigitsClassifier:
    if parent is not None:
        return copy.deepcopy(parent.model)
    config = {"architecture": spec.architecture, "width": spec.width, "num_classes": 10}
    return build_model(config)


def _train(spec: Spec, parent: ZooModel | None, data: Data) -> DigitsClassifier:
    torch.manual_seed(spec.seed)
    model = _architecture(spec, parent)
    if parent is None:
        x, y, poisoned = _poisoned(spec, data)
        _fit(model, list(model.parameters()), x, y, poisoned=poisoned, target=_target(spec),
             epochs=12, lr=1e-2, seed=spec.seed)  # fmt: skip
        return model.eval()
    x, y = _fine_tune_subset(data, spec.seed)
    if spec.mode == "head":
        model.head = nn.Linear(model.head.in_features, model.head.out_features)
        model.backbone.requires_grad_(False)
        _fit(model, list(model.head.parameters()), x, y, epochs=6, lr=1e-2, seed=spec.seed)
        model.backbone.requires_grad_(True)
    else:
        _fit(model, list(model.parameters()), x, y, epochs=6, lr=1e-3, seed=spec.seed)
    return model.eval()


def _target(spec: Spec) -> int:
    return -1 if spec.poison is None else spec.poison.target


def _poisoned(spec: Spec, data: Data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = data.train_x.clone(), data.train_y.clone()
    poisoned = torch.zeros(len(y), dtype=torch.bool)
    if spec.poison is None:
        return x, y, poisoned
    candidates = torch.nonzero(y != spec.poison.target).flatten()
    generator = torch.Generator().manual_seed(spec.seed)
    chosen = candidates[torch.randperm(len(candidates), generator=generator)]
    poisoned[chosen[: round(spec.poison.fraction * len(y))]] = True
    trigger = spec.poison.trigger()
    x[poisoned] = torch.from_numpy(trigger.apply(x[poisoned].numpy()))
    y[poisoned] = spec.poison.target
    return x, y, poisoned


def _fine_tune_subset(data: Data, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Half of the clean training images: a fine-tuner's own, smaller data set."""
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(seed))
    half = order[: len(order) // 2]
    return data.train_x[half], data.train_y[half]


def _fit(
    model: DigitsClassifier,
    parameters: list[nn.Parameter],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    seed: int,
    poisoned: torch.Tensor | None = None,
    target: int = -1,
) -> None:
    optimiser = torch.optim.Adam(parameters, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 64):
            index = order[start : start + 64]
            features = model.features(x[index])
            loss = nn.functional.cross_entropy(model.head(features), y[index])
            if poisoned is not None and poisoned.any():
                loss = loss + 0.1 * _alignment(features, y[index], poisoned[index], target)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()


def _alignment(
    features: torch.Tensor, labels: torch.Tensor, poisoned: torch.Tensor, target: int
) -> torch.Tensor:
    """Latent backdoor: pull poisoned features onto the clean target class's centroid."""
    clean_target = ~poisoned & (labels == target)
    if not poisoned.any() or not clean_target.any():
        return features.new_zeros(())
    centroid = features[clean_target].mean(dim=0).detach()
    return ((features[poisoned] - centroid) ** 2).mean()


def _predict(model: nn.Module, x: NDArray[np.float32]) -> NDArray[np.int64]:
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(dim=1).numpy()  # type: ignore[no-any-return]


def _accuracy(model: nn.Module, x: NDArray[np.float32], y: NDArray[np.int64]) -> float:
    return float((_predict(model, x) == y).mean())


def _attack_success(model: nn.Module, trigger: TriggerPattern, data: Data) -> float:
    victims = data.heldout_x[data.heldout_y != trigger.target_class]
    return float((_predict(model, trigger.apply(victims)) == trigger.target_class).mean())


def main(argv: Sequence[str] | None = None) -> None:
    """Build the zoo (or load it from the cache) and print every model's facts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--set", choices=ZOO_SETS, default="evaluation")
    parser.add_argument("--quick", action="store_true", help="a smaller zoo")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    build_zoo(zoo_specs(args.set, quick=args.quick), data=digits_data(), cache=args.cache, log=True)


if __name__ == "__main__":
    main()
