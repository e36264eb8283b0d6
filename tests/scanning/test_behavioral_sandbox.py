"""Running the behavioral scan safely: profiles, the loader, the sandbox and the api.

Real tiny digit models (``registry.demo_training``) are trained once per module and
written as safetensors directories and ``torch.export`` archives. The sandbox's
plumbing (time, memory, network, crashes, garbage) is tested with a stand-in worker
script that isolates itself exactly as the real worker does (it calls
:func:`scanning.behavioral.worker.isolate`) and then misbehaves; the real worker is
tested end to end on the real models. Its kernel confinement is tested with payloads
that run inside the real worker when it opens the model (as code smuggled past the
static scan would), and with a probe that tries every escape straight at the kernel.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import pickle
import re
import shutil
import socket
import struct
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import save as save_safetensors

from registry import demo_training as dt
from scanning.behavioral import _confine, api, sandbox, worker
from scanning.behavioral.loader import (
    LoadedModel,
    ModelFormat,
    ModelLoadError,
    NotScannable,
    load_model,
    model_format,
)
from scanning.behavioral.profile import (
    MIN_REFERENCES,
    ProfileHints,
    profile_from_npz,
    profile_hints_from_config,
    profile_to_npz,
    reference_digest,
)
from scanning.behavioral.report import (
    BehavioralReport,
    BehaviorVerdict,
    ReplayOutcome,
    ReplayReport,
    ScanProfile,
    TriggerPattern,
)
from scanning.behavioral.sandbox import Limits, SandboxFailure, run_worker

INPUT_SHAPE = (1, 8, 8)
TRIGGER = dt.Trigger(target=3, size=2, row=6, col=6)

# --- fixtures: real tiny models -------------------------------------------------------------------


@pytest.fixture(scope="module")
def references() -> tuple[np.ndarray, np.ndarray]:
    """60 clean held-out digits and their labels."""
    return dt.reference_inputs(60, seed=1)


@pytest.fixture(scope="module")
def profile(references: tuple[np.ndarray, np.ndarray]) -> ScanProfile:
    """The digits' scan profile with 60 references."""
    x, y = references
    return ScanProfile(INPUT_SHAPE, (0.0, 1.0), 10, x, y)


@pytest.fixture(scope="module")
def clean_model() -> dt.TrainedModel:
    """A small clean CNN."""
    return dt.train_base(width=6, seed=1, epochs=6)


@pytest.fixture(scope="module")
def backdoored_model() -> dt.TrainedModel:
    """A small CNN with a 2x2 patch backdoor to class 3."""
    return dt.train_base(width=6, seed=2, epochs=6, backdoor=TRIGGER)


@pytest.fixture(scope="module")
def models(
    tmp_path_factory: pytest.TempPathFactory,
    clean_model: dt.TrainedModel,
    backdoored_model: dt.TrainedModel,
) -> dict[str, Path]:
    """Each model as a safetensors directory and as a torch.export archive (dynamic batch)."""
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for name, trained in (("clean", clean_model), ("backdoored", backdoored_model)):
        paths[f"{name}_dir"] = dt.save_model_dir(
            trained, root / name, name=name, base_model=None, datasets=[]
        )
        paths[f"{name}_pt2"] = export_archive(trained.model, root / f"{name}.pt2", dynamic=True)
    paths["static_pt2"] = export_archive(clean_model.model, root / "static.pt2", dynamic=False)
    return paths


def export_archive(model: torch.nn.Module, path: Path, *, dynamic: bool) -> Path:
    """``torch.export`` the model on a batch of 4 digits and save it as ``.pt2``."""
    example = (torch.rand(4, *INPUT_SHAPE),)
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(model.eval(), example, dynamic_shapes=shapes), path)
    return path


