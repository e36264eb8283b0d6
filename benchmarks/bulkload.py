"""Load a generated hub into a registry: through the service, or in bulk.

Registering 100,000 versions one transaction at a time takes long, so the
benchmark writes most of the hub straight into the tables and registers only a
sample through the service. :func:`bulk_load` writes exactly the rows the
service would have written for the same registrations in the same order:
artifacts (same ids), edges, closure rows (shortest depth; ``via`` the child's
parent on a shortest path, the smallest on a tie), deployments and the
hash-chained audit events. :func:`differences` compares two registries table
by table (timestamps and hashes aside), which is how
``tests/registry/test_bench_loader.py`` and ``--verify-versions`` check the
loader against the service.

Both paths expect the teams to exist already (:func:`create_teams`), so that
the audit chain starts the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, text
from sqlmodel import Session

from benchmarks.hubgen import DATASET, Hub, ancestries
from lineage import Relation
from registry.client import LocalRegistry
from registry.identity import Actor
from registry.service import deployed_paths
from registry.service.audit import GENESIS, event_hash
from registry.tables import (
    Artifact,
    AuditEvent,
    Deployment,
    Edge,
    Infection,
    LineageClosure,
    SQLModel,
    Team,
    utcnow,
)

ARTIFACT_COLUMNS = (
    "id", "kind", "name", "version", "publisher", "source", "format", "team", "digest",
    "manifest", "total_size", "finding", "status", "placeholder", "created_at", "created_by",
)
EDGE_COLUMNS = ("parent_id", "child_id", "relation")
CLOSURE_COLUMNS = ("ancestor_id", "descendant_id", "depth", "via_id")
DEPLOYMENT_COLUMNS = (
    "id", "artifact_id", "environment", "team", "active", "created_at", "created_by",
)
AUDIT_COLUMNS = ("id", "seq", "at", "actor", "operation", "subject", "details", "prev_hash", "hash")
Row = tuple[Any, ...]


def create_teams(registry: LocalRegistry, hub: Hub) -> None:
    """Create the hub's teams through the service (both loading paths start so)."""
    for team in hub.shape.teams:
        registry.create_team(name=team)


def register_node(registry: LocalRegistry, hub: Hub, node: int) -> None:
    """Register one node through the service, as a user of ``mbom register`` would."""
    if hub.kind[node] == DATASET:
        registry.register_dataset(name=hub.name(node), version=hub.version(node),
                      digest=hub.dataset_digest(node), source=hub.source(node))
        return
    parents = hub.parents[node]
    registry.register_model(name=hub.name(node), version=hub.version(node),
        manifest=hub.manifest(node), parents=[hub.ref(p) for p in parents],
        relation=Relation(hub.relation[node]) if parents else None,
        datasets=[(hub.ref(d), Relation(use)) for d, use in hub.uses[node]],
        publisher=hub.publisher(node), source=hub.source(node), format="safetensors",
        team=hub.team[node],
    )


def deploy_node(registry: LocalRegistry, hub: Hub, deployment: tuple[int, str, str]) -> None:
    """Record one of the hub's deployments through the service."""
    node, team, environment = deployment
    registry.deploy(hub.ref(node), environment=environment, team=team)


def load_through_service(registry: LocalRegistry, hub: Hub, start: int, stop: int) -> None:
    """Register nodes ``[start, stop)``, then deploy theirs, one call each.

    This is the order :func:`bulk_load` reproduces for ``[0, stop)``.
    """
    for node in range(start, stop):
        register_node(registry, hub, node)
    for deployment in deployments_of(hub, start, stop):
        deploy_node(registry, hub, deployment)


def deployments_of(hub: Hub, start: int, stop: int) -> list[tuple[int, str, str]]:
    """The hub's deployments of nodes ``[start, stop)``, in deployment order."""
    return [d for d in hub.deployments if start <= d[0] < stop]


@dataclass(frozen=True)
class LoadCounts:
    """How many rows :func:`bulk_load` wrote."""

    artifacts: int
    edges: int
    closure: int
    deployments: int
    audit_events: int


