"""Import each named module in a fresh child process; print the ones that fail, as JSON.

Run as ``python -m tests.import_each MODULE...`` from the repository root
(``tests/test_imports.py`` does). A circular import shows only in the process
that imports one module of the circle first, so every module needs a process of
its own; starting ~140 interpreters that each load torch and FastAPI again takes
minutes. Instead this process loads the third-party packages once (those that
importing all of ``PACKAGES`` pulls in) and forks one child per module: each child
starts with none of our modules imported, exactly as ``python -c "import X"``
would, and pays only for our own code.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

#: Our top-level packages: never preloaded, imported afresh in each child.
PACKAGES = ("registry", "lineage", "scanning")


def third_party_modules(modules: Sequence[str]) -> list[str]:
    """The top-level names of what importing ``modules`` loads that is not ours."""
    probe = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"  # a circle: its child reports it
        "        pass\n"
        "tops = dict.fromkeys(name.partition('.')[0] for name in sys.modules)\n"
        "print(json.dumps(list(tops)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return [name for name in json.loads(out) if name not in PACKAGES]


def preload(names: Sequence[str]) -> None:
    """Import what our modules need from elsewhere, so the children inherit it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: S112 - a child that needs it will report the error
                continue


def import_in_child(module: str, log: Path) -> int:
    """Fork a child that imports ``module`` with its traceback written to ``log``."""
    pid = os.fork()
    if pid:
        return pid
    status = 0
    try:
        with log.open("w") as out:
            try:
                importlib.import_module(module)
            except BaseException:
                traceback.print_exc(file=out)
                status = 1
    finally:
        os._exit(status)


def import_each(modules: Sequence[str], workers: int) -> dict[str, str]:
    """Import every module in its own child, ``workers`` at a time; the failures' tracebacks."""
    failures: dict[str, str] = {}
    running: dict[int, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        logs = {module: Path(tmp) / f"{module}.log" for module in modules}
        for module in modules:
            while len(running) >= workers:
                _reap(running, logs, failures)
            running[import_in_child(module, logs[module])] = module
        while running:
            _reap(running, logs, failures)
    return failures


def _reap(running: dict[int, str], logs: dict[str, Path], failures: dict[str, str]) -> None:
    pid, status = os.wait()
    module = running.pop(pid)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        log = logs[module]
        failures[module] = log.read_text() if log.exists() else f"exit status {code}"


def main(argv: Sequence[str]) -> None:
    """Import each module of ``argv`` afresh; print ``{module: traceback}`` of the failures."""
    modules = list(argv)
    preload(third_party_modules(modules))
    workers = max(1, len(os.sched_getaffinity(0)))
    print(json.dumps(import_each(modules, workers)))  # noqa: T201 - the parent reads it


if __name__ == "__main__":
    main(sys.argv[1:])