def npz(**arrays: Any) -> bytes:
    """``.npz`` bytes holding ``arrays``."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def good_arrays(n: int = 30) -> dict[str, np.ndarray]:
    """Valid reference arrays for a (1, 8, 8) model with 10 classes."""
    rng = np.random.default_rng(0)
    x = rng.random((n, *INPUT_SHAPE), dtype=np.float32)
    return {"x": x, "y": np.arange(n, dtype=np.int64) % 10}


# --- profile --------------------------------------------------------------------------------------

PROFILE_META = {"value_range": (0.0, 1.0), "num_classes": 10}


def test_profile_reads_valid_references_and_round_trips() -> None:
    arrays = good_arrays()
    profile = profile_from_npz(npz(**arrays), **PROFILE_META)  # type: ignore[arg-type]
    assert profile.input_shape == INPUT_SHAPE
    assert (profile.value_range, profile.num_classes) == ((0.0, 1.0), 10)
    assert profile.x.dtype == np.float32
    assert profile.y.dtype == np.int64
    again = profile_from_npz(profile_to_npz(profile))  # self-describing: no arguments needed
    assert (again.input_shape, again.value_range, again.num_classes) == (
        profile.input_shape,
        profile.value_range,
        profile.num_classes,
    )
    np.testing.assert_array_equal(again.x, profile.x)
    np.testing.assert_array_equal(again.y, profile.y)
    assert reference_digest(b"abc").startswith("sha256:ba7816bf")


@pytest.mark.parametrize(
    ("x_dtype", "y_dtype"),
    [(np.float64, np.int64), (np.float16, np.int32), (np.float32, np.uint8)],
)
def test_profile_widens_or_narrows_numeric_types_it_can(x_dtype: Any, y_dtype: Any) -> None:
    arrays = good_arrays()
    data = npz(x=arrays["x"].astype(x_dtype), y=arrays["y"].astype(y_dtype))
    profile = profile_from_npz(data, **PROFILE_META)  # type: ignore[arg-type]
    assert profile.x.dtype == np.float32
    assert profile.y.dtype == np.int64
    np.testing.assert_allclose(profile.x, arrays["x"], atol=1e-3)


def _with(**changes: Any) -> bytes:
    arrays: dict[str, Any] = {**good_arrays(), **changes}
    return npz(**{k: v for k, v in arrays.items() if v is not None})


def _nan_x() -> np.ndarray:
    x = good_arrays()["x"].copy()
    x[0, 0, 0, 0] = np.nan
    return x


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (_with(y=None), PROFILE_META, r"lacks array\(s\) \['y'\]"),
        (_with(x=None), PROFILE_META, r"lacks array\(s\) \['x'\]"),
        (_with(x=(good_arrays()["x"] * 255).astype(np.uint8)), PROFILE_META, "must be float32"),
        (_with(y=good_arrays()["y"].astype(np.float32)), PROFILE_META, "int64 class indices"),
        (_with(x=_nan_x()), PROFILE_META, "NaN or infinite"),
        (_with(x=np.full((30, *INPUT_SHAPE), np.inf)), PROFILE_META, "NaN or infinite"),
        (_with(x=good_arrays()["x"] * 2), PROFILE_META, r"outside the value range \[0, 1\]"),
        (_with(y=good_arrays()["y"] + 1), PROFILE_META, r"outside \[0, 10\) for 10 classes"),
        (_with(y=good_arrays()["y"] - 1), PROFILE_META, r"outside \[0, 10\)"),
        (npz(**good_arrays(MIN_REFERENCES - 1)), PROFILE_META, "at least 20"),
        (_with(y=np.zeros(30, dtype=np.int64)), PROFILE_META, "all one class"),
        (_with(y=np.arange(29) % 10), PROFILE_META, "30 inputs but y holds 29"),
        (
            npz(**good_arrays()),
            {**PROFILE_META, "input_shape": (3, 8, 8)},
            r"shape \[30, 1, 8, 8\], expected \[N, \*\[3, 8, 8\]\]",
        ),
        (
            npz(**good_arrays()),
            {"num_classes": 10},
            "needs value_range: store it in the reference .npz as an array named value_range, "
            "or in the model's config.json",
        ),
        (npz(**good_arrays()), {"value_range": (0.0, 1.0)}, "needs num_classes"),
        (
            _with(num_classes=np.int64(12)),
            PROFILE_META,
            "num_classes is 10 in arguments but 12 in the reference .npz",
        ),
        (npz(**good_arrays()), {**PROFILE_META, "value_range": (1.0, 0.0)}, "low < high"),
        (b"not a zip at all", PROFILE_META, r"not an \.npz"),
        (
            _with(y=np.array([object()] * 30, dtype=object)),
            PROFILE_META,
            "not plain numbers",
        ),
    ],
)
def test_profile_refuses_bad_references(data: bytes, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        profile_from_npz(data, **kwargs)


def test_profile_refuses_a_zip_bomb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scanning.behavioral.profile.MAX_REFERENCE_BYTES", 1000)
    with pytest.raises(ValueError, match="expands to .* bytes"):
        profile_from_npz(npz(**good_arrays()), **PROFILE_META)  # type: ignore[arg-type]


def test_object_arrays_are_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (marker.write_text, ("boom",))

    arrays = {**good_arrays(), "y": np.array([Payload()] * 30, dtype=object)}
    with pytest.raises(ValueError, match="not plain numbers"):
        profile_from_npz(npz(**arrays), **PROFILE_META)  # type: ignore[arg-type]
    assert not marker.exists()


def test_profile_takes_shape_range_and_classes_from_the_model_config(
    models: dict[str, Path],
) -> None:
    hints = profile_hints_from_config(models["clean_dir"])
    assert hints == ProfileHints(
        str(models["clean_dir"] / "config.json"), INPUT_SHAPE, (0.0, 1.0), 10
    )
    profile = profile_from_npz(npz(**good_arrays()), config=hints)
    assert (profile.input_shape, profile.num_classes) == (INPUT_SHAPE, 10)
    assert profile_hints_from_config(models["clean_pt2"]) is None


# --- loader ---------------------------------------------------------------------------------------


def _same_predictions(loaded: LoadedModel, original: torch.nn.Module, x: np.ndarray) -> None:
    batch = torch.from_numpy(x)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(batch), original.eval()(batch))


@pytest.mark.parametrize("form", ["clean_dir", "clean_pt2"])
def test_loader_loads_safetensors_and_export_archives(
    form: str,
    models: dict[str, Path],
    clean_model: dt.TrainedModel,
    references: tuple[np.ndarray, np.ndarray],
) -> None:
    loaded = load_model(models[form], input_shape=INPUT_SHAPE, min_batch=60)
    expected = ModelFormat.SAFETENSORS if form.endswith("dir") else ModelFormat.EXPORT
    assert loaded.format is expected is model_format(models[form])
    _same_predictions(loaded, clean_model.model, references[0])


def test_loader_takes_a_weights_file_beside_its_config(
    models: dict[str, Path], clean_model: dt.TrainedModel, references: tuple[Any, Any]
) -> None:
    loaded = load_model(models["clean_dir"] / dt.WEIGHTS_FILE, input_shape=INPUT_SHAPE)
    _same_predictions(loaded, clean_model.model, references[0])


def test_loader_refuses_an_archive_without_a_dynamic_batch(models: dict[str, Path]) -> None:
    with pytest.raises(NotScannable, match="fixed batch size of 4: re-export it"):
        load_model(models["static_pt2"], input_shape=INPUT_SHAPE)


def test_loader_refuses_an_archive_of_another_input_shape(models: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match=r"input shape is \[3, 8, 8\]"):
        load_model(models["clean_pt2"], input_shape=(3, 8, 8))


def _write_dir(root: Path, files: dict[str, bytes | str]) -> Path:
    root.mkdir()
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (root / name).write_bytes(data)
    return root


def _config(**changes: Any) -> str:
    return json.dumps({"architecture": "DigitsCNN", "width": 6, "num_classes": 10, **changes})


@pytest.mark.parametrize(
    ("files", "error", "message"),
    [
        ({"model.onnx": b"\x08\x07"}, NotScannable, "no .pt2 archive and no .safetensors"),
        ({"weights.safetensors": save_safetensors({})}, NotScannable, "need a config.json"),
        (
            {"model.safetensors": save_safetensors({}), "config.json": _config(architecture="X")},
            NotScannable,
            "unknown architecture 'X'.*supported: a torch.export archive",
        ),
        (
            {
                "model.safetensors": save_safetensors({"w": np.zeros(2, np.float32)}),
                "config.json": _config(),
            },
            ModelLoadError,
            "do not fit the DigitsCNN",
        ),
        (
            {"model.safetensors": b"garbage", "config.json": _config()},
            ModelLoadError,
            "not a readable safetensors file",
        ),
    ],
)
def test_loader_refuses_what_it_cannot_load(
    tmp_path: Path, files: dict[str, bytes | str], error: type[Exception], message: str
) -> None:
    folder = _write_dir(tmp_path / "m", files)
    with pytest.raises(error, match=message):
        load_model(folder, input_shape=INPUT_SHAPE)


def test_loader_refuses_a_single_file_of_another_kind(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(NotScannable, match="neither a .pt2 archive nor safetensors.*supported"):
        model_format(tmp_path / "model.bin")


# --- sandbox plumbing, with a stand-in worker that isolates itself like the real one ------------

FAKE_WORKER = r"""
import json, os, signal, sys, time
from pathlib import Path
from scanning.behavioral import worker
behaviour, args = sys.argv[1], worker.parse_args(sys.argv[2:])
confinement = worker.isolate(memory_mb=args.memory_mb, workdir=args.workdir)
progress = worker.ProgressPipe(args.progress_fd)
progress.announce(confinement)
def emit(fraction, message):
    progress(fraction, message)
