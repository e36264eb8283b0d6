"""Lineage queries and compromise propagation on a hub-sized registry, SQLite and PostgreSQL.

Run from the repository root with the project's virtualenv::

    .venv/bin/python -m benchmarks.lineage_bench                      # 100k, both backends
    .venv/bin/python -m benchmarks.lineage_bench --versions 300000 --backends postgres --json

For each backend it

1. generates a hub-shaped lineage (:mod:`benchmarks.hubgen`, deterministic from
   ``--seed``) and writes all but the last ``--register-sample`` versions with
   the bulk loader (:mod:`benchmarks.bulkload`, which writes exactly what the
   service would; ``--verify-versions`` re-checks that on this backend first);
2. registers the last ``--register-sample`` versions through the service
   (``LocalRegistry.register_model(...)``, one transaction each) and
   deploys theirs: the registration throughput;
3. picks the model with the most descendants and times, through
   ``LocalRegistry.call`` (transaction included), ``deployed_descendants``
   (``mbom descendants --deployed``) and ``descendants``, then ``flag`` (the
   propagation) and ``unflag`` (the reset);
4. answers the same two questions with networkx as the baseline: loading all
   edges from the database into a graph per query, and on a graph already in
   memory (both with :func:`lineage.shortest_paths_from`, paths included, no
   names) - and checks that both ways find the same descendants and paths.

Progress goes to stderr; the table (or ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import networkx as nx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from benchmarks import bulkload
from benchmarks.hubgen import Hub, generate, summarize
from lineage import shortest_paths_from
from registry.client import LocalRegistry
from registry.db import make_engine, migrate
from registry.identity import Actor, Role

DEFAULT_PG_URL = "postgresql+psycopg://postgres:postgres@localhost/postgres"
TARGET_QUERY_P95_S = 0.100
TARGET_PROPAGATION_S = 1.0
ACTOR = Actor(user="bench", role=Role.ADMIN)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=100_000, help="versions in the hub")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument("--pg-url",
                        default=os.environ.get("MBOM_BENCH_POSTGRES_URL", DEFAULT_PG_URL),
                        help="a PostgreSQL server URL; a fresh database is created on it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--register-sample", type=int, default=2000,
                        help="versions registered through the service (timed)")
    parser.add_argument("--runs", type=int, default=30,
                        help="timed runs of descendants --deployed (and of the in-memory baseline)")
    parser.add_argument("--descendants-runs", type=int, default=20,
                        help="timed runs of the full descendants listing")
    parser.add_argument("--flag-repeats", type=int, default=3, help="flag/unflag cycles")
    parser.add_argument("--nx-runs", type=int, default=5,
                        help="runs of the load-everything networkx baseline")
    parser.add_argument("--verify-versions", type=int, default=300,
                        help="check the bulk loader against the service on this many (0: skip)")
    parser.add_argument("--workdir", type=Path, default=None, help="where SQLite files go")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write cProfile stats of each operation to this directory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--table-from", type=Path, default=None, metavar="JSON",
                        help="only print the table of an earlier --json output")
    return parser.parse_args(argv)


def log(message: str) -> None:
    """Progress, on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Timings:
    """Seconds of repeated runs of one operation."""

    seconds: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        """Linear interpolation between the closest ranks (numpy's default)."""
        ordered = sorted(self.seconds)
        position = (len(ordered) - 1) * q / 100
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    def to_json(self) -> dict[str, Any]:
        """p50, p95, min, max and the runs, in seconds."""
        return {"runs": len(self.seconds), "p50": self.p50, "p95": self.p95,
                "min": min(self.seconds), "max": max(self.seconds), "seconds": self.seconds}


def timed(function: Callable[[], Any], timings: Timings) -> Any:
    """Run ``function`` once and record its wall time."""
    started = time.perf_counter()
    result = function()
    timings.seconds.append(time.perf_counter() - started)
    return result


@dataclass
class BackendResult:
    """Everything measured on one backend."""

    backend: str
    versions: int
    base: str = ""
    descendants: int = 0
    deployed_hits: int = 0
    closure_rows: int = 0
    database_bytes: int = 0
    bulk_load_s: float = 0.0
    loader_verified: str = "skipped"
    register: Timings = field(default_factory=Timings)
    deploy: Timings = field(default_factory=Timings)
    deployed_query: Timings = field(default_factory=Timings)
    descendants_query: Timings = field(default_factory=Timings)
    flag: Timings = field(default_factory=Timings)
    unflag: Timings = field(default_factory=Timings)
    nx_load_deployed: Timings = field(default_factory=Timings)
    nx_load_descendants: Timings = field(default_factory=Timings)
    nx_memory_deployed: Timings = field(default_factory=Timings)
    nx_memory_descendants: Timings = field(default_factory=Timings)
    nx_graph_build_s: float = 0.0
    agreement: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        return {key: value.to_json() if isinstance(value, Timings) else value
                for key, value in ((k, getattr(self, k)) for k in asdict(self))}


