"""``mbom scan --reference``: the real console script on real tiny digit models.

A backdoored and a clean model are trained once for the module (seconds each);
the commands that load a model each start a sandboxed worker (torch import plus
the detectors), so the independent ones run concurrently (``Cli.many``).
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from registry import demo_training as dt
from scanning.behavioral.profile import profile_to_npz
from scanning.behavioral.report import ScanProfile, TriggerPattern
from tests.registry.live_server import serve_in_thread
from tests.registry.test_cli import Cli, cli_env, local_registry

TRIGGER = dt.Trigger(target=3, size=2, row=6, col=6)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A backdoored and a clean model directory, and a reference ``.npz`` of 100 digits."""
    root = tmp_path_factory.mktemp("zoo")
    backdoored = dt.train_base(width=8, seed=3, epochs=8, backdoor=TRIGGER)
    clean = dt.train_base(width=8, seed=4, epochs=8)
    return {
        "backdoored": dt.save_model_dir(
            backdoored, root / "backdoored", name="bd", base_model=None, datasets=[]
        ),
        "clean": dt.save_model_dir(clean, root / "clean", name="ok", base_model=None, datasets=[]),
        "reference": dt.save_reference(root / "reference.npz", n=100),
        "described": self_describing_reference(root / "described.npz"),
    }


def self_describing_reference(path: Path) -> Path:
    """A reference ``.npz`` that carries its input shape, value range and class count."""
    x, y = dt.reference_inputs(40)
    path.write_bytes(profile_to_npz(ScanProfile((1, 8, 8), (0.0, 1.0), 10, x, y)))
    return path


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """``mbom`` run from an empty working directory (scans need no registry)."""
    work = tmp_path / "work"
    work.mkdir()
    return Cli(cli_env(tmp_path), work)


def assert_png(path: Path) -> None:
    """A PNG file of a plausible size for an upscaled 8x8 trigger."""
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert height >= 64
    assert width >= 3 * height


