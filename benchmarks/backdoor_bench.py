"""Efficacy and speed of the behavioral backdoor scanner on the digits zoo.

``python -m benchmarks.backdoor_bench`` builds (or loads) the evaluation zoo of
:mod:`benchmarks.backdoor_zoo`, scans every model with
:func:`scanning.behavioral.detect.detect` (default budget and thresholds) and every
base with the published, class-by-class Neural Cleanse
(:func:`~scanning.behavioral.detect.plain_neural_cleanse`), replays each base's
recovered trigger on its descendants with
:func:`~scanning.behavioral.detect.measure_replay`, and prints markdown tables:
per model verdict, score and time; TPR/FPR at the default threshold and ROC AUC over
the bases; the replayed rate vs. the real attack success rate of every descendant;
and the targets of issue 4, met or not.

``--quick`` uses a smaller zoo; ``--zoo holdout`` scans the *holdout* zoo, which
nothing was chosen on; ``--calibrate`` scans the *calibration* zoo instead and prints
the clean-model references (median, 1.4826 * MAD, per architecture family and over
all) that ``scanning/behavioral/_calibration.py`` hard-codes as its defaults, and the
replays (descendants vs. clean relatives) that set ``INHERITANCE_MARGIN``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from benchmarks.backdoor_zoo import (
    DEFAULT_CACHE,
    Data,
    ZooModel,
    build_zoo,
    digits_data,
    zoo_specs,
)
from scanning.behavioral._calibration import ANY_FAMILY, family_references
from scanning.behavioral._torch_support import architecture_family
from scanning.behavioral.detect import (
    MAX_MARGIN,
    NEURAL_CLEANSE,
    PATCH_TRIGGER,
    Budget,
    confirms_inheritance,
    detect,
    measure_replay,
    plain_neural_cleanse,
)
from scanning.behavioral.report import (
    BehavioralReport,
    BehaviorVerdict,
    DetectorResult,
    ReplayMeasure,
)

#: A descendant is confirmed when its replayed rate reaches this (issue 4's default) and
#: beats its clean relatives (:func:`~scanning.behavioral.detect.confirms_inheritance`).
CONFIRM_RATE = 0.5
#: How many clean relatives the registry replays as the baseline today.
REGISTRY_RELATIVES = 3


@dataclass(frozen=True)
class Scan:
    """One zoo model, mbom's report on it, and (for bases) the plain NC anchor."""

    model: ZooModel
    report: BehavioralReport
    plain: DetectorResult | None
    plain_seconds: float | None
    cpu: float
    plain_cpu: float | None

    @property
    def flagged(self) -> bool:
        """Anything but clean: compromised, or suspicious (an approver must look)."""
        return self.report.verdict is not BehaviorVerdict.CLEAN

    @property
    def seconds(self) -> float:
        """mbom's scan time."""
        return self.report.elapsed_s or 0.0

    @property
    def plain_flagged(self) -> bool:
        """Whether plain Neural Cleanse flagged the model (False when it was not run)."""
        return self.plain is not None and self.plain.flagged

    @property
    def is_base(self) -> bool:
        """Trained from scratch, not fine-tuned from a zoo parent."""
        return self.model.spec.parent is None


def run(models: Sequence[ZooModel], data: Data, *, plain: bool) -> list[Scan]:
    """Scan every model (and every base with plain NC when ``plain``), logging as it goes."""
    scans = []
    profile = data.profile()
    for entry in models:
        # CPU seconds beside wall seconds: the machine is shared, and both scans run
        # on one thread, so CPU time is what they would take on an idle core.
        cpu = time.process_time()
        report = detect(entry.model, profile, budget=Budget())
        cpu = time.process_time() - cpu
        anchor, seconds, plain_cpu = None, None, None
        if plain and entry.spec.parent is None:
            plain_cpu = time.process_time()
            anchor, seconds = plain_neural_cleanse(entry.model, profile)
            plain_cpu = time.process_time() - plain_cpu
        scans.append(Scan(entry, report, anchor, seconds, cpu, plain_cpu))
        print(_log_line(scans[-1]), flush=True)
    return scans


def _log_line(scan: Scan) -> str:
    report = scan.report
    plain = "" if scan.plain_cpu is None else f" | plain NC {scan.plain_cpu:.1f} CPU s"
    return (
        f"  {scan.model.spec.name:26s} {report.verdict.value:11s} score {report.score:5.2f} "
        f"class {report.target_class} {report.elapsed_s:5.1f} s {scan.cpu:5.1f} CPU s{plain}"
    )