# --- databases -------------------------------------------------------------------------


@contextmanager
def fresh_database(backend: str, args: argparse.Namespace, label: str) -> Iterator[Engine]:
    """An empty, migrated registry on ``backend``; dropped afterwards unless ``--keep``."""
    if backend == "sqlite":
        workdir = args.workdir or Path(tempfile.gettempdir()) / "mbom-lineage-bench"
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"{label}.db"
        _remove_sqlite(path)
        engine = make_engine(f"sqlite:///{path}")
        cleanup: Callable[[], None] = lambda: _remove_sqlite(path)  # noqa: E731
    elif backend == "postgres":
        name = f"mbom_bench_{label}".replace("-", "_")
        admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {name}"))
        url = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
        engine = make_engine(url)

        def cleanup() -> None:
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin.dispose()
    else:
        raise SystemExit(f"unknown backend {backend!r}: use sqlite and/or postgres")
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        if not args.keep:
            cleanup()


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def database_bytes(engine: Engine) -> int:
    """The size of the registry's database on disk."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            query = text("SELECT pg_database_size(current_database())")
            return int(connection.execute(query).scalar_one())
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
        size = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int(pages * size)


def verify_loader(backend: str, args: argparse.Namespace) -> str:
    """Register a small hub both ways on ``backend``; the tables must be identical."""
    hub = generate(args.verify_versions, seed=args.seed + 1)
    with fresh_database(backend, args, f"verify-service-{args.verify_versions}") as service, \
            fresh_database(backend, args, f"verify-bulk-{args.verify_versions}") as bulk:
        for engine in (service, bulk):
            bulkload.create_teams(LocalRegistry(engine, ACTOR), hub)
        bulkload.load_through_service(LocalRegistry(service, ACTOR), hub, 0, len(hub))
        bulkload.bulk_load(bulk, hub, len(hub), actor=ACTOR)
        problems = bulkload.differences(service, bulk)
        if not LocalRegistry(bulk, ACTOR).verify_chain().ok:
            problems.append("the bulk-loaded audit chain does not verify")
    if problems:
        raise SystemExit("bulk loader differs from the service:\n" + "\n".join(problems))
    return f"identical tables for {len(hub)} versions"


# --- the measured run ------------------------------------------------------------------


def run_backend(backend: str, hub: Hub, args: argparse.Namespace) -> BackendResult:
    """Load the hub on one backend and measure everything there."""
    result = BackendResult(backend=backend, versions=len(hub))
    if args.verify_versions:
        log(f"{backend}: checking the bulk loader against the service "
            f"({args.verify_versions} versions)")
        result.loader_verified = verify_loader(backend, args)
    with fresh_database(backend, args, f"{len(hub)}") as engine:
        registry = LocalRegistry(engine, ACTOR)
        load(engine, registry, hub, args, result)
        base_id, result.descendants = biggest_base(engine)
        result.base = hub.ref(base_id - 1)
        log(f"{backend}: base {result.base} has {result.descendants} descendants")
        profiler = Profiler(args.profile, backend)
        measure_queries(registry, result, args, profiler)
        measure_propagation(engine, registry, result, args, profiler)
        measure_networkx(engine, registry, hub, result, base_id, args)
        result.closure_rows = count_rows(engine, "lineage_closure")
        result.database_bytes = database_bytes(engine)
    return result


def load(engine: Engine, registry: LocalRegistry, hub: Hub, args: argparse.Namespace,
         result: BackendResult) -> None:
    """Bulk-load the hub but its tail, then register the tail through the service (timed)."""
    sample = min(args.register_sample, len(hub))
    split = len(hub) - sample
    bulkload.create_teams(registry, hub)
    log(f"{result.backend}: bulk-loading {split} versions")
    started = time.perf_counter()
    counts = bulkload.bulk_load(engine, hub, split, actor=ACTOR)
    result.bulk_load_s = time.perf_counter() - started
    log(f"{result.backend}: {counts} in {result.bulk_load_s:.1f} s; "
        f"registering {sample} through the service")
    for node in range(split, len(hub)):
        timed(lambda node=node: bulkload.register_node(registry, hub, node), result.register)
    for deployment in bulkload.deployments_of(hub, split, len(hub)):
        timed(lambda d=deployment: bulkload.deploy_node(registry, hub, d), result.deploy)


def biggest_base(engine: Engine) -> tuple[int, int]:
    """The model with the most descendants: (id, count)."""
    with engine.connect() as connection:
        row = connection.execute(text(
            "SELECT c.ancestor_id, count(*) AS n FROM lineage_closure c "
            "JOIN artifact a ON a.id = c.ancestor_id WHERE a.kind = 'model' "
            "GROUP BY c.ancestor_id ORDER BY n DESC, c.ancestor_id LIMIT 1"
        )).one()
    return int(row[0]), int(row[1])


def count_rows(engine: Engine, table: str) -> int:
    """Rows in a table."""
    with engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def measure_queries(registry: LocalRegistry, result: BackendResult, args: argparse.Namespace,
                    profiler: Profiler) -> None:
    """``descendants --deployed`` and ``descendants`` of the base, warm, ``--runs`` times each.

    Like ``mbom serve`` at start-up, the objects alive before timing (here also the
    generated hub) are frozen out of the garbage collector's full collections.
    """
    gc.collect()
    gc.freeze()
    for verb, timings, runs in (
        ("deployed_descendants", result.deployed_query, args.runs),
        ("descendants", result.descendants_query, args.descendants_runs),
    ):
        for _ in range(2):  # warm the caches (page cache, SQLAlchemy statement cache)
            registry.call(verb, result.base)
        log(f"{result.backend}: timing {verb} x{runs}")
        for _ in range(runs):
            # Only the last answer is kept: a server drops each one once it is sent, and
            # thirty answers held at once would make the collector's work grow run by run.
            answer = timed(lambda verb=verb: registry.call(verb, result.base), timings)
        profiler.run(verb, lambda verb=verb: registry.call(verb, result.base))
        if verb == "deployed_descendants":
            result.deployed_hits = len(answer)
        elif len(answer) != result.descendants:
            result.agreement.append(f"descendants returned {len(answer)}, "
                                    f"closure has {result.descendants}")


def measure_propagation(engine: Engine, registry: LocalRegistry, result: BackendResult,
                        args: argparse.Namespace, profiler: Profiler) -> None:
    """``flag`` the base (every descendant becomes infected), then ``unflag`` it, repeatedly."""
    reason = "benchmark: backdoor found"
    for repeat in range(args.flag_repeats):
        log(f"{result.backend}: flag/unflag {repeat + 1}/{args.flag_repeats}")
        change = timed(lambda: registry.flag(result.base, reason=reason), result.flag)
        infected = _status_count(engine, "infected")
        if infected != result.descendants or len(change.changed) != result.descendants:
            result.agreement.append(f"flag infected {infected} (reported {len(change.changed)}), "
                                    f"expected {result.descendants}")
        timed(lambda: registry.unflag(result.base, reason=reason), result.unflag)
        if _status_count(engine, "clean") != result.versions:
            result.agreement.append("unflag left artifacts not clean")
    profiler.run("flag", lambda: registry.flag(result.base, reason=reason))
    profiler.run("unflag", lambda: registry.unflag(result.base, reason=reason))


def _status_count(engine: Engine, status: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(
            text("SELECT count(*) FROM artifact WHERE status = :s"), {"s": status}
        ).scalar_one())


# --- the networkx baseline -------------------------------------------------------------


def load_graph(engine: Engine) -> nx.DiGraph:
    """Every edge of the registry, into a graph with its relation (one query)."""
    graph = nx.DiGraph()
    with engine.connect() as connection:
        edges = connection.execute(text("SELECT parent_id, child_id, relation FROM edge"))
        graph.add_edges_from((p, c, {"relation": r}) for p, c, r in edges)
    return graph


def load_deployments(engine: Engine) -> dict[int, list[tuple[str, str]]]:
    """Active deployments by artifact id."""
    found: dict[int, list[tuple[str, str]]] = {}
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT artifact_id, environment, team FROM deployment WHERE active")
        )
        for artifact, environment, team in rows:
            found.setdefault(artifact, []).append((environment, team))
    return found


def nx_descendants(graph: nx.DiGraph, base: int) -> dict[int, tuple[int, ...]]:
    """Descendants of ``base`` with their shortest paths."""
    return shortest_paths_from(graph, base)


def nx_deployed(graph: nx.DiGraph, deployments: dict[int, list[tuple[str, str]]],
                base: int) -> list[tuple[int, str, str, tuple[int, ...]]]:
    """Deployments of ``base`` and its descendants, each with the path from ``base``."""
    paths = {base: (base,), **shortest_paths_from(graph, base)}
    return [(node, environment, team, paths[node])
            for node, rows in deployments.items() if node in paths
            for environment, team in rows]


def measure_networkx(engine: Engine, registry: LocalRegistry, hub: Hub, result: BackendResult,
                     base: int, args: argparse.Namespace) -> None:
    """The baseline, both ways, and a check that it agrees with the service."""
    log(f"{result.backend}: networkx, loading all edges per query x{args.nx_runs}")
    for _ in range(args.nx_runs):
        timed(lambda: nx_deployed(load_graph(engine), load_deployments(engine), base),
              result.nx_load_deployed)
        timed(lambda: nx_descendants(load_graph(engine), base), result.nx_load_descendants)
    started = time.perf_counter()
    graph, deployments = load_graph(engine), load_deployments(engine)
    result.nx_graph_build_s = time.perf_counter() - started
    log(f"{result.backend}: networkx, graph in memory x{args.runs}")
    for _ in range(args.runs):
        hits = timed(lambda: nx_deployed(graph, deployments, base), result.nx_memory_deployed)
        below = timed(lambda: nx_descendants(graph, base), result.nx_memory_descendants)
    result.agreement.extend(_disagreements(registry, hub, result, below, hits))


def _disagreements(registry: LocalRegistry, hub: Hub, result: BackendResult,
                   below: dict[int, tuple[int, ...]],
                   hits: list[tuple[int, str, str, tuple[int, ...]]]) -> list[str]:
    """Both ways must find the same descendants, deployments and shortest paths."""
    def refs(path: Sequence[int]) -> tuple[str, ...]:
        return tuple(hub.ref(node - 1) for node in path)

    problems = []
    service_paths = {e.ref: tuple(e.path) for e in registry.descendants(result.base)}
    nx_paths = {hub.ref(node - 1): refs(path) for node, path in below.items()}
    if service_paths != nx_paths:
        differing = sum(1 for ref in service_paths.keys() | nx_paths.keys()
                        if service_paths.get(ref) != nx_paths.get(ref))
        problems.append(f"descendants: {differing} differ between the service and networkx")
    service_hits = sorted((d.ref, d.environment, d.team, tuple(d.path))
                          for d in registry.deployed_descendants(result.base))
    nx_hits = sorted((hub.ref(node - 1), env, team, refs(path)) for node, env, team, path in hits)
    if service_hits != nx_hits:
        problems.append(f"deployments: service finds {len(service_hits)}, networkx "
                        f"{len(nx_hits)}, {len(set(service_hits) ^ set(nx_hits))} differ")
    return problems


# --- profiling ------------------------------------------------------------------------


class Profiler:
    """With ``--profile DIR``: cProfile one more run of an operation, write and print its top."""

    def __init__(self, directory: Path | None, backend: str) -> None:
        self.directory, self.backend = directory, backend

    def run(self, name: str, function: Callable[[], Any]) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        profile = cProfile.Profile()
        profile.runcall(function)
        target = self.directory / f"{self.backend}-{name}.pstats"
        profile.dump_stats(target)
        print(f"\n--- cProfile {self.backend} {name} (top 15 by cumulative time) ---",
              file=sys.stderr)
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(15)


# --- the report ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "0") if Path("/proc/meminfo").exists() else "0"
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu": model,
        "memory_gib": round(int(memory) / 2**20, 1), "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version, "networkx": nx.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def postgres_version(url: str) -> str:
    """The server's version string, or why there is none."""
    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            found = str(connection.execute(text("SHOW server_version")).scalar_one())
        engine.dispose()
        return found
    except Exception as exc:  # noqa: BLE001 - only reported
        return f"unavailable ({type(exc).__name__})"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.01 else f"{seconds * 1000:.1f}"


