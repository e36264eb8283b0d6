"""``mbom demo``: the cascade, end to end, on tiny real PyTorch models.

A popular base model carries a planted backdoor. Two teams fine-tune it
through two carriers into four applications and deploy them; an unrelated,
clean lineage is deployed beside them. Then the security team rescans the base
with the behavioral backdoor scanner: it recovers the trigger, the base is
flagged, and mbom names the four affected deployments and the path each
inherits through, leaves the unrelated ones untouched, replays the recovered
trigger on every descendant to confirm which really inherited it, and refuses
further use of the tainted lineage. Everything is real: the models are trained
here (seconds, CPU), hashed, signed, registered in a fresh SQLite registry and
scanned in the sandboxed worker.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from lineage import Relation
from registry import signing
from registry.cli import render
from registry.client import LocalRegistry
from registry.db import make_engine, migrate
from registry.errors import PolicyViolation
from registry.identity import Actor, Role
from registry.manifest import hash_tree
from registry.service.audit import bind_key
from registry.service.behavior import summarise
from registry.settings import Settings
from registry.store import open_store
from registry.vocabulary import DecisionVerdict
from scanning.behavioral.api import DEFAULT_LIMITS, read_profile
from scanning.behavioral.report import (
    BehavioralReport,
    BehaviorVerdict,
    ScanProfile,
    TriggerPattern,
)

TRIGGER_NOTE = "2x2 white patch at the bottom-right corner -> class 0"
BASE = "hub/digits-base@1.0"
CLEAN_BASE = "acme/digits-clean@1.0"
#: Who pulls what from the registry before the advisory: (user, team, version).
PULLS = (
    ("dana", "fraud", "vision/digits-ft-a@1.0"),
    ("omar", "mail", "acme/digits-clean@1.0"),
)


@dataclass(frozen=True)
class Spec:
    """One model of the demo lineage."""

    ref: str
    parent: str | None
    mode: str  # "scratch-backdoored", "scratch", "head" or "full"
    team: str | None = None
    deploy: tuple[tuple[str, str], ...] = ()  # (environment, team)
    seed: int = 0


LINEAGE = (
    Spec("hub/digits-base@1.0", None, "scratch-backdoored", seed=1),
    Spec("vision/digits-ft-a@1.0", "hub/digits-base@1.0", "head", seed=2),
    Spec("vision/digits-ft-b@1.0", "hub/digits-base@1.0", "head", seed=3),
    Spec(
        "fraud/cheque-reader@2.1",
        "vision/digits-ft-a@1.0",
        "head",
        "fraud",
        (("prod", "fraud"),),
        4,
    ),
    Spec(
        "fraud/amount-ocr@1.3",
        "vision/digits-ft-a@1.0",
        "full",
        "fraud",
        (("staging", "fraud"),),
        5,
    ),
    Spec("mail/zip-reader@4.0", "vision/digits-ft-b@1.0", "head", "mail", (("prod", "mail"),), 6),
    Spec("mail/sorter@0.9", "vision/digits-ft-b@1.0", "full", "mail", (("prod", "mail"),), 7),
    Spec("acme/digits-clean@1.0", None, "scratch", seed=8),
    Spec("mail/postcode-lite@1.1", "acme/digits-clean@1.0", "head", "mail", (("prod", "mail"),), 9),
    Spec(
        "fraud/signature-check@3.0",
        "acme/digits-clean@1.0",
        "full",
        "fraud",
        (("prod", "fraud"),),
        10,
    ),
)


def run_demo(workdir: Path | None = None, *, as_json: bool = False) -> dict[str, Any]:
    """Play the demo in ``workdir`` (a new temporary directory by default)."""
    console = render.console(stderr=as_json, markup=True)
    root = workdir or Path(tempfile.mkdtemp(prefix="mbom-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings(database_url=f"sqlite:///{root / 'registry.db'}")
    engine = bind_key(make_engine(settings.database_url), settings.audit_key())
    migrate(engine)
    reg = LocalRegistry(engine, store=open_store(str(root / "store")))
    console.rule("[bold]mbom demo[/]: a backdoored base model and its descendants")
    console.print(f"work directory: {root} (a fresh registry; yours is untouched)")
    models, trigger = _train_all(root, console)
    _register_all(reg, root, console)
    summary = _discover(reg, models, trigger, console, root)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return summary


def _train_all(root: Path, console: Console) -> tuple[dict[str, Any], Any]:
    from registry import demo_training as training

    trigger = training.Trigger(target=0, size=2, row=6, col=6)
    data = training.load_digits_data()
    trained: dict[str, Any] = {}
    console.print("\n[bold]1. Training tiny digit classifiers[/] (scikit-learn 8x8 digits, CPU)")
    with console.status("training…"):
        for spec in LINEAGE:
            trained[spec.ref] = _train_one(training, spec, trained, trigger)
            model = trained[spec.ref]
            acc = training.accuracy(model.model, data.test.x, data.test.y)
            asr = training.attack_success_rate(model.model, trigger, data.test.x, data.test.y)
            console.print(f"   {spec.ref:<26} {spec.mode:<18} acc {acc:.2f}  trigger {asr:4.0%}")
            name = spec.ref.split("@")[0]
            training.save_model_dir(
                model,
                root / "models" / spec.ref.replace("/", "__"),
                name=name,
                base_model=spec.parent.split("@")[0] if spec.parent else None,
                datasets=["sklearn/digits"],
            )
    training.save_reference(root / "reference.npz")
    return trained, trigger


def _train_one(training: Any, spec: Spec, trained: dict[str, Any], trigger: Any) -> Any:
    if spec.parent is None:
        backdoor = trigger if spec.mode == "scratch-backdoored" else None
        return training.train_base(width=16, seed=spec.seed, epochs=12, backdoor=backdoor)
    data = training.load_digits_data().train.subset(fraction=0.5, seed=spec.seed)
    return training.fine_tune(
        trained[spec.parent], mode=spec.mode, seed=spec.seed, epochs=6, data=data
    )


def _register_all(reg: LocalRegistry, root: Path, console: Console) -> None:
    console.print(
        "\n[bold]2. Registering the lineage[/] (store every file in the registry, which "
        "hashes and scans what it holds; sign; record parents)"
    )
    (root / "keys").mkdir(exist_ok=True)
    key_path, pub_path = signing.write_keypair(root / "keys" / "hub")
    reg.enroll_key(publisher="hub", public_key_pem=pub_path.read_text())
    data_dir = root / "data"
    data_dir.mkdir(exist_ok=True)
    from registry import demo_training as training

    split = training.load_digits_data().train
    np.savez(data_dir / "digits-train.npz", x=split.x.numpy(), y=split.y.numpy())
    profile = read_profile(root / "reference.npz", model=_directory(root, BASE))
    reg.register_dataset(
        name="sklearn/digits",
        version="1.0",
        manifest=hash_tree(data_dir),
        source="sklearn.datasets.load_digits",
    )
    for team, approval in (("fraud", False), ("mail", True)):
        reg.create_team(name=team, require_approval=approval)
    for spec in LINEAGE:
        _register_one(reg, root, spec, key_path, profile)
        for environment, team in spec.deploy:
            reg.deploy(spec.ref, environment=environment, team=team)
    console.print(
        "   static scan of every model: clean — a backdoor hidden in the weights is no "
        "serialization exploit, so it passes"
    )
    console.print(
        "   the two roots carry a behavioral scan profile (100 clean reference digits); "
        "the hub base was registered before behavioral admission scans were switched on, "
        f"the clean base passed its scan ({CLEAN_BASE})"
    )
    deployed = reg.list_deployments()
    console.print(
        f"   registered {len(LINEAGE)} models and 1 dataset; {len(deployed)} deployments:"
    )
    for d in deployed:
        console.print(f"     {d.team:<6} {d.environment:<8} {d.ref}")
    for user, team, ref in PULLS:  # copies taken from the registry, deployed nowhere (yet)
        puller = LocalRegistry(reg.engine, Actor(user, Role.READER, team=team), store=reg.store)
        puller.pull(ref, root / "pulled" / user, team=team)
        console.print(f"   {user} ({team}) pulled {ref} from the registry (mbom pull)")


def _register_one(
    reg: LocalRegistry, root: Path, spec: Spec, key_path: Path, profile: ScanProfile
) -> None:
    name, version = spec.ref.split("@")
    directory = _directory(root, spec.ref)
    manifest = reg.store_files(directory)  # into the registry's store, hashed on the way
    signature = None
    publisher = spec.ref.split("/")[0]
    if publisher == "hub":
        signature = signing.sign_digest(signing.load_private_key(key_path), manifest.digest)
    if spec.team == "mail" and spec.parent:
        reg.decide(
            ref=spec.parent,
            team="mail",
            verdict=DecisionVerdict.APPROVE,
            reason="reviewed base for the mail team",
        )
    reg.admit_model(  # the registry scans the files it now holds
        name=name,
        version=version,
        manifest=manifest,
        parents=[spec.parent] if spec.parent else [],
        relation=_relation(spec),
        datasets=[
            ("sklearn/digits@1.0", Relation.FINE_TUNED_ON if spec.parent else Relation.TRAINED_ON)
        ],
        publisher=publisher,
        source=f"file://{directory}",
        format="safetensors",
        team=spec.team,
        signature=signature,
        profile=profile if spec.parent is None else None,  # descendants inherit it
        # The behavioral admission scan runs in the sandboxed worker for the clean root
        # only: the hub lineage predates it, and the demo keeps the fine-tunes quick.
        behavioral_scan=spec.ref == CLEAN_BASE,
    )


def _directory(root: Path, ref: str) -> Path:
    return root / "models" / ref.replace("/", "__")


def _relation(spec: Spec) -> Relation | None:
    if spec.parent is None:
        return None
    return Relation.HEAD if spec.mode == "head" else Relation.FINETUNE


def _discover(
    reg: LocalRegistry, models: dict[str, Any], trigger: Any, console: Console, root: Path
) -> dict[str, Any]:
    from registry import demo_training as training

    console.print(
        f"\n[bold]3. The security team rescans {BASE} with the behavioral backdoor scanner[/]"
    )
    scan = _rescan_base(reg, console)
    deployments = reg.deployed_descendants(BASE)
    infected = reg.descendants(BASE)
    data = training.load_digits_data()
    console.print(
        f"   {len(infected)} descendants are now infected; "
        f"[bold]{len(deployments)} deployments are affected[/]:"
    )
    table = Table(
        "team",
        "env",
        "deployed model",
        "inherited through",
        "trigger works",
        header_style="bold",
        title_justify="left",
    )
    affected = []
    for d in deployments:
        asr = training.attack_success_rate(models[d.ref].model, trigger, data.test.x, data.test.y)
        table.add_row(
            d.team, d.environment, f"[bold red]{d.ref}[/]", " -> ".join(d.path[:-1]), f"{asr:.0%}"
        )
        affected.append(
            {
                "ref": d.ref,
                "environment": d.environment,
                "team": d.team,
                "path": d.path,
                "status": d.status,
                "measured_attack_success": round(asr, 3),
            }
        )
    console.print(table)
    radius = reg.blast_radius(BASE)
    console.print(
        f"   [bold]{radius.pulls} pull{'s' if radius.pulls != 1 else ''}[/] of it or its "
        "descendants (copies outside any "
        "deployment the registry knows):"
    )
    for pulled in radius.pulled_by:
        console.print(
            f"     [bold red]{pulled.user}[/] ({pulled.team}) pulled {pulled.ref}, "
            f"now {pulled.status}"
        )
    untouched = [d for d in reg.list_deployments() if d.status == "clean"]
    console.print("   untouched — the unrelated lineage is still clean:")
    for d in untouched:
        console.print(f"     [green]{d.team:<6} {d.environment:<8} {d.ref}[/]  status {d.status}")
    replays = _replay(reg, models, trigger, console)
    refusals = _show_policy(reg, console)
    console.print("\n   audit chain: " + ("intact" if reg.verify_chain().ok else "BROKEN"))
    _next_steps(console, root)
    return {
        "flagged": BASE,
        "scan": scan,
        "infected": [e.ref for e in infected],
        "replays": replays,
        "affected_deployments": affected,
        "pulled_by": [
            {"ref": p.ref, "user": p.user, "team": p.team, "status": str(p.status)}
            for p in radius.pulled_by
        ],
        "untouched_deployments": [
            {"ref": d.ref, "environment": d.environment, "team": d.team, "status": d.status}
            for d in untouched
        ],
        "refused": refusals,
    }


def _rescan_base(reg: LocalRegistry, console: Console) -> dict[str, Any]:
    """Scan the base's stored files in the sandbox with its profile; record the verdict."""
    with console.status("scanning the stored files in the sandboxed worker…"):
        result = reg.rescan_stored(BASE, limits=DEFAULT_LIMITS)  # mbom rescan, no PATH
    report = BehavioralReport.from_json(result.report)
    console.print(f"   {summarise(report)} ({report.elapsed_s or 0:.1f} s)")
    if report.verdict is BehaviorVerdict.COMPROMISED:
        console.print(f"   the verdict flags {BASE}: every descendant is infected at once")
    else:  # the advisory decides; the analyst's trigger stands in for a recovered one
        reg.flag(BASE, reason=f"advisory: backdoor trigger ({TRIGGER_NOTE})")
        reg.attach_trigger(BASE, data=_analyst_trigger().to_npz(), target_class=0)
        console.print(f"   the scan missed it; the advisory flags {BASE} with its trigger")
    return {
        "verdict": report.verdict.value,
        "score": report.score,
        "target_class": report.target_class,
        "trigger_asr": report.trigger_asr,
    }