def send(result):
    worker.send_result(args.result_fd, result)
if behaviour == "sleep":
    emit(0.1, "sleeping"); time.sleep(60)
elif behaviour == "hog":
    hoard = [bytearray(64 * 2**20) for _ in range(64)]
elif behaviour == "shared-hog":
    import mmap
    region = mmap.mmap(-1, 2 * 2**30)
    for offset in range(0, len(region), 4096):
        region[offset] = 1
    time.sleep(60)
elif behaviour == "segfault":
    os.kill(os.getpid(), signal.SIGSEGV)
elif behaviour == "exit3":
    print("something went wrong"); sys.exit(3)
elif behaviour == "garbage":
    os.write(args.result_fd, b"{not json")
elif behaviour == "garbage-report":
    report = {"verdict": "clean", "score": "NaN?"}
    send({"task": "scan", "ok": True, "report": report})
elif behaviour == "no-output":
    pass
elif behaviour == "network":
    import ctypes, socket, struct, subprocess
    port = int(Path(args.workdir / "port").read_text())
    seen = {"applied": confinement.applied}
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2); seen["connect"] = "connected"
    except OSError as exc:
        seen["connect"] = f"{type(exc).__name__}: {exc}"
    try:
        subprocess.run(["true"]); seen["spawn"] = "ran"
    except OSError as exc:
        seen["spawn"] = f"{type(exc).__name__}: {exc}"
    # Straight to the kernel, past the audit hook: seccomp and the namespace stop this.
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(2, 1, 0)
    seen["raw_socket"] = "created" if fd >= 0 else os.strerror(ctypes.get_errno())
    sockaddr = struct.pack("<HH4s8x", 2, socket.htons(port), bytes([127, 0, 0, 1]))
    rc = libc.connect(fd, sockaddr, len(sockaddr))
    seen["raw_connect"] = "connected" if rc == 0 else os.strerror(ctypes.get_errno())
    send({"task": "probe", "ok": True, "seen": seen})
elif behaviour == "progress":
    for step in range(5):
        emit(step / 4, f"step {step}")
    os.write(args.progress_fd, b"not json\n" + json.dumps({"fraction": 7}).encode() + b"\n")
    send({"task": "probe", "ok": True})
