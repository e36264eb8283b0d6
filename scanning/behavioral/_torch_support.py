"""Small torch helpers the detectors share: calling a model, a tiny Adam, thread control.

Private to :mod:`scanning.behavioral`; the public API is :mod:`scanning.behavioral.detect`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import numpy as np
import torch
from numpy.typing import NDArray

from scanning.behavioral.report import ScanProfile

#: What the detectors call: a float32 batch ``(N, *input_shape)`` to logits ``(N, K)``.
Classifier = Callable[[torch.Tensor], torch.Tensor]


def put_in_eval_mode(model: object) -> None:
    """Switch dropout/batch-norm to inference where the model allows it.

    A ``torch.export`` program's ``.module()`` refuses ``eval()`` (it was exported in
    the mode it runs in), so a refusal is not an error.
    """
    evaluate = getattr(model, "eval", None)
    if callable(evaluate):
        with suppress(NotImplementedError, RuntimeError):
            evaluate()


def logits_of(model: Classifier, batch: torch.Tensor, *, num_classes: int) -> torch.Tensor:
    """``model(batch)`` checked to be a float ``(len(batch), num_classes)`` tensor."""
    out = model(batch)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the model returned {type(out).__name__}, expected a logits tensor")
    if out.shape != (batch.shape[0], num_classes):
        raise ValueError(
            f"the model maps {tuple(batch.shape)} inputs to logits of shape {tuple(out.shape)}, "
            f"but the scan profile says {num_classes} classes: expected "
            f"({batch.shape[0]}, {num_classes}); fix num_classes in the profile"
        )
    return out.float()


def predict(
    model: Classifier, x: NDArray[np.float32], *, num_classes: int, chunk: int = 512
) -> NDArray[np.int64]:
    """The predicted class of every input in ``x``, without gradients, in chunks."""
    answers = []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + chunk]))
            answers.append(logits_of(model, batch, num_classes=num_classes).argmax(dim=1))
    return torch.cat(answers).numpy().astype(np.int64)


def check_profile(model: Classifier, profile: ScanProfile) -> None:
    """Refuse a profile that does not describe its own references or the model's outputs.

    Raises ``ValueError`` naming the mismatch and what to fix.
    """
    shape = tuple(profile.input_shape)
    low, high = profile.value_range
    x, y = np.asarray(profile.x), np.asarray(profile.y)
    problems = []
    if profile.num_classes < 2:
        problems.append(f"num_classes must be at least 2, got {profile.num_classes}")
    if not low < high:
        problems.append(f"value_range must be (low, high) with low < high, got {(low, high)}")
    if x.ndim < 1 or tuple(x.shape[1:]) != shape:
        problems.append(
            f"reference inputs x have shape {x.shape}, expected (N, *{shape}) "
            f"for input_shape {shape}"
        )
    if len(x) == 0:
        problems.append("the scan profile has no reference inputs: give at least a few dozen")
    if y.shape != (len(x),):
        problems.append(f"labels y have shape {y.shape}, expected ({len(x)},), one per input")
    elif len(y) and (y.min() < 0 or y.max() >= profile.num_classes):
        problems.append(
            f"labels y must lie in [0, {profile.num_classes}), got {y.min()}..{y.max()}"
        )
    if problems:
        raise ValueError("invalid scan profile: " + "; ".join(problems))
    _check_values(x, low, high)
    probe = torch.from_numpy(np.ascontiguousarray(x[:2], dtype=np.float32))
    with torch.no_grad():
        logits_of(model, probe, num_classes=profile.num_classes)


def _check_values(x: NDArray[np.generic], low: float, high: float) -> None:
    values = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("invalid scan profile: reference inputs contain NaN or infinity")
    tolerance = 1e-4 * (high - low)
    if values.min() < low - tolerance or values.max() > high + tolerance:
        raise ValueError(
            f"invalid scan profile: reference inputs span [{values.min():g}, {values.max():g}], "
            f"outside the value_range [{low:g}, {high:g}]: fix the range or rescale the inputs"
        )


def mask_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """The trigger mask's shape: one value per pixel shared by the channels of an image.

    For a channels-first image ``(C, H, W)`` the mask is ``(1, H, W)``, as in Neural
    Cleanse; any other input gets one mask value per input value.
    """
    shape = tuple(input_shape)
    return (1, *shape[1:]) if len(shape) == 3 else shape


class Adam:
    """Adam (Kingma and Ba, 2015) over a few tensors, with PyTorch's default betas.

    ``torch.optim`` would do, but its first use imports ``torch._dynamo``: 1.5 s or more
    of CPU in every scan process, a good part of a whole scan of a small model.
    """

    def __init__(self, parameters: Sequence[torch.Tensor], *, lr: float) -> None:
        self.parameters = list(parameters)
        self.lr = lr
        self.steps = 0
        self.first = [torch.zeros_like(p) for p in self.parameters]
        self.second = [torch.zeros_like(p) for p in self.parameters]

    @torch.no_grad()
    def step(self, gradients: Sequence[torch.Tensor]) -> None:
        """Move every parameter by one Adam update along ``-gradients`` (minimising)."""
        self.steps += 1
        beta1, beta2 = 0.9, 0.999
        step_size = self.lr / (1 - beta1**self.steps)
        correction = (1 - beta2**self.steps) ** 0.5
        for parameter, grad, first, second in zip(
            self.parameters, gradients, self.first, self.second, strict=True
        ):
            first.mul_(beta1).add_(grad, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            parameter.addcdiv_(first, (second.sqrt() / correction).add_(1e-8), value=-step_size)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block on ``count`` intra-op threads; the caller's setting is restored.

    One thread is the default of a scan: these models are too small to gain from two,
    a busy machine makes torch's spinning pool much slower, and one thread makes the
    results bit-identical whatever the core count.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: The architecture families the default calibration distinguishes (see ``_calibration``).
CONVOLUTIONAL = "convolutional"
DENSE = "dense"
_CONVOLUTIONS = (
    torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
    torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d,
)  # fmt: skip


def architecture_family(model: object) -> str | None:
    """``convolutional`` when the model convolves, ``dense`` when it only has linear
    layers, ``None`` when its structure cannot be read.

    Reads ``nn.Module`` children (``Conv*d``, ``Linear``) and, for a ``torch.export``
    program's ``.module()``, whose layers are graph operations, the ``aten`` calls of
    its graph.
    """
    kinds: set[str] = set()
    modules = getattr(model, "modules", None)
    if callable(modules):
        for module in modules():
            if isinstance(module, _CONVOLUTIONS):
                kinds.add(CONVOLUTIONAL)
            elif isinstance(module, torch.nn.Linear):
                kinds.add(DENSE)
    graph = getattr(model, "graph", None)
    for node in getattr(graph, "nodes", ()):
        target = str(getattr(node, "target", ""))
        if "convolution" in target or "conv1d" in target or "conv2d" in target:
            kinds.add(CONVOLUTIONAL)
        elif target.startswith(("aten.linear", "aten.addmm", "aten.mm")):
            kinds.add(DENSE)
    if CONVOLUTIONAL in kinds:
        return CONVOLUTIONAL
    return DENSE if DENSE in kinds else None
