"""What the behavioral scan and the trigger replay report.

The contract between the detectors (:mod:`scanning.behavioral.detect`), the
sandboxed worker that runs them, and their consumers (``mbom scan --json``,
admission on ``mbom register``, ``mbom replay``, the benchmark). Arrays are
NumPy; ``to_json`` gives JSON-ready dicts without the arrays (the trigger's
arrays travel as ``.npz`` bytes, see :meth:`TriggerPattern.to_npz`).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanning.behavioral.verdict import BehaviorVerdict as BehaviorVerdict  # re-exported


@dataclass(frozen=True)
class ScanProfile:
    """What a behavioral scan needs to know about a model's inputs and outputs.

    ``x`` holds clean reference inputs, float32 of shape ``(N, *input_shape)``
    with values inside ``value_range``; ``y`` their int64 labels in
    ``[0, num_classes)``.
    """

    input_shape: tuple[int, ...]
    value_range: tuple[float, float]
    num_classes: int
    x: NDArray[np.float32]
    y: NDArray[np.int64]


@dataclass(frozen=True)
class TriggerPattern:
    """A trigger: ``x' = (1 - mask) * x + mask * pattern``.

    ``mask`` has values in [0, 1] and a shape that broadcasts against one input
    (``input_shape``, or ``input_shape`` without the channel axis plus a leading
    1); ``pattern`` has the shape of one input. ``target_class`` is the class
    the trigger sends inputs to, when known.
    """

    mask: NDArray[np.float32]
    pattern: NDArray[np.float32]
    target_class: int | None = None

    def apply(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Stamp the trigger on a batch of inputs."""
        stamped = (1.0 - self.mask) * x + self.mask * self.pattern
        return stamped.astype(np.float32)

    def to_npz(self) -> bytes:
        """The trigger as ``.npz`` bytes (``mask``, ``pattern``, ``target_class`` or -1)."""
        buffer = io.BytesIO()
        target = -1 if self.target_class is None else self.target_class
        np.savez(buffer, mask=self.mask, pattern=self.pattern, target_class=np.int64(target))
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> TriggerPattern:
        """Read :meth:`to_npz` output (or an analyst's ``mask``/``pattern`` ``.npz``).

        Raises ``ValueError`` naming what is missing or malformed. Never unpickles.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                missing = {"mask", "pattern"} - set(npz.files)
                if missing:
                    raise ValueError(f"a trigger .npz needs arrays {sorted(missing)}")
                mask = np.asarray(npz["mask"], dtype=np.float32)
                pattern = np.asarray(npz["pattern"], dtype=np.float32)
                target = int(npz["target_class"]) if "target_class" in npz.files else -1
        except (EOFError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
            # Empty, truncated or plain .npy bytes, or a target_class that is not one number.
            raise ValueError(f"not a readable trigger .npz: {exc}") from exc
        try:
            np.broadcast_shapes(mask.shape, pattern.shape)
        except ValueError as exc:
            raise ValueError(
                f"trigger mask {mask.shape} does not broadcast against pattern {pattern.shape}"
            ) from exc
        if not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 1:
            raise ValueError("trigger mask values must be finite and within [0, 1]")
        return cls(mask=mask, pattern=pattern, target_class=None if target < 0 else target)


@dataclass(frozen=True)
class DetectorResult:
    """One detector's statistic and what it concluded.

    ``statistic`` is higher-is-more-suspicious; ``threshold`` the value above
    which it flags; ``details`` detector-specific JSON-ready facts (per-class
    mask norms, anomaly indices, ...).
    """

    name: str
    statistic: float
    threshold: float
    flagged: bool
    suspected_classes: tuple[int, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "flagged": self.flagged,
            "suspected_classes": list(self.suspected_classes),
            "details": dict(self.details),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DetectorResult:
        """Rebuild from :meth:`to_json` output."""
        return cls(
            name=str(data["name"]),
            statistic=float(data["statistic"]),
            threshold=float(data["threshold"]),
            flagged=bool(data["flagged"]),
            suspected_classes=tuple(int(c) for c in data.get("suspected_classes", ())),
            details=dict(data.get("details", {})),
        )


#: A clean relative's scan as calibration: its statistic per detector name, and its
#: architecture ``family`` when known (only relatives of the scanned model's family count).
RelativeStatistics = Mapping[str, float | str]


@dataclass(frozen=True)
class BehavioralReport:
    """The combined verdict of the detectors on one model.

    ``score`` is higher-is-more-suspicious (comparable across models, used for
    the ROC). ``calibration`` says what the thresholds were calibrated against
    (``"default"`` or e.g. ``"relatives:4"``). On ``scan_error`` ``error`` says
    why and the other fields are empty.
    """

    verdict: BehaviorVerdict
    score: float | None = None
    detectors: tuple[DetectorResult, ...] = ()
    target_class: int | None = None
    trigger: TriggerPattern | None = None
    trigger_asr: float | None = None
    calibration: str = "default"
    elapsed_s: float | None = None
    error: str | None = None
    #: ``convolutional`` or ``dense`` (the calibration family), ``None`` when unknown.
    family: str | None = None
    #: The sandbox mechanisms the model was loaded under (``landlock``, ``seccomp``,
    #: ``network_namespace``, ...; see :data:`scanning.behavioral.worker.MECHANISMS`);
    #: one absent from the list was not available on the scanning machine.
    confinement: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict without the trigger arrays (``trigger`` says whether one exists)."""
        return {
            "verdict": self.verdict.value,
            "score": self.score,
            "detectors": [d.to_json() for d in self.detectors],
            "target_class": self.target_class,
            "trigger_asr": self.trigger_asr,
            "has_trigger": self.trigger is not None,
            "calibration": self.calibration,
            "elapsed_s": self.elapsed_s,
            "error": self.error,
            "family": self.family,
            "confinement": list(self.confinement),
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, trigger: TriggerPattern | None = None
    ) -> BehavioralReport:
        """Rebuild from :meth:`to_json` output plus the trigger read separately."""
        return cls(
            verdict=BehaviorVerdict(data["verdict"]),
            score=data.get("score"),
            detectors=tuple(DetectorResult.from_json(d) for d in data.get("detectors", ())),
            target_class=data.get("target_class"),
            trigger=trigger,
            trigger_asr=data.get("trigger_asr"),
            calibration=str(data.get("calibration", "default")),
            family=data.get("family"),
            confinement=tuple(str(name) for name in data.get("confinement", ())),
            elapsed_s=data.get("elapsed_s"),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class ReplayMeasure:
    """A trigger stamped on a model's clean reference inputs.

    ``collapsed_class`` is the class most triggered inputs are predicted as;
    ``rate`` the share of reference inputs whose label is not that class that
    the trigger sends to it (an attack success rate); ``target_rate`` the same
    towards the trigger's own ``target_class`` when it has one; ``clean_accuracy``
    the model's accuracy on the untouched references.
    """

    rate: float
    collapsed_class: int
    target_rate: float | None
    clean_accuracy: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "rate": self.rate,
            "collapsed_class": self.collapsed_class,
            "target_rate": self.target_rate,
            "clean_accuracy": self.clean_accuracy,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplayMeasure:
        """Rebuild from :meth:`to_json` output."""
        target = data.get("target_rate")
        return cls(
            rate=float(data["rate"]),
            collapsed_class=int(data["collapsed_class"]),
            target_rate=None if target is None else float(target),
            clean_accuracy=float(data["clean_accuracy"]),
        )


class ReplayOutcome(StrEnum):
    """Whether a trigger replay produced a measurement; ``scan_error`` never confirms."""

    MEASURED = "measured"
    SCAN_ERROR = "scan_error"


@dataclass(frozen=True)
class ReplayReport:
    """A trigger replayed on one model in the sandbox, and whether it confirms inheritance.

    ``confirmed`` when the replay was measured and its ``rate`` reaches
    ``threshold``; on ``scan_error`` ``measure`` is None and ``error`` says why.
    """

    outcome: ReplayOutcome
    threshold: float
    measure: ReplayMeasure | None = None
    error: str | None = None
    elapsed_s: float | None = None

    @property
    def confirmed(self) -> bool:
        """True when the measured attack success rate reaches the threshold."""
        return self.measure is not None and self.measure.rate >= self.threshold

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``confirmed`` included for readers; ignored by :meth:`from_json`)."""
        return {
            "outcome": self.outcome.value,
            "threshold": self.threshold,
            "confirmed": self.confirmed,
            "measure": None if self.measure is None else self.measure.to_json(),
            "error": self.error,
            "elapsed_s": self.elapsed_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplayReport:
        """Rebuild from :meth:`to_json` output."""
        measure = data.get("measure")
        elapsed = data.get("elapsed_s")
        return cls(
            outcome=ReplayOutcome(data["outcome"]),
            threshold=float(data["threshold"]),
            measure=None if measure is None else ReplayMeasure.from_json(measure),
            error=data.get("error"),
            elapsed_s=None if elapsed is None else float(elapsed),
        )