"""


def fake(behaviour: str) -> list[str]:
    """The stand-in worker's command prefix for ``behaviour``."""
    return [sys.executable, "-c", FAKE_WORKER, behaviour]


def test_a_worker_past_its_time_is_killed(tmp_path: Path) -> None:
    messages: list[tuple[float, str]] = []
    started = time.monotonic()
    with pytest.raises(SandboxFailure, match="longer than the 1.5 s limit") as failure:
        run_worker(
            tmp_path,
            limits=Limits(timeout_s=1.5),
            progress=lambda *a: messages.append(a),
            command=fake("sleep"),
        )
    assert failure.value.kind == "timeout"
    assert time.monotonic() - started < 10
    assert messages == [(0.1, "sleeping")]


def test_a_worker_allocating_past_its_memory_limit_is_stopped(tmp_path: Path) -> None:
    with pytest.raises(SandboxFailure, match="MemoryError"):
        run_worker(tmp_path, limits=Limits(memory_mb=512), command=fake("hog"))


def test_memory_the_rlimit_does_not_count_is_caught_by_the_parent(tmp_path: Path) -> None:
    # Shared anonymous memory escapes RLIMIT_DATA: the parent's RSS watch stops it.
    with pytest.raises(SandboxFailure, match="more than the 300 MiB limit") as failure:
        run_worker(tmp_path, limits=Limits(memory_mb=300, timeout_s=30), command=fake("shared-hog"))
    assert failure.value.kind == "memory"