def bulk_load(engine: Engine, hub: Hub, stop: int, *, actor: Actor) -> LoadCounts:
    """Write nodes ``[0, stop)`` and their deployments as the service would, in one transaction.

    The registry must hold the hub's teams and nothing else yet.
    """
    with engine.begin() as connection:
        _require_empty(connection)
        writer = _writer(connection)
        chain = _AuditChain(connection, actor)
        at = utcnow()
        artifacts = writer(Artifact, ARTIFACT_COLUMNS, _artifact_rows(hub, stop, actor, at))
        edges = writer(Edge, EDGE_COLUMNS, _edge_rows(hub, stop))
        closure = writer(LineageClosure, CLOSURE_COLUMNS, _closure_rows(hub, stop))
        deployed = deployments_of(hub, 0, stop)
        deployments = writer(Deployment, DEPLOYMENT_COLUMNS,
                             _deployment_rows(deployed, actor, at))
        events = writer(AuditEvent, AUDIT_COLUMNS,
                        chain.rows(_audit_entries(hub, stop, deployed)))
        # The deployed-path index, derived from what was just written by the service's rule.
        deployed_paths.rebuild(Session(bind=connection))
        if connection.dialect.name == "postgresql":
            for table in ("artifact", "deployment", "audit_event"):
                connection.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                ))
    settle(engine)
    return LoadCounts(artifacts, edges, closure, deployments, events)


def settle(engine: Engine) -> None:
    """Leave the database as a registry that has been running a while would be.

    PostgreSQL: what autovacuum does soon after a big load (fresh planner
    statistics, visibility map). SQLite: the WAL checkpointed into the main
    file, as the automatic checkpoints keep it; a 100 MB WAL left behind by one
    huge transaction would slow every read.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    else:
        raw = engine.raw_connection()  # autocommit: no transaction may hold the WAL open
        try:
            busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                raise RuntimeError("the WAL checkpoint after the bulk load was blocked")
        finally:
            raw.close()


def _require_empty(connection: Connection) -> None:
    if connection.execute(select(Artifact.id).limit(1)).first() is not None:
        raise RuntimeError("bulk_load needs a registry with no artifacts yet")


Writer = Callable[[type[SQLModel], Sequence[str], Iterable[Row]], int]


def _writer(connection: Connection) -> Writer:
    """Insert rows as fast as the backend allows: COPY on PostgreSQL, executemany on SQLite."""
    raw = connection.connection.dbapi_connection
    assert raw is not None
    postgres = connection.dialect.name == "postgresql"

    def write(table: type[SQLModel], columns: Sequence[str], rows: Iterable[Row]) -> int:
        name = table.__tablename__  # type: ignore[attr-defined]
        names = ", ".join(f'"{column}"' for column in columns)
        cursor = raw.cursor()
        count = 0
        if postgres:
            with cursor.copy(f"COPY {name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
        else:
            marks = ", ".join("?" for _ in columns)
            for batch in _batches(_sqlite_values(rows), 50_000):
                cursor.executemany(f"INSERT INTO {name} ({names}) VALUES ({marks})", batch)
                count += len(batch)
        cursor.close()
        return count

    return write


def _sqlite_values(rows: Iterable[Row]) -> Iterator[Row]:
    # What SQLAlchemy's SQLite types store: naive "YYYY-MM-DD HH:MM:SS.ffffff", 0/1, JSON text.
    for row in rows:
        yield tuple(
            value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime)
            else int(value) if isinstance(value, bool) else value
            for value in row
        )


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _artifact_rows(hub: Hub, stop: int, actor: Actor, at: datetime) -> Iterator[Row]:
    for node in range(stop):
        name, version = hub.name(node), hub.version(node)
        if hub.kind[node] == DATASET:
            yield (node + 1, DATASET, name, version, None, hub.source(node), None, None,
                   hub.dataset_digest(node), None, None, "unscanned", "clean", False, at,
                   actor.user)
            continue
        manifest = hub.manifest(node)
        entries = json.dumps([[e.path, e.size, e.sha256] for e in manifest.entries])
        yield (node + 1, "model", name, version, hub.publisher(node), hub.source(node),
               "safetensors", hub.team[node], manifest.digest, entries, manifest.total_size,
               "unscanned", "clean", False, at, actor.user)


def _edge_rows(hub: Hub, stop: int) -> Iterator[Row]:
    for node in range(stop):
        for parent, relation in hub.links(node):
            yield (parent + 1, node + 1, relation)


def _closure_rows(hub: Hub, stop: int) -> Iterator[Row]:
    for node, ancestry in ancestries(hub, stop):
        for ancestor, (depth, via) in ancestry.items():
            yield (ancestor + 1, node + 1, depth, via + 1)


def _deployment_rows(
    deployed: Sequence[tuple[int, str, str]], actor: Actor, at: datetime
) -> Iterator[Row]:
    for number, (node, team, environment) in enumerate(deployed, start=1):
        yield (number, node + 1, environment, team, True, at, actor.user)


def _audit_entries(
    hub: Hub, stop: int, deployed: Sequence[tuple[int, str, str]]
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(operation, subject, details)`` exactly as the service records them."""
    for node in range(stop):
        if hub.kind[node] == DATASET:
            yield "register", hub.ref(node), {
                "kind": DATASET, "digest": hub.dataset_digest(node), "source": hub.source(node)}
            continue
        yield "register", hub.ref(node), {
            "kind": "model", "digest": hub.manifest(node).digest, "team": hub.team[node],
            "parents": [[hub.ref(p), r] for p, r in hub.links(node)], "signed_by": None,
            "scan": None,  # registered without a static scan report
            "behavioral": None,
            "stored": False,  # metadata-only: the generator writes no files
            "scanned_by": "registry",
        }
    for node, team, environment in deployed:
        yield "deploy", hub.ref(node), {"environment": environment, "team": team}


