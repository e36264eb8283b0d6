"""Admission: the static scan decides what registration does with a model."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from registry.client import LocalRegistry
from registry.errors import PermissionDenied, PolicyViolation
from registry.identity import Actor, Role
from registry.manifest import hash_tree
from scanning.static import scan_path


class Payload:
    """Pickles to a call of os.system (never unpickled here)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo mbom-test-pwned",))


def write_model(root: Path, kind: str) -> Path:
    root.mkdir(parents=True)
    if kind == "clean":
        weights = {"w": np.ones((2, 2), dtype=np.float32)}
        (root / "model.safetensors").write_bytes(safetensors.numpy.save(weights))
    elif kind == "malicious":
        (root / "pytorch_model.bin").write_bytes(pickle.dumps({"state": Payload()}, protocol=4))
    else:  # suspicious: an import that is not known to be safe, but no code-execution route
        (root / "extra.pkl").write_bytes(pickle.dumps(Path("x"), protocol=2))
    (root / "config.json").write_text('{"architecture": "tiny"}')
    return root


def register(reg: LocalRegistry, path: Path, name: str, **options: object) -> object:
    return reg.register_model(name=name, version="1", manifest=hash_tree(path),
        scan=scan_path(path), **options,
    )


def test_clean_scan_sets_the_finding(reg: LocalRegistry, tmp_path: Path) -> None:
    result = register(reg, write_model(tmp_path / "m", "clean"), "m")
    assert (result.finding, result.status) == ("clean", "clean")
    assert reg.status_report("m@1").scan["verdict"] == "clean"


def test_malicious_scan_quarantines_and_propagates(reg: LocalRegistry, tmp_path: Path) -> None:
    result = register(reg, write_model(tmp_path / "evil", "malicious"), "evil")
    assert (result.finding, result.status) == ("compromised", "compromised")
    report = reg.status_report("evil@1")
    assert report.flags[0].reason.startswith("static scan: malicious:")
    assert "system" in report.flags[0].reason
    finding = report.scan["findings"][0]
    assert (finding["file"], finding["severity"]) == ("pytorch_model.bin", "malicious")
    decisions = reg.list_decisions()
    assert [(d.subject, d.team, d.verdict) for d in decisions] == [("evil@1", None, "block")]
    # A descendant recorded later (with an approver's override) inherits the compromise.
    child = register(
        reg, write_model(tmp_path / "child", "clean"), "child", parents=["evil@1"],
        override="forensics copy",
    )
    assert child.status == "infected"


def test_suspicious_scan_is_refused_without_override(reg: LocalRegistry, tmp_path: Path) -> None:
    path = write_model(tmp_path / "odd", "suspicious")
    assert scan_path(path).verdict.value == "suspicious"
    with pytest.raises(PolicyViolation, match="static scan says odd@1 is suspicious"):
        register(reg, path, "odd")
    assert reg.list_artifacts() == []
    publisher = LocalRegistry(reg.engine, Actor("bob", Role.PUBLISHER))
    with pytest.raises(PermissionDenied, match="override"):
        register(publisher, path, "odd", override="looks fine")
    result = register(reg, path, "odd", override="pathlib.PosixPath is inert")
    assert (result.finding, result.status) == ("suspicious", "clean")
    overrides = [e for e in reg.list_events() if e.operation == "policy.override"]
    assert overrides[0].details["reason"] == "pathlib.PosixPath is inert"


def test_cli_register_quarantines_with_exit_1(tmp_path: Path) -> None:
    mbom = Path(sys.executable).parent / "mbom"
    env = {**os.environ, "MBOM_HOME": str(tmp_path / "home")}
    path = write_model(tmp_path / "evil", "malicious")
    scan = subprocess.run([mbom, "scan", path], env=env, capture_output=True, text=True)
    assert scan.returncode == 1
    assert "pickle.global" in scan.stdout
    done = subprocess.run(
        [mbom, "register", path, "--name", "evil", "--version", "1"],
        env=env, capture_output=True, text=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "mbom: error: evil@1 is quarantined: the static scan found malicious content "
        "(it is recorded as compromised and blocked for every team)"
    ]
    status = subprocess.run(
        [mbom, "status", "evil@1"], env=env, capture_output=True, text=True, check=True
    )
    assert "compromised" in status.stdout