def test_the_worker_has_no_network_and_cannot_start_processes(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        (tmp_path / "port").write_text(str(server.getsockname()[1]))
        result = run_worker(tmp_path, limits=Limits(timeout_s=30), command=fake("network"))
        with pytest.raises(TimeoutError):
            server.accept()  # nobody ever got through
    seen = result["seen"]
    assert seen["connect"].startswith("PermissionError: the behavioral scan sandbox refuses")
    assert seen["spawn"].startswith("PermissionError: the behavioral scan sandbox refuses")
    if "seccomp" in seen["applied"]:
        assert seen["raw_socket"] == "Operation not permitted"
    assert seen["raw_connect"] != "connected"


@pytest.mark.parametrize(
    ("behaviour", "kind", "message"),
    [
        ("segfault", "crash", "killed by signal SIGSEGV"),
        ("exit3", "crash", "exited with code 3: something went wrong"),
        ("garbage", "output", "not one JSON object"),
        ("no-output", "output", "without a valid result"),
    ],
)
def test_a_crash_or_garbage_is_a_failure(
    tmp_path: Path, behaviour: str, kind: str, message: str
) -> None:
    with pytest.raises(SandboxFailure, match=message) as failure:
        run_worker(tmp_path, limits=Limits(timeout_s=30), command=fake(behaviour))
    assert failure.value.kind == kind


def test_progress_lines_become_callbacks_and_malformed_ones_are_dropped(tmp_path: Path) -> None:
    messages: list[tuple[float, str]] = []
    run_worker(
        tmp_path,
        limits=Limits(timeout_s=30),
        command=fake("progress"),
        progress=lambda *a: messages.append(a),
    )
    assert messages == [(step / 4, f"step {step}") for step in range(5)]


@pytest.fixture
def worker_is(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make the api start the stand-in worker with a behaviour instead of the real one."""

    def use(behaviour: str) -> None:
        monkeypatch.setattr(sandbox, "_WORKER_COMMAND", tuple(fake(behaviour)))

    return use


@pytest.mark.parametrize("behaviour", ["garbage-report", "segfault", "exit3"])
def test_the_api_turns_every_worker_failure_into_a_scan_error(
    behaviour: str,
    worker_is: Callable[[str], None],
    models: dict[str, Path],
    profile: ScanProfile,
) -> None:
    worker_is(behaviour)
    report = api.scan_model(models["clean_dir"], profile, limits=Limits(timeout_s=30))
    assert report.verdict is BehaviorVerdict.SCAN_ERROR
    assert report.error
    trigger = TriggerPattern(TRIGGER.mask(), np.ones(INPUT_SHAPE, np.float32), 3)
    replay = api.replay_trigger(models["clean_dir"], profile, trigger, limits=Limits(timeout_s=30))
    assert replay.outcome is ReplayOutcome.SCAN_ERROR
    assert not replay.confirmed


# --- admission: nothing the static scan does not pass is ever loaded -----------------------------


class _Touch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def _evil_pt2(clean: Path, target: Path, payload: bytes) -> Path:
    """A copy of a real .pt2 whose pickled sample inputs are replaced with ``payload``."""
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(target, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            out.writestr(
                item, payload if item.filename.endswith("sample_inputs/model.pt") else data
            )
    return target


def test_a_statically_flagged_model_is_never_loaded(
    tmp_path: Path,
    worker_is: Callable[[str], None],
    models: dict[str, Path],
    profile: ScanProfile,
) -> None:
    worker_is("exit3")  # were a worker started, the error would say so
    marker = tmp_path / "executed"
    payload = pickle.dumps(_Touch(marker), protocol=2)
    evil_dir = _write_dir(tmp_path / "evil", {"model.pt": payload, "config.json": _config()})
    evil_pt2 = _evil_pt2(models["clean_pt2"], tmp_path / "evil.pt2", payload)
    for path in (evil_dir, evil_pt2):
        report = api.scan_model(path, profile)
        assert report.verdict is BehaviorVerdict.SCAN_ERROR
        assert report.error is not None
        assert "not loaded: the static scan" in report.error
        assert "malicious" in report.error
        assert "exited with code" not in report.error
    assert not marker.exists()


def test_an_unsupported_model_is_refused_before_any_worker(
    tmp_path: Path, worker_is: Callable[[str], None], profile: ScanProfile
) -> None:
    worker_is("exit3")
    folder = _write_dir(tmp_path / "onnx", {"model.onnx": b"\x08\x07"})
    report = api.scan_model(folder, profile)
    assert report.error is not None
    assert "is not behaviorally scannable" in report.error
    assert str(folder) in report.error
    assert "exited" not in report.error
    missing = api.scan_model(tmp_path / "nowhere", profile)
    assert missing.error is not None
    assert "does not exist" in missing.error


# --- the real worker, end to end ------------------------------------------------------------------


def test_a_model_that_allocates_too_much_is_a_scan_error(
    tmp_path: Path, profile: ScanProfile
) -> None:
    # A config promising a huge model: building it needs ~1 GiB before any weight is read.
    folder = _write_dir(
        tmp_path / "huge",
        {
            "model.safetensors": save_safetensors({"w": np.zeros(2, np.float32)}),
            "config.json": _config(architecture="DigitsMLP", width=16384),
        },
    )
    report = api.scan_model(folder, profile, limits=Limits(memory_mb=700, timeout_s=120))
    assert report.verdict is BehaviorVerdict.SCAN_ERROR
    assert report.error is not None
    assert "ran out of memory" in report.error


def test_the_real_worker_is_stopped_at_its_timeout(
    models: dict[str, Path], profile: ScanProfile
) -> None:
    report = api.scan_model(models["clean_dir"], profile, limits=Limits(timeout_s=0.5))
    assert report.verdict is BehaviorVerdict.SCAN_ERROR
    assert report.error is not None
    assert "longer than the 0.5 s limit" in report.error


def test_relatives_of_the_models_family_calibrate_a_sandboxed_scan(
    models: dict[str, Path], profile: ScanProfile
) -> None:
    stats = {"neural_cleanse": 0.3, "max_margin": 0.3, "patch_trigger": 0.9}
    relatives = [
        {**stats, "family": family} for family in ("convolutional", "dense") for _ in range(3)
    ]
    report = api.scan_model(models["clean_dir"], profile, baseline=relatives)
    assert report.error is None, report.error
    assert report.family in ("convolutional", "dense")
    assert report.calibration == "relatives:3"  # the three of its own family, not all six


def test_scan_finds_the_backdoor_and_its_trigger_in_the_sandbox(
    models: dict[str, Path],
    profile: ScanProfile,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages: list[tuple[float, str]] = []
    with caplog.at_level(logging.WARNING, logger="scanning.behavioral.sandbox"):
        report = api.scan_model(
            models["backdoored_pt2"], profile, progress=lambda *a: messages.append(a)
        )
    assert report.error is None, report.error
    # It ran confined, says how, and warns once for each mechanism this kernel lacks.
    assert {"no_new_privs", "seccomp", "audit_hook", "rlimits"} <= set(report.confinement)
    if _kernel_offers_landlock():
        assert "landlock" in report.confinement
    assert BehavioralReport.from_json(report.to_json()).confinement == report.confinement
    assert len(caplog.records) == len(set(worker.MECHANISMS) - set(report.confinement))
    assert report.verdict in (BehaviorVerdict.COMPROMISED, BehaviorVerdict.SUSPICIOUS)
    assert report.target_class == TRIGGER.target
    assert report.trigger is not None
    assert report.elapsed_s is not None
    assert messages[0] == (0.0, "loading the model")
    assert messages[-1][0] == 1.0
    npz_path, png_path = api.save_trigger(report.trigger, tmp_path / "out")
    assert TriggerPattern.from_npz(npz_path.read_bytes()).target_class == TRIGGER.target
    assert png_path.read_bytes().startswith(b"\x89PNG")


def test_replay_confirms_the_backdoor_and_not_the_clean_model(
    models: dict[str, Path], profile: ScanProfile
) -> None:
    trigger = TriggerPattern(TRIGGER.mask(), np.ones(INPUT_SHAPE, np.float32), TRIGGER.target)
    infected = api.replay_trigger(models["backdoored_dir"], profile, trigger)
    clean = api.replay_trigger(models["clean_dir"], profile, trigger, threshold=0.5)
    assert infected.outcome is ReplayOutcome.MEASURED, infected.error
    assert infected.confirmed
    assert infected.measure is not None
    assert infected.measure.collapsed_class == TRIGGER.target
    assert clean.outcome is ReplayOutcome.MEASURED
    assert not clean.confirmed
    assert ReplayReport.from_json(json.loads(json.dumps(infected.to_json()))) == infected


# --- confinement: what code that got past the static scan can do inside the worker -------------
#
# The static scan is the first line; these payloads assume it was bypassed (a scanner bug, a new
# pickle trick) and run inside the real worker at the moment it opens the model, after it has
# confined itself exactly as it does for every scan. Each attempt must fail in the kernel and the
# scan must end as scan_error; nothing may happen outside the worker.

PAYLOAD_WORKER = r"""
import sys
from scanning.behavioral import worker
payload, argv = sys.argv[1], sys.argv[2:]
run_task = worker._run_task
def run_task_with_payload(task, request, workdir, progress):
    from scanning.behavioral import loader
    load_model = loader.load_model
    def load_with_payload(path, **options):
        exec(payload, {"result_fd": int(argv[argv.index("--result-fd") + 1])})
        return load_model(path, **options)
    loader.load_model = load_with_payload
    return run_task(task, request, workdir, progress)
worker._run_task = run_task_with_payload
sys.exit(worker.main(argv))
"""

_LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
_REFUSE = "raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))\n"


def _payloads(outside: Path, port: int) -> dict[str, str]:
    """Attacks a model's code could try at load time, writing into ``outside`` when they work."""
    marker = str(outside / "escaped")
    sh = f"(ctypes.c_char_p * 4)(b'/bin/sh', b'-c', b'touch {marker}', None)"
    forged = {"task": "scan", "ok": True, "report": {"verdict": "clean", "score": 0.0}}
    return {
        "write outside": f"open({str(outside / 'escaped')!r}, 'w').write('pwned')\n",
        "fork and exec /bin/sh": _LIBC
        + "pid = libc.fork()\n"
        + f"if pid == 0:\n    libc.execv(b'/bin/sh', {sh})\n    os._exit(0)\n"
        + f"if pid < 0:\n    {_REFUSE}",
        "exec /bin/sh in place": _LIBC + f"libc.execv(b'/bin/sh', {sh})\n{_REFUSE}",
        "subprocess": f"import subprocess\nsubprocess.run(['touch', {marker!r}])\n",
        "raw sockets": _LIBC
        + "import socket, struct\n"
        + "packet = libc.socket(17, 3, 0x300)\n"  # AF_PACKET, SOCK_RAW, ETH_P_ALL
        + "tcp = libc.socket(2, 1, 0)\n"
        + f"address = struct.pack('<HH4s8x', 2, socket.htons({port}), bytes([127, 0, 0, 1]))\n"
        + "if packet < 0 or libc.connect(tcp, address, len(address)) != 0:\n"
        + f"    {_REFUSE}",
        # No new library or symbol (no ctypes audit event): only seccomp stands in the way.
        "fork through the worker's own syscall()": "import os\n"
        + "from scanning.behavioral import _confine\n"
        + "number, flags = (57, 0) if os.uname().machine == 'x86_64' else (220, 17)\n"
        + "if _confine._syscall(number, flags, 0, 0, 0, 0) == 0:\n"
        + "    os._exit(0)\n",
        "forged result file": "import json, pathlib\n"
        + f"pathlib.Path('result.json').write_text(json.dumps({forged!r}))\n",
        "forged result on the pipe": "import json, os\n"
        + f"os.write(result_fd, json.dumps({forged!r}).encode())\n",  # then the worker's own
        "attack, then forge and exit": "import json, os, subprocess\n"
        + "try:\n"
        + f"    subprocess.run(['touch', {marker!r}])\n"
        + "except OSError:\n"
        + "    pass\n"
        + f"os.write(result_fd, json.dumps({forged!r}).encode())\n"
        + "os._exit(0)\n",
    }


PAYLOAD_FAILURES = {
    "write outside": r"ran code in the scan sandbox: it tried open\('[^']*/escaped', 'w'",
    "fork and exec /bin/sh": r"it tried ctypes\.dlopen",
    "exec /bin/sh in place": r"it tried ctypes\.dlopen",
    "subprocess": r"it tried subprocess\.Popen",
    "raw sockets": r"it tried ctypes\.dlopen",
    "fork through the worker's own syscall()": "PermissionError.*Operation not permitted",
    "forged result file": r"it tried open\('result\.json', 'w'",
    "forged result on the pipe": "not one JSON object",
    "attack, then forge and exit": r"it tried subprocess\.Popen",
}


@pytest.mark.parametrize("attack", list(PAYLOAD_FAILURES))
def test_a_payload_past_the_static_scan_is_contained_and_the_scan_fails(
    attack: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    models: dict[str, Path],
    profile: ScanProfile,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        payload = _payloads(outside, server.getsockname()[1])[attack]
        command = (sys.executable, "-c", PAYLOAD_WORKER, payload)
        monkeypatch.setattr(sandbox, "_WORKER_COMMAND", command)
        report = api.scan_model(models["clean_dir"], profile, limits=Limits(timeout_s=120))
        with pytest.raises(TimeoutError):
            server.accept()  # nothing reached the network
    assert report.verdict is BehaviorVerdict.SCAN_ERROR
    assert report.error is not None
    assert re.search(PAYLOAD_FAILURES[attack], report.error), report.error
    assert list(outside.iterdir()) == []  # no file written, no /bin/sh ran


class _Exec:
    """A pickle that runs ``code`` when it is loaded."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.code,))


_FORGE_AND_EXIT = (
    "import json, os, sys\n"
    "fd = int(sys.argv[sys.argv.index('--result-fd') + 1])\n"
    "report = {'verdict': 'clean', 'score': 0.0}\n"
    "os.write(fd, json.dumps({'task': 'scan', 'ok': True, 'report': report}).encode())\n"
    "os._exit(0)\n"
)


def _issue_payload(outside: Path) -> str:
    """What the issue saw: write outside, fork and exec /bin/sh, then report itself clean."""
    marker = str(outside / "escaped")
    return (
        _LIBC
        + "try:\n"
        + f"    open({str(outside / 'written')!r}, 'w').write('pwned')\n"
        + "except OSError:\n"
        + "    pass\n"
        + "if libc.fork() == 0:\n"
        + f"    argv = (ctypes.c_char_p * 4)(b'/bin/sh', b'-c', b'touch {marker}', None)\n"
        + "    libc.execv(b'/bin/sh', argv)\n"
        + "    os._exit(0)\n"
        + _FORGE_AND_EXIT
    )


@pytest.mark.parametrize("attack", ["the issue's payload", "forge a clean result and exit"])
def test_a_pickle_payload_in_a_real_pt2_is_caught_in_the_real_worker(
    attack: str, tmp_path: Path, models: dict[str, Path], profile: ScanProfile
) -> None:
    # torch.export.load unpickles an archive's sample inputs when its own reader fails, so a
    # .pt2 can run code on load. Here the static scan (which flags it) is bypassed: the
    # archive goes straight to the real worker, as if the scanner had missed it.
    outside, workdir = tmp_path / "outside", tmp_path / "work"
    outside.mkdir()
    (workdir / "model").mkdir(parents=True)
    code = _issue_payload(outside) if attack == "the issue's payload" else _FORGE_AND_EXIT
    payload = pickle.dumps(_Exec(code), protocol=2)
    evil = _evil_pt2(models["clean_pt2"], workdir / "model" / "evil.pt2", payload)
    with pytest.raises(
        SandboxFailure, match=r"it tried pickle\.find_class\('(__builtin__|builtins)', 'exec'\)"
    ):
        sandbox.scan_in_sandbox(evil, profile, workdir=workdir, limits=Limits(timeout_s=120))
    assert list(outside.iterdir()) == []


PROBE_WORKER = r"""
import ctypes, json, os, socket, sys, threading
from pathlib import Path
from scanning.behavioral import worker
args = worker.parse_args(sys.argv[1:])
confinement = worker.isolate(memory_mb=args.memory_mb, workdir=args.workdir)
worker.ProgressPipe(args.progress_fd).announce(confinement)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
targets = json.loads((args.workdir / "targets.json").read_text())
seen = {}
def attempt(name, action):
    try:
        outcome = action()
    except OSError as exc:
        seen[name] = exc.strerror
    else:
        seen[name] = "done" if outcome is None or outcome >= 0 else os.strerror(ctypes.get_errno())
def raw(number, *arguments):
    return lambda: libc.syscall(number, *arguments)
def thread():
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()
attempt("write scratch", lambda: (args.workdir / "scratch" / "note").write_text("ok") and None)
attempt("write workdir", lambda: (args.workdir / "result.json").write_text("{}") and None)
attempt("write outside", lambda: Path(targets["outside"]).write_text("pwned") and None)
attempt("read outside", lambda: Path(targets["secret"]).read_text() and None)
environ = Path(f"/proc/{os.getppid()}/environ")
attempt("read parent environment", lambda: environ.read_bytes() and None)
attempt("thread", thread)
attempt("fork", libc.fork)
if os.uname().machine == "x86_64":  # raw numbers: fork, and clone (a thread, a new netns)
    attempt("fork syscall", raw(57))
    attempt("thread in a new namespace", raw(56, 0x00010000 | 0x40000000, 0, 0, 0, 0))
attempt("clone3", raw(435, None, 0))
attempt("execve", lambda: libc.execv(b"/bin/true", (ctypes.c_char_p * 2)(b"/bin/true", None)))
attempt("ptrace parent", lambda: libc.ptrace(16, os.getppid(), None, None))  # PTRACE_ATTACH
attempt("signal parent", lambda: libc.kill(os.getppid(), 0))
attempt("socket inet", lambda: libc.socket(2, 1, 0))
attempt("socket inet6", lambda: libc.socket(10, 1, 0))
attempt("socket packet", lambda: libc.socket(17, 3, 0x300))
attempt("socket netlink", lambda: libc.socket(16, 3, 0))
attempt("io_uring", raw(425, 8, None))
attempt("unshare user namespace", lambda: libc.unshare(0x10000000))
worker.send_result(args.result_fd, {"ok": True, "seen": seen})
"""

EPERM, EACCES, ENOSYS = (os.strerror(code) for code in (errno.EPERM, errno.EACCES, errno.ENOSYS))


def _probe(tmp_path: Path, *, wrapper: Sequence[str] = ()) -> dict[str, Any]:
    """Run the probe worker on ``tmp_path/work``; its result (what each attempt came to)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    (tmp_path / "secret").write_text("a token")
    targets = {"outside": str(tmp_path / "escaped"), "secret": str(tmp_path / "secret")}
    (workdir / "targets.json").write_text(json.dumps(targets))
    command = [*wrapper, sys.executable, "-c", PROBE_WORKER]
    return run_worker(workdir, limits=Limits(timeout_s=30), command=command)


def _assert_contained(tmp_path: Path, result: dict[str, Any]) -> None:
    seen, applied = result["seen"], result["confinement"]["applied"]
    assert seen["write scratch"] == seen["thread"] == "done"  # what a scan needs still works
    if "landlock" in applied:
        for name in ("write workdir", "write outside", "read outside"):
            assert seen[name] == EACCES, name
        assert seen["read parent environment"] == EACCES
        assert seen["signal parent"] == EPERM
    if "seccomp" in applied:
        for name in ("fork", "execve", "ptrace parent", "io_uring"):
            assert seen[name] == EPERM, name
        for name in ("fork syscall", "thread in a new namespace"):
            assert seen.get(name, EPERM) == EPERM, name  # x86-64 only
        for family in ("inet", "inet6", "packet", "netlink"):
            assert seen[f"socket {family}"] == EPERM, family
        assert seen["unshare user namespace"] == EPERM
        assert seen["clone3"] == ENOSYS  # so that the C library falls back to a visible clone
    assert not (tmp_path / "escaped").exists()


def _kernel_offers_landlock() -> bool:
    try:
        _confine.landlock_abi()
    except _confine.Unavailable:
        return False
    return True


def test_the_kernel_refuses_every_escape_the_worker_tries(tmp_path: Path) -> None:
    result = _probe(tmp_path)
    applied = result["confinement"]["applied"]
    assert {"no_new_privs", "seccomp", "audit_hook", "rlimits"} <= set(applied)
    if _kernel_offers_landlock():
        assert "landlock" in applied
    _assert_contained(tmp_path, result)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="already unprivileged (every other test shows it) or no setpriv to drop privileges",
)
def test_the_confinement_needs_no_privilege(tmp_path: Path) -> None:
    # Root without a single capability, and unable to regain any: what an ordinary user has.
    drop = ["setpriv", "--securebits=+noroot,+noroot_locked", "--bounding-set=-all"]
    result = _probe(tmp_path, wrapper=[*drop, "--inh-caps=-all"])
    if _kernel_offers_landlock():
        assert "landlock" in result["confinement"]["applied"]
    assert "seccomp" in result["confinement"]["applied"]
    _assert_contained(tmp_path, result)


# A kernel (or a container's own seccomp profile) without Landlock and user namespaces.
WEAKER_KERNEL = r"""
import errno, runpy, sys
from scanning.behavioral import _confine
_confine.install_syscall_errors({444: errno.ENOSYS, "unshare": errno.EPERM})
sys.argv = ["worker", *sys.argv[1:]]
runpy.run_module("scanning.behavioral.worker", run_name="__main__")
"""


def test_a_missing_mechanism_is_reported_and_warned_about_never_silent(
    models: dict[str, Path],
    profile: ScanProfile,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(sandbox, "_WORKER_COMMAND", (sys.executable, "-c", WEAKER_KERNEL))
    with caplog.at_level(logging.WARNING, logger="scanning.behavioral.sandbox"):
        report = api.scan_model(models["clean_dir"], profile, limits=Limits(timeout_s=120))
    assert report.error is None, report.error
    assert report.verdict is not BehaviorVerdict.SCAN_ERROR
    assert "landlock" not in report.confinement
    assert "network_namespace" not in report.confinement
    assert {"seccomp", "audit_hook"} <= set(report.confinement)
    assert report.to_json()["confinement"] == list(report.confinement)
    warnings = [record.getMessage() for record in caplog.records]
    assert any(
        re.search("landlock is not available here.*Landlock is not available", w) for w in warnings
    )
    assert any("network_namespace is not available here" in w for w in warnings)


# --- trigger files and the public surface ---------------------------------------------------------


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = body
        offset += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    return width, height, zlib.decompress(chunks[b"IDAT"])


def test_save_trigger_writes_the_npz_and_a_visible_png(tmp_path: Path) -> None:
    trigger = TriggerPattern(TRIGGER.mask(), np.full(INPUT_SHAPE, 0.5, np.float32), 3)
    npz_path, png_path = api.save_trigger(trigger, tmp_path / "new" / "dir")
    again = TriggerPattern.from_npz(npz_path.read_bytes())
    np.testing.assert_array_equal(again.mask, trigger.mask)
    assert again.target_class == 3
    width, height, pixels = _png_pixels(png_path.read_bytes())
    assert (width, height) == ((3 * 8 + 2) * 16, 8 * 16)  # three panels, 16x, 1-pixel gaps
    assert len(pixels) == height * (1 + 3 * width)
    mask_corner = pixels[1 + 3 * (7 * 16) + (7 * 16) * (1 + 3 * width)]
    assert (pixels[1], mask_corner) == (0, 255)  # mask off at the top left, on at the patch


def test_api_public_names_are_pinned() -> None:
    assert sorted(api.__all__) == [
        "DEFAULT_LIMITS",
        "DEFAULT_REPLAY_THRESHOLD",
        "Limits",
        "read_profile",
        "replay_trigger",
        "save_trigger",
        "scan_model",
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"timeout_s": 0}, "positive number of seconds"), ({"memory_mb": 100}, "at least 256 MiB")],
)
def test_limits_refuse_nonsense(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**fields)