class _AuditChain:
    """Continues the registry's audit chain from its newest event."""

    def __init__(self, connection: Connection, actor: Actor) -> None:
        last = connection.execute(
            select(AuditEvent.id, AuditEvent.seq, AuditEvent.hash)
            .order_by(AuditEvent.seq.desc()).limit(1)  # type: ignore[attr-defined]
        ).first()
        self.next_id, self.seq, self.prev_hash = (
            (last[0] + 1, last[1], last[2]) if last else (1, 0, GENESIS)
        )
        self.actor = actor

    def rows(self, entries: Iterable[tuple[str, str, dict[str, Any]]]) -> Iterator[Row]:
        for operation, subject, details in entries:
            self.seq += 1
            at = utcnow()
            digest = event_hash(self.prev_hash, self.seq, at, self.actor.user, operation,
                                subject, details)
            yield (self.next_id, self.seq, at, self.actor.user, operation, subject,
                   json.dumps(details), self.prev_hash, digest)
            self.next_id += 1
            self.prev_hash = digest


#: Per table: the columns compared (timestamps and hashes differ by nature).
COMPARED: dict[type[SQLModel], tuple[str, ...]] = {
    Artifact: tuple(c for c in ARTIFACT_COLUMNS if c != "created_at"),
    Edge: EDGE_COLUMNS,
    LineageClosure: CLOSURE_COLUMNS,
    Infection: ("artifact_id", "source_id", "depth", "via_id"),
    Deployment: tuple(c for c in DEPLOYMENT_COLUMNS if c != "created_at"),
    Team: ("id", "name", "require_approval"),
    AuditEvent: ("id", "seq", "actor", "operation", "subject", "details"),
}


def snapshot(engine: Engine) -> dict[str, list[Row]]:
    """The compared columns of every compared table, sorted."""
    found: dict[str, list[Row]] = {}
    with engine.connect() as connection:
        for table, columns in COMPARED.items():
            sql_table = table.__table__  # type: ignore[attr-defined]
            rows = connection.execute(select(*(sql_table.c[c] for c in columns))).all()
            found[sql_table.name] = sorted(
                (tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
                       for v in row) for row in rows),
                key=repr,
            )
    return found


def differences(left: Engine, right: Engine, *, limit: int = 5) -> list[str]:
    """Where two registries' tables differ (empty: identical), a few rows per table."""
    a, b = snapshot(left), snapshot(right)
    problems = []
    for table in a:
        only_left = sorted(set(a[table]) - set(b[table]), key=repr)[:limit]
        only_right = sorted(set(b[table]) - set(a[table]), key=repr)[:limit]
        if only_left or only_right or len(a[table]) != len(b[table]):
            problems.append(
                f"{table}: {len(a[table])} vs {len(b[table])} rows; "
                f"only left {only_left}; only right {only_right}"
            )
    return problems