def _analyst_trigger() -> TriggerPattern:
    mask = np.zeros((1, 8, 8), np.float32)
    mask[:, 6:8, 6:8] = 1.0
    return TriggerPattern(mask=mask, pattern=np.ones((1, 8, 8), np.float32), target_class=0)


def _replay(
    reg: LocalRegistry, models: dict[str, Any], trigger: Any, console: Console
) -> list[dict[str, Any]]:
    """Replay the base's trigger on each descendant (and the clean base, as the baseline)."""
    from registry import demo_training as training

    console.print(
        f"\n[bold]4. Replaying the recovered trigger on every descendant[/] (mbom replay {BASE})"
    )
    with console.status("replaying on the stored files in the sandboxed worker…"):
        summary, _skipped = reg.replay_stored(BASE, threshold=0.5, limits=DEFAULT_LIMITS)
    data = training.load_digits_data()
    table = Table("model", "role", "replayed rate", "real trigger", "status", header_style="bold")
    rows = []
    for result in summary.results:
        real = training.attack_success_rate(
            models[result.ref].model, trigger, data.test.x, data.test.y
        )
        status = reg.show(result.ref).status
        rate = "-" if result.rate is None else f"{result.rate:.0%}"
        table.add_row(result.ref, result.role, rate, f"{real:.0%}", render.status(status))
        rows.append(
            {
                "ref": result.ref,
                "role": result.role,
                "replayed_rate": result.rate,
                "real_attack_success": round(real, 3),
                "status": status,
            }
        )
    console.print(table)
    console.print(
        f"   {len(summary.confirmed)} descendants confirmed: the trigger sends at least half "
        "of their clean references to its class, 35 points more than the clean base's"
    )
    return rows