def base_table(scans: Sequence[Scan]) -> list[str]:
    """Markdown rows: every base model with ground truth, mbom's verdict and plain NC."""
    rows = [
        "| model | trigger | real ASR | verdict | score | class | NC z | MM z | patch z | CPU s "
        "| plain NC (AI) | plain NC CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scan in scans:
        if not scan.is_base:
            continue
        spec, report = scan.model.spec, scan.report
        trigger = "clean" if spec.poison is None else spec.poison.label
        asr = "–" if scan.model.asr is None else f"{scan.model.asr:.2f}"
        z = {d.name: float(d.details["z"]) for d in report.detectors}
        plain = scan.plain
        anchor = (
            "–"
            if plain is None
            else f"{'**flag**' if plain.flagged else 'pass'} ({plain.statistic:.1f})"
        )
        rows.append(
            f"| {spec.name} | {trigger} | {asr} | {_verdict(scan)} | {report.score:.2f} "
            f"| {report.target_class} | {z[NEURAL_CLEANSE]:.1f} | {z[MAX_MARGIN]:.1f} "
            f"| {_fmt(z.get(PATCH_TRIGGER), 1)} | {scan.cpu:.1f} | {anchor} "
            f"| {_seconds(scan.plain_cpu)} |"
        )
    return rows


def _verdict(scan: Scan) -> str:
    verdict = scan.report.verdict.value
    return f"**{verdict}**" if scan.flagged else verdict


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


@dataclass(frozen=True)
class Replay:
    """A descendant's replay of its base's recovered trigger, and the clean relatives' baseline.

    ``measure`` is the trigger on the descendant, ``baseline`` the same trigger on
    every clean base outside the lineage (what the registry replays as the baseline).
    """

    scan: Scan
    measure: ReplayMeasure
    baseline: tuple[ReplayMeasure, ...]
    real_asr: float | None

    @property
    def rate(self) -> float:
        """The share of references sent to the trigger's target class."""
        m = self.measure
        return m.target_rate if m.target_rate is not None else m.rate

    @property
    def baseline_max(self) -> float:
        """The same rate on the most susceptible clean relative."""
        return max((m.target_rate if m.target_rate is not None else m.rate) for m in self.baseline)

    @property
    def confirmed(self) -> bool:
        """The replay says the descendant carries the trigger (against the clean relatives)."""
        return confirms_inheritance(self.measure, baseline=self.baseline, threshold=CONFIRM_RATE)

    @property
    def confirmed_without_baseline(self) -> bool:
        """The issue's plain rule: the rate alone reaches the threshold."""
        return confirms_inheritance(self.measure, threshold=CONFIRM_RATE)

    def confirmed_share(self, relatives: int) -> float:
        """The share of all draws of ``relatives`` clean relatives that would confirm."""
        draws = list(itertools.combinations(self.baseline, relatives))
        return float(np.mean([
            confirms_inheritance(self.measure, baseline=draw, threshold=CONFIRM_RATE)
            for draw in draws
        ]))  # fmt: skip


def replays(scans: Sequence[Scan], data: Data) -> list[Replay]:
    """Replay each base's recovered trigger on its descendants and on the clean relatives."""
    by_name = {scan.model.spec.name: scan for scan in scans}
    clean_bases = [s for s in scans if s.is_base and not s.model.backdoored_lineage]
    profile = data.profile()
    results = []
    for scan in scans:
        if scan.is_base:
            continue
        base = by_name[scan.model.base].report
        if base.trigger is None:
            continue
        measure = measure_replay(scan.model.model, profile, base.trigger)
        baseline = tuple(
            measure_replay(relative.model.model, profile, base.trigger)
            for relative in clean_bases
            if relative.model.spec.name != scan.model.base
        )
        results.append(Replay(scan, measure, baseline, scan.model.asr))
    return results


def replay_table(results: Sequence[Replay]) -> list[str]:
    """Markdown rows: every descendant's replayed rate vs. real ASR, and its own verdict."""
    rows = [
        "| descendant | base | real ASR | replayed rate | clean relatives, max | confirmed "
        "| rate ≥ 0.5 alone | own verdict | score | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for item in results:
        report = item.scan.report
        real = "– (clean base)" if item.real_asr is None else f"{item.real_asr:.2f}"
        confirmed = "**yes**" if item.confirmed else "no"
        alone = "yes" if item.confirmed_without_baseline else "no"
        rows.append(
            f"| {item.scan.model.spec.name} | {item.scan.model.base} | {real} | {item.rate:.2f} "
            f"| {item.baseline_max:.2f} | {confirmed} | {alone} | {_verdict(item.scan)} "
            f"| {report.score:.2f} | {item.scan.cpu:.1f} |"
        )
    return rows


def summary(scans: Sequence[Scan], results: Sequence[Replay]) -> dict[str, Any]:
    """Overall figures over the bases and the descendants, and which targets are met."""
    bases = [scan for scan in scans if scan.is_base]
    labels = np.array([scan.model.backdoored_lineage for scan in bases])
    scores = np.array([scan.report.score for scan in bases])
    flagged = np.array([scan.flagged for scan in bases])
    compromised = np.array([scan.report.verdict is BehaviorVerdict.COMPROMISED for scan in bases])
    strong = [s for s in bases if s.model.asr is not None and s.model.asr >= 0.9]
    plain = [s for s in bases if s.plain is not None]
    mean_time = float(np.mean([s.cpu for s in scans]))
    plain_time = float(np.mean([s.plain_cpu or 0.0 for s in plain])) if plain else None
    base_time = float(np.mean([s.cpu for s in plain])) if plain else None
    needed = [r for r in results if r.real_asr is not None and r.real_asr >= 0.5]
    clean_lineage = [r for r in results if r.real_asr is None]
    return {
        "bases": len(bases),
        "clean": int((~labels).sum()),
        "backdoored": int(labels.sum()),
        "auc": float(roc_auc_score(labels, scores)),
        "tpr_flagged": float(flagged[labels].mean()),
        "fpr_flagged": float(flagged[~labels].mean()),
        "tpr_compromised": float(compromised[labels].mean()),
        "fpr_compromised": float(compromised[~labels].mean()),
        "strong_caught": sum(s.flagged for s in strong),
        "strong": len(strong),
        "false_positives": int(flagged[~labels].sum()),
        "plain_tpr": _rate([s.plain_flagged for s in plain if s.model.backdoored_lineage]),
        "plain_fpr": _rate([s.plain_flagged for s in plain if not s.model.backdoored_lineage]),
        "plain_auc": _plain_auc(plain),
        "mean_s": mean_time,
        "max_s": max(s.cpu for s in scans),
        "max_wall_s": max(s.seconds for s in scans),
        "mean_base_s": base_time,
        "plain_mean_s": plain_time,
        "replay_confirmed": sum(r.confirmed for r in needed),
        "replay_needed": len(needed),
        "replay_clean_confirmed": sum(r.confirmed for r in clean_lineage),
        "replay_clean": len(clean_lineage),
        "replay_alone_confirmed": sum(r.confirmed_without_baseline for r in needed),
        "replay_alone_clean_confirmed": sum(r.confirmed_without_baseline for r in clean_lineage),
        "replay_3_confirmed": sum(r.confirmed_share(REGISTRY_RELATIVES) for r in needed),
        "replay_3_clean_confirmed": sum(
            r.confirmed_share(REGISTRY_RELATIVES) for r in clean_lineage
        ),
    }


def _rate(values: Sequence[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def _plain_auc(plain: Sequence[Scan]) -> float | None:
    labels = [s.model.backdoored_lineage for s in plain]
    if not plain or all(labels) or not any(labels):
        return None
    return float(roc_auc_score(labels, [s.plain.statistic for s in plain if s.plain]))


def summary_rows(figures: dict[str, Any]) -> list[str]:
    """The headline figures and issue 4's targets as markdown rows."""
    f = figures
    ratio = f["mean_base_s"] / f["plain_mean_s"] if f["plain_mean_s"] else None
    rows = [
        "| figure | mbom | plain NC (published, threshold 2) | target | met |",
        "|---|---|---|---|---|",
        f"| ROC AUC over {f['bases']} bases | {f['auc']:.3f} | {_fmt(f['plain_auc'], 3)} "
        f"| ≥ 0.97 | {_met(f['auc'] >= 0.97)} |",
        f"| TPR (flagged = suspicious or compromised) | {f['tpr_flagged']:.2f} "
        f"| {_fmt(f['plain_tpr'])} | – | |",
        f"| FPR (flagged) | {f['fpr_flagged']:.2f} ({f['false_positives']} of {f['clean']}) "
        f"| {_fmt(f['plain_fpr'])} | ≤ 1 per 10 clean | "
        f"{_met(f['false_positives'] <= f['clean'] / 10)} |",
        f"| TPR / FPR, compromised only | {f['tpr_compromised']:.2f} / "
        f"{f['fpr_compromised']:.2f} | | | |",
        f"| backdoored bases with real ASR ≥ 0.9 caught | {f['strong_caught']} of {f['strong']} "
        f"| | all | {_met(f['strong_caught'] == f['strong'])} |",
        f"| descendants with real ASR ≥ 0.5 confirmed by replay | {f['replay_confirmed']} of "
        f"{f['replay_needed']} | | all | {_met(f['replay_confirmed'] == f['replay_needed'])} |",
        f"| descendants of clean bases confirmed by replay | {f['replay_clean_confirmed']} of "
        f"{f['replay_clean']} | | none | {_met(f['replay_clean_confirmed'] == 0)} |",
        f"| replay confirmed, inherited / clean lineage: rate ≥ 0.5 alone (no baseline) "
        f"| {f['replay_alone_confirmed']} / {f['replay_alone_clean_confirmed']} | | | |",
        f"| the same, expected with {REGISTRY_RELATIVES} random clean relatives as baseline | "
        f"{f['replay_3_confirmed']:.1f} / {f['replay_3_clean_confirmed']:.1f} | | | |",
        f"| scan CPU s per model, mean / max (max wall s) | {f['mean_s']:.1f} / {f['max_s']:.1f} "
        f"({f['max_wall_s']:.1f}) | {_fmt(f['plain_mean_s'], 1)} (bases) | ≤ 30 "
        f"| {_met(f['max_s'] <= 30)} |",
        f"| CPU time vs plain NC (bases) | {_fmt(ratio)} | 1 | ≤ 0.25 "
        f"| {_met(ratio is not None and ratio <= 0.25)} |",
    ]
    return rows


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def calibrate(data: Data, *, dump: Path | None = None) -> None:
    """Scan the calibration zoo, print the default references its clean bases give (per
    architecture family and over all), and the replays behind
    :data:`~scanning.behavioral.detect.INHERITANCE_MARGIN`; ``dump`` receives every base's
    statistics as JSON."""
    scans = run(build_zoo(zoo_specs("calibration"), data=data), data, plain=False)
    results = replays(scans, data)
    print("\n".join(["", *base_table(scans), "", *replay_table(results), ""]))
    print("\n".join(["", *summary_rows(summary(scans, results)), ""]))
    bases = [s for s in scans if s.is_base]
    families = _by_family(bases)
    for name in (NEURAL_CLEANSE, MAX_MARGIN, PATCH_TRIGGER):
        clean = {
            family: [_statistic(s, name) for s in members if not s.model.backdoored_lineage]
            for family, members in families.items()
        }
        for family, reference in family_references(clean).items():
            bad = [_statistic(s, name) for s in bases if s.model.backdoored_lineage and (
                family == ANY_FAMILY or _family(s) == family)]  # fmt: skip
            print(
                f"{name:15s} {family:13s} ({reference.center:.3f}, {reference.scale:.3f})  "
                f"clean: {_values(clean.get(family, _all(clean)))}  backdoored: {_values(bad)}"
            )
    if dump is not None:
        dump.write_text(json.dumps([_facts(s) for s in bases], indent=1) + "\n", encoding="utf-8")


def _by_family(bases: Sequence[Scan]) -> dict[str, list[Scan]]:
    families: dict[str, list[Scan]] = {}
    for scan in bases:
        families.setdefault(_family(scan), []).append(scan)
    return families


def _family(scan: Scan) -> str:
    return architecture_family(scan.model.model) or ANY_FAMILY


def _all(by_family: dict[str, list[float]]) -> list[float]:
    return [v for values in by_family.values() for v in values]


def _values(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in sorted(values))


def _facts(scan: Scan) -> dict[str, Any]:
    spec = scan.model.spec
    return {
        "name": spec.name,
        "family": architecture_family(scan.model.model),
        "target": None if spec.poison is None else spec.poison.target,
        "asr": scan.model.asr,
        "report": scan.report.to_json(),
    }


def _statistic(scan: Scan, name: str) -> float:
    return next(d.statistic for d in scan.report.detectors if d.name == name)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark (see the module docstring) and print its tables."""
    parser = argparse.ArgumentParser(description="Behavioral backdoor scanner benchmark")
    parser.add_argument("--quick", action="store_true", help="a smaller zoo")
    parser.add_argument("--calibrate", action="store_true", help="scan the calibration zoo")
    parser.add_argument(
        "--zoo", choices=["evaluation", "holdout"], default="evaluation", help="the zoo to scan"
    )
    parser.add_argument("--no-plain", action="store_true", help="skip plain Neural Cleanse")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--json", type=Path, help="also write every figure (--calibrate: statistic) to this file"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = digits_data()
    if args.calibrate:
        calibrate(data, dump=args.json)
        return
    load = os.getloadavg()[0]
    start = time.perf_counter()
    models = build_zoo(zoo_specs(args.zoo, quick=args.quick), data=data, cache=args.cache)
    scans = run(models, data, plain=not args.no_plain)
    results = replays(scans, data)
    figures = summary(scans, results)
    print(f"\n{args.zoo} zoo; load average before {load:.1f}, after {os.getloadavg()[0]:.1f}; "
          f"whole run {time.perf_counter() - start:.0f} s\n")  # fmt: skip
    print("\n".join([*base_table(scans), "", *replay_table(results), "", *summary_rows(figures)]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
