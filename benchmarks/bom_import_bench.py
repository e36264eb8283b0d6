"""Time ``bom import`` of a generated CycloneDX ML-BOM with N model components.

The document is what ``mbom bom export`` writes: every model a component with
one file (so it registers with a manifest, not as a placeholder), a parent
chosen among the earlier models (a tree about log3(N) deep), and every tenth
model trained on a dataset component of its own. It is imported into a fresh
registry through the service (``import_cyclonedx``), once, and timed::

    .venv/bin/python -m benchmarks.bom_import_bench --components 15000 100000
    .venv/bin/python -m benchmarks.bom_import_bench --components 100000 \\
        --url postgresql+psycopg://postgres:postgres@localhost/postgres

With ``--profile`` it prints the 25 costliest functions (cumulative).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from registry.audit_key import KEY_FILENAME, AuditKeyFile
from registry.bom import import_cyclonedx
from registry.db import make_engine, migrate, unit_of_work
from registry.identity import Actor, Role
from registry.service.audit import bind_key

ACTOR = Actor(user="bench", role=Role.ADMIN)


def document(models: int) -> dict[str, Any]:
    """A CycloneDX document with ``models`` model components (and a dataset per ten)."""
    components: list[dict[str, Any]] = []
    for i in range(models):
        components.append(_model(i))
        if i % 10 == 0:
            components.append(_dataset(i))
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": components}


def _model(i: int) -> dict[str, Any]:
    digest = hashlib.sha256(f"weights {i}".encode()).hexdigest()
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": f"model:bench/m{i}@1",
        "name": f"bench/m{i}",
        "version": "1",
        "supplier": {"name": "bench"},
        "components": [
            {
                "type": "file",
                "name": "model.safetensors",
                "hashes": [{"alg": "SHA-256", "content": digest}],
                "properties": [{"name": "mbom:size", "value": str(1000 + i)}],
            }
        ],
    }
    if i:
        parent = (i - 1) // 3
        component["pedigree"] = {
            "ancestors": [
                {
                    "type": "machine-learning-model",
                    "name": f"bench/m{parent}",
                    "version": "1",
                    "properties": [{"name": "mbom:relation", "value": "finetune"}],
                }
            ]
        }
    if i % 10 == 0:
        component["modelCard"] = {"modelParameters": {"datasets": [{"ref": f"dataset:d{i}@1"}]}}
    return component


def _dataset(i: int) -> dict[str, Any]:
    return {
        "type": "data",
        "bom-ref": f"dataset:d{i}@1",
        "name": f"d{i}",
        "version": "1",
        "hashes": [{"alg": "SHA-256", "content": hashlib.sha256(f"d{i}".encode()).hexdigest()}],
    }


def fresh_url(base: str | None, workdir: Path) -> tuple[str, Any]:
    """A fresh database URL (a SQLite file, or a new PostgreSQL database) and its cleanup."""
    if base is None:
        return f"sqlite:///{workdir / f'{uuid.uuid4().hex}.db'}", lambda: None
    name = f"mbom_bom_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(base).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return make_url(base).set(database=name).render_as_string(hide_password=False), drop


def run(models: int, url: str | None, *, profile: bool) -> float:
    """Seconds to import a ``models``-model BOM into a fresh registry."""
    doc = document(models)
    with tempfile.TemporaryDirectory() as workdir:
        database, drop = fresh_url(url, Path(workdir))
        # Keyed like every registry the CLI or a server opens: one HMAC per audit event.
        engine = bind_key(make_engine(database), AuditKeyFile(Path(workdir) / KEY_FILENAME))
        migrate(engine)
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        with unit_of_work(engine) as session:
            registered = import_cyclonedx(session, doc, actor=ACTOR)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        assert len(registered) == models + (models + 9) // 10
        engine.dispose()
        drop()
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    return elapsed


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and print one line per size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--components", type=int, nargs="+", default=[1000])
    parser.add_argument("--url", help="a PostgreSQL URL (default: a fresh SQLite file)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    backend = "postgresql" if args.url else "sqlite"
    for models in args.components:
        seconds = run(models, args.url, profile=args.profile)
        per = seconds / models * 1000
        print(f"{backend} {models} models: {seconds:.1f} s ({per:.2f} ms per model)", flush=True)


if __name__ == "__main__":
    main()