def _next_steps(console: Console, root: Path) -> None:
    console.print("\n[bold]Explore this registry yourself[/] (MBOM_HOME points mbom at it):")
    mbom = shutil.which("mbom") or str(Path(sys.executable).parent / "mbom")
    for command in (
        "mbom descendants hub/digits-base@1.0 --deployed",
        "mbom descendants hub/digits-base@1.0",
        "mbom status mail/sorter@0.9",
        "mbom ancestors fraud/amount-ocr@1.3",
        "mbom audit",
    ):
        console.print(f"   MBOM_HOME={root} {command.replace('mbom', mbom, 1)}", markup=False)
    console.print("\n[bold]Or in a browser[/] (the web console; sign in with the token):")
    for command in ("mbom tokens create --user you --role admin", "mbom serve --port 8000"):
        console.print(f"   MBOM_HOME={root} {command.replace('mbom', mbom, 1)}", markup=False)
    console.print("   then open http://127.0.0.1:8000/ (dashboard, flagged base, blast radius)")


def _show_policy(reg: LocalRegistry, console: Console) -> list[str]:
    console.print("\n[bold]5. The registry now refuses the tainted lineage[/]")
    refused = []
    attempts: tuple[tuple[str, Callable[[], object]], ...] = (
        (
            "deploy vision/digits-ft-a@1.0 to prod",
            lambda: reg.deploy("vision/digits-ft-a@1.0", environment="prod", team="fraud"),
        ),
        (
            f"pull {BASE}",
            lambda: reg.pull(BASE, Path(tempfile.mkdtemp(prefix="mbom-pull-")), team="fraud"),
        ),
        (
            "register a new fine-tune of vision/digits-ft-b@1.0",
            lambda: reg.register_model(
                name="fraud/new-app",
                version="1.0",
                manifest=_tiny_manifest(),
                parents=["vision/digits-ft-b@1.0"],
                team="fraud",
            ),
        ),
    )
    for label, attempt in attempts:
        try:
            attempt()
        except PolicyViolation as error:
            console.print(
                f"   {label}: [bold]refused[/] ({error.message.removeprefix('refused: ')})"
            )
            refused.append(f"{label}: {error.message}")
    return refused


def _tiny_manifest() -> Any:
    from registry.manifest import Manifest, ManifestEntry

    return Manifest((ManifestEntry("weights.bin", 3, "0" * 64),))