def test_backdoored_is_caught_and_clean_passes(
    cli: Cli, zoo: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "trigger"
    ref = zoo["reference"]
    found, human, clean = cli.many(
        ["scan", zoo["backdoored"], "--reference", ref, "--trigger-out", out, "--json", 1],
        ["scan", zoo["backdoored"], "--reference", ref, 1],
        ["scan", zoo["clean"], "--reference", ref, "--json", 0],
    )
    report = found.json()
    assert report["verdict"] in ("compromised", "suspicious")
    assert report["target_class"] == TRIGGER.target
    assert report["trigger_asr"] >= 0.5
    assert report["score"] is not None
    assert report["trigger"] == {"npz": str(out / "trigger.npz"), "png": str(out / "trigger.png")}
    trigger = TriggerPattern.from_npz((out / "trigger.npz").read_bytes())
    assert trigger.target_class == TRIGGER.target
    assert_png(out / "trigger.png")
    assert report["detectors"]
    assert any(d["flagged"] for d in report["detectors"].values())
    for detector in report["detectors"].values():
        assert set(detector) >= {"statistic", "threshold", "flagged"}
    assert report["static"]["verdict"] == "clean"
    assert report["behavioral"]["verdict"] == report["verdict"]
    assert report["error"] is None

    # Without --json: a summary; without --trigger-out: ./NAME-trigger.
    assert f"behavioral scan: {report['verdict']}" in human.out
    assert f"suspected target class {TRIGGER.target}" in human.out
    assert_png(cli.cwd / "backdoored-trigger" / "trigger.png")

    ok = clean.json()
    assert (ok["verdict"], ok["error"]) == ("clean", None)
    assert (ok["target_class"], ok["trigger"], ok["trigger_asr"]) == (None, None, None)
    assert ok["behavioral"]["verdict"] == "clean"
    assert not (cli.cwd / "clean-trigger").exists()


def test_import_hf_with_a_reference_scans_the_snapshot_on_admission(
    cli: Cli, zoo: dict[str, Path]
) -> None:
    ref = zoo["reference"]
    backdoored, clean = cli.many(
        ["import-hf", zoo["backdoored"], "--name", "acme/bd", "--version", "1",
         "--reference", ref, "--json", 1],
        ["import-hf", zoo["clean"], "--name", "acme/ok", "--version", "1",
         "--reference", ref, "--json", 0],
    )  # fmt: skip
    assert backdoored.json()["model"]["status"] == "compromised"
    assert "acme/bd@1 is quarantined: the behavioral scan found a backdoor" in (
        backdoored.error_line()
    )
    assert clean.json()["model"]["status"] == "clean"
    evidence, profile = cli.many(
        ["status", "acme/bd@1", "--json", 0],
        ["rescan", "acme/ok@1", zoo["clean"], "--json", 0],  # the stored profile is used
    )
    assert evidence.json()["status"] == "compromised"
    assert profile.json()["verdict"] == "clean"


def test_import_hf_inherits_the_profile_of_the_registered_base_its_card_names(
    cli: Cli, zoo: dict[str, Path], tmp_path: Path
) -> None:
    """No --reference: the snapshot's card names a registered base with a profile, and the
    sandboxed scan on admission uses it (a backdoored fine-tune is caught)."""
    backdoored = dt.train_base(width=8, seed=3, epochs=8, backdoor=TRIGGER)
    snapshot = dt.save_model_dir(backdoored, tmp_path / "ft", name="ft",
                                 base_model="acme/base", datasets=[])
    cli("register", zoo["clean"], "--name", "acme/base", "--version", "1",
        "--reference", zoo["reference"], "--json")
    imported = cli("import-hf", snapshot, "--name", "acme/ft", "--version", "1", "--json", code=1)
    model = imported.json()["model"]
    assert (model["status"], model["stored"]) == ("compromised", True)
    assert [(link["ref"], link["created"]) for link in imported.json()["links"]] == [
        ("acme/base@1", False)
    ]
    assert "the behavioral scan found a backdoor" in imported.error_line()


def test_import_hf_with_a_reference_through_a_server(
    cli: Cli, zoo: dict[str, Path], tmp_path: Path
) -> None:
    from registry.api import create_app
    from registry.identity import Role
    from registry.settings import Settings

    url = f"sqlite:///{tmp_path / 'home' / 'registry.db'}"
    reg = local_registry(url)
    token = reg.create_token(user="ci", role=Role.PUBLISHER).token
    with serve_in_thread(create_app(Settings(database_url=url), engine=reg.engine)) as server:
        remote = cli.remote(server, token)
        result = remote("import-hf", zoo["backdoored"], "--name", "acme/bd", "--version", "1",
                        "--reference", zoo["reference"], "--json", code=1).json()
    assert (result["model"]["status"], result["model"]["created_by"]) == ("compromised", "ci")
    assert reg.profile_of("acme/bd@1") is not None
    reg.engine.dispose()


def test_a_statically_malicious_model_is_compromised_without_loading(
    cli: Cli, zoo: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "model.pt").write_bytes(pickle.dumps(Payload(), protocol=2))
    (evil / "config.json").write_text(json.dumps({"architecture": "DigitsCNN"}))
    result = cli("scan", evil, "--reference", zoo["reference"], "--json", code=1)
    report = result.json()
    assert (report["verdict"], report["behavioral"], report["trigger"]) == (
        "compromised",
        None,
        None,
    )
    assert report["static"]["verdict"] == "malicious"
    assert "not loaded" in report["error"]
    assert not marker.exists()


def test_what_cannot_be_scanned_is_a_scan_error(
    cli: Cli, zoo: dict[str, Path], tmp_path: Path
) -> None:
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "model.onnx").write_bytes(b"\x08\x07")
    unsupported, too_slow = cli.many(
        ["scan", onnx, "--reference", zoo["described"], "--json", 2],
        ["scan", zoo["clean"], "--reference", zoo["reference"], "--timeout", "0.5", "--json", 2],
    )
    assert unsupported.json()["verdict"] == "scan_error"
    assert "not behaviorally scannable" in unsupported.json()["error"]
    assert too_slow.json()["verdict"] == "scan_error"
    assert "longer than the 0.5 s limit" in too_slow.json()["error"]
    assert too_slow.json()["behavioral"]["verdict"] == "scan_error"


def bad_reference(tmp_path: Path, **arrays: Any) -> Path:
    """An ``.npz`` holding ``arrays``."""
    path = tmp_path / "bad.npz"
    with path.open("wb") as stream:
        np.savez(stream, **arrays)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reference", "{missing}"], "missing.npz is not a file"),
        (["--reference", "{no_y}"], r"lacks array\(s\) \['y'\]"),
        (["--reference", "{few}"], "only 5 reference inputs: give at least 20"),
        (["--trigger-out", "out"], "apply to the behavioral scan .*add --reference"),
        (["--reference", "{few}", "--memory-limit", "10"], "at least 256 MiB"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    cli: Cli, zoo: dict[str, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    x, y = dt.reference_inputs(5)
    files = {
        "missing": tmp_path / "missing.npz",
        "no_y": bad_reference(tmp_path, x=x),
        "few": (tmp_path / "few.npz"),
    }
    with files["few"].open("wb") as stream:
        np.savez(stream, x=x, y=y)
    result = cli("scan", zoo["clean"], *(a.format(**files) for a in args), code=2)
    assert re.search(message, result.error_line()), result.error_line()
