"""Every module of registry, lineage and scanning imports on its own, in a fresh process.

An import circle hides while something else is imported first (the test suite
imports the packages in one order); ``python -c "import registry.bom"`` failed so
for a while. ``lint-imports`` forbids circles between modules statically
(``[tool.importlinter]`` in pyproject.toml); this test also catches what it cannot
see, such as a package ``__init__`` that re-exports a module importing it back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("registry", "lineage", "scanning")


def our_modules() -> list[str]:
    """The dotted names of every module and package under ``PACKAGES`` (not migrations)."""
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:
                continue  # Alembic's scripts, run by Alembic, not importable modules
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_finds_the_packages_and_their_modules() -> None:
    modules = our_modules()
    assert {"registry", "registry.bom", "registry.service.flags", "lineage", "scanning"} <= set(
        modules
    )
    assert not [m for m in modules if "migrations" in m]


def test_every_module_imports_alone() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.import_each", *our_modules()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    failures = json.loads(done.stdout)
    assert failures == {}, "\n".join(f"{m}:\n{tb}" for m, tb in failures.items())