def report(results: list[BackendResult], summary: dict[str, Any], host: dict[str, Any]) -> str:
    """The table for the README, plus targets and the checks."""
    lines = [
        f"Hub: {summary['versions']:,} versions ({summary['models']:,} models, "
        f"{summary['datasets']} datasets, {summary['roots']:,} roots, "
        f"{summary['merges']:,} merges, "
        f"{summary['edges']:,} edges, depth <= {summary['max_depth']}, "
        f"{summary['deployed_versions']:,} versions deployed {summary['deployments']:,} times), "
        f"seed {summary['seed']}",
        f"Machine: {host['nproc']} CPUs, {host['cpu']}, {host['memory_gib']} GiB, "
        f"Python {host['python']}, SQLite {host['sqlite']}, PostgreSQL {host['postgres']}, "
        f"networkx {host['networkx']}, load average at start {host['load_average']}, "
        f"{host['date']}",
        "",
        "| backend | versions | descendants of base | deployed hits | --deployed p50 / p95 ms "
        "| descendants p50 / p95 ms | flag (propagation) s | unflag s | register/s (p50 ms) "
        "| nx load-per-query --deployed / descendants ms "
        "| nx in-memory --deployed / descendants ms "
        "| nx-load / service (--deployed p50) | nx-memory / service |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        flag = f"{r.flag.p50:.2f} (max {max(r.flag.seconds):.2f})"
        unflag = f"{r.unflag.p50:.2f} (max {max(r.unflag.seconds):.2f})"
        rate = len(r.register.seconds) / sum(r.register.seconds)
        lines.append(
            f"| {r.backend} | {r.versions:,} | {r.descendants:,} | {r.deployed_hits:,} "
            f"| {_ms(r.deployed_query.p50)} / {_ms(r.deployed_query.p95)} "
            f"| {_ms(r.descendants_query.p50)} / {_ms(r.descendants_query.p95)} "
            f"| {flag} | {unflag} | {rate:.0f} ({_ms(r.register.p50)}) "
            f"| {_ms(r.nx_load_deployed.p50)} / {_ms(r.nx_load_descendants.p50)} "
            f"| {_ms(r.nx_memory_deployed.p50)} / {_ms(r.nx_memory_descendants.p50)} "
            f"| {r.nx_load_deployed.p50 / r.deployed_query.p50:.1f}x "
            f"| {r.nx_memory_deployed.p50 / r.deployed_query.p50:.2f}x |"
        )
    lines.append("")
    for r in results:
        lines.append(
            f"{r.backend}: base {r.base}; --deployed p95 {_ms(r.deployed_query.p95)} ms "
            f"(target < {_ms(TARGET_QUERY_P95_S)}: "
            f"{'met' if r.deployed_query.p95 < TARGET_QUERY_P95_S else 'MISSED'}); "
            f"propagation worst {max(r.flag.seconds):.2f} s "
            f"(target < {TARGET_PROPAGATION_S:.0f} s: "
            f"{'met' if max(r.flag.seconds) < TARGET_PROPAGATION_S else 'MISSED'}); "
            f"bulk load {r.bulk_load_s:.1f} s, {r.closure_rows:,} closure rows, "
            f"{r.database_bytes / 2**20:.0f} MiB; loader check: {r.loader_verified}; "
            f"service vs networkx: {'; '.join(r.agreement) or 'same descendants and deployments'}"
        )
    return "\n".join(lines)


def results_from_json(saved: dict[str, Any]) -> list[BackendResult]:
    """The results of an earlier ``--json`` run."""
    results = []
    for data in saved["results"]:
        result = BackendResult(backend=data["backend"], versions=data["versions"])
        for key, value in data.items():
            is_timings = isinstance(value, dict) and "seconds" in value
            setattr(result, key, Timings(value["seconds"]) if is_timings else value)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Generate, load, measure on each backend, print; non-zero when answers disagree."""
    args = parse_args(argv)
    if args.table_from:
        saved = json.loads(args.table_from.read_text())
        print(report(results_from_json(saved), saved["hub"], saved["machine"]))
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    host = machine()
    host["postgres"] = postgres_version(args.pg_url) if "postgres" in backends else "-"
    log(f"generating {args.versions:,} versions (seed {args.seed})")
    started = time.perf_counter()
    hub = generate(args.versions, seed=args.seed)
    summary = summarize(hub).to_json() | {"seed": args.seed,
                                          "generate_s": round(time.perf_counter() - started, 2)}
    # The harness's own objects (the hub) must not slow the product's garbage collections.
    gc.collect()
    gc.freeze()
    results = [run_backend(backend, hub, args) for backend in backends]
    host["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps({"machine": host, "hub": summary,
                          "results": [r.to_json() for r in results]}, indent=2))
    else:
        print(report(results, summary, host))
    return 1 if any(r.agreement for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
