"""What-if: the lineage operations written set-based, timed on a benchmark database.

Not product code. It backs the recommendations in ``benchmarks/README.md`` with
figures: the same answers as ``registry.service`` (checked here against it),
computed with a few set-based SQL statements instead of per-row ORM objects
and ``IN (...)`` chunks. Keep a benchmark database and point this at it::

    .venv/bin/python -m benchmarks.lineage_bench --versions 100000 --keep
    .venv/bin/python -m benchmarks.setbased_prototype \\
        --url sqlite:////tmp/mbom-lineage-bench/100000.db
    .venv/bin/python -m benchmarks.setbased_prototype \\
        --url postgresql+psycopg://postgres:postgres@localhost/mbom_bench_100000

Flag and unflag run in transactions that are rolled back, so the database is
left as it was. Variants measured:

* ``deployed_descendants``: one join (closure -> deployment -> artifact
  columns), then the ``via`` pointers of the hits' paths level by level;
* ``descendants``: one join (closure -> artifact columns), paths rebuilt in
  memory;
* ``flag`` (materialised, set-based): for a source with no non-propagating
  edge below it, its infection rows *are* its closure rows, so
  ``INSERT ... SELECT`` from ``lineage_closure``, then one ``UPDATE`` of the
  statuses; the report lists the first ``--report-limit`` changed entries;
* ``flag`` (derived): only the flag row is written; a status is read as
  "is any ancestor actively flagged" through ``ix_closure_descendant``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import Session

from registry.client import LocalRegistry
from registry.db import make_engine, unit_of_work
from registry.identity import Actor, Role
from registry.schemas import DeploymentPublic, LineageEntry, StatusChange
from registry.service import find_inconsistencies

HITS = """
SELECT d.id, d.artifact_id, d.environment, d.team, d.active, d.created_at, d.created_by,
       a.name, a.version, a.status
FROM deployment d JOIN artifact a ON a.id = d.artifact_id
WHERE d.active AND d.artifact_id = :root
UNION ALL
SELECT d.id, d.artifact_id, d.environment, d.team, d.active, d.created_at, d.created_by,
       a.name, a.version, a.status
FROM lineage_closure c CROSS JOIN deployment d CROSS JOIN artifact a
WHERE c.ancestor_id = :root AND d.artifact_id = c.descendant_id AND a.id = d.artifact_id
  AND d.active
"""
BELOW = """
SELECT c.descendant_id, c.depth, c.via_id, a.name, a.version, a.kind, a.status, a.team
FROM lineage_closure c JOIN artifact a ON a.id = c.descendant_id
WHERE c.ancestor_id = :root
"""
NON_PROPAGATING_BELOW = """
SELECT 1 FROM edge e
WHERE e.relation = 'evaluated_on'
  AND (e.parent_id = :x
       OR e.parent_id IN (SELECT descendant_id FROM lineage_closure WHERE ancestor_id = :x))
LIMIT 1
"""
WANTED_STATUS = """
CASE WHEN EXISTS (SELECT 1 FROM flag f WHERE f.artifact_id = a.id AND f.active)
       THEN 'compromised'
     WHEN NOT EXISTS (SELECT 1 FROM infection i WHERE i.artifact_id = a.id) THEN 'clean'
     WHEN EXISTS (SELECT 1 FROM infection i WHERE i.artifact_id = a.id AND NOT EXISTS (
            SELECT 1 FROM clearance c
            WHERE c.artifact_id = i.artifact_id AND c.source_id = i.source_id AND c.active))
       THEN 'infected'
     ELSE 'cleared' END
"""
# Driven from the closure index (the source and its descendants), never a scan of artifact.
CHANGES = f"""
SELECT a.id, a.status AS before, {WANTED_STATUS} AS after
FROM (SELECT descendant_id AS id FROM lineage_closure WHERE ancestor_id = :x
      UNION ALL SELECT :x) AS affected
CROSS JOIN artifact a WHERE a.id = affected.id
"""
UPDATE_STATUS = f"""
UPDATE artifact SET status = changes.after
FROM ({CHANGES}) AS changes
WHERE artifact.id = changes.id AND changes.before <> changes.after
"""
DERIVED_STATUS = """
SELECT f.artifact_id FROM lineage_closure c
JOIN flag f ON f.artifact_id = c.ancestor_id AND f.active
WHERE c.descendant_id = :node
"""
DERIVED_TAINTED = """
SELECT count(DISTINCT c.descendant_id) FROM flag f
JOIN lineage_closure c ON c.ancestor_id = f.artifact_id WHERE f.active
"""
DEEPEST = """
SELECT descendant_id FROM lineage_closure WHERE ancestor_id = :root
ORDER BY depth DESC, descendant_id LIMIT 1
"""


def _root(session: Session, ref: str) -> tuple[int, str]:
    name, version = ref.rsplit("@", 1)
    row = session.execute(
        text("SELECT id FROM artifact WHERE name = :n AND version = :v"), {"n": name, "v": version}
    ).one()
    return int(row[0]), ref


def _ids_clause(session: Session, column: str, ids: Sequence[int]) -> tuple[str, dict[str, Any]]:
    """``column`` in a list of ids, as one bound parameter (an array, or JSON on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        return f"{column} = ANY(:ids)", {"ids": list(ids)}
    return f"{column} IN (SELECT value FROM json_each(:ids))", {"ids": str(list(ids))}


def deployed_descendants(session: Session, ref: str) -> list[DeploymentPublic]:
    """Active deployments of ``ref`` and its descendants, with shortest paths."""
    root, root_ref = _root(session, ref)
    hits = session.execute(text(HITS), {"root": root}).all()
    via: dict[int, int] = {}
    refs = {root: root_ref}
    frontier = sorted({hit[1] for hit in hits} - {root})
    while frontier:  # at most the depth of the lineage: one query per level
        clause, params = _ids_clause(session, "c.descendant_id", frontier)
        rows = session.execute(text(
            "SELECT c.descendant_id, c.via_id, a.name, a.version FROM lineage_closure c "
            f"JOIN artifact a ON a.id = c.descendant_id WHERE c.ancestor_id = :root AND {clause}"
        ), {"root": root, **params}).all()
        for node, parent, name, version in rows:
            via[node], refs[node] = parent, f"{name}@{version}"
        frontier = sorted({parent for _, parent, _, _ in rows} - refs.keys())

    def path(node: int) -> list[str]:
        chain = [node]
        while chain[-1] != root:
            chain.append(via[chain[-1]])
        return [refs[n] for n in reversed(chain)]

    found = [
        DeploymentPublic(id=h[0], ref=f"{h[7]}@{h[8]}", environment=h[2], team=h[3], status=h[9],
                         active=h[4], created_at=h[5], created_by=h[6], path=path(h[1]))
        for h in hits
    ]
    return sorted(found, key=lambda d: (len(d.path), d.team, d.environment, d.ref))


def _entries(session: Session, root: int, root_ref: str,
             only: set[int] | None = None, limit: int | None = None) -> list[LineageEntry]:
    rows = session.execute(text(BELOW), {"root": root}).all()
    info = {row[0]: row for row in rows}
    refs = {row[0]: f"{row[3]}@{row[4]}" for row in rows} | {root: root_ref}
    paths: dict[int, list[str]] = {root: [root_ref]}

    def path(node: int) -> list[str]:
        chain = [node]
        while chain[-1] not in paths:
            chain.append(info[chain[-1]][2])
        for index in range(len(chain) - 1, 0, -1):
            paths[chain[index - 1]] = [*paths[chain[index]], refs[chain[index - 1]]]
        return paths[node]

    wanted = sorted((row for row in rows if only is None or row[0] in only),
                    key=lambda row: (row[1], row[3], row[4]))[:limit]
    return [LineageEntry(ref=refs[r[0]], kind=r[5], depth=r[1], path=path(r[0]), status=r[6],
                         team=r[7]) for r in wanted]


def descendants(session: Session, ref: str) -> list[LineageEntry]:
    """Every descendant, nearest first, with its shortest path."""
    root, root_ref = _root(session, ref)
    return _entries(session, root, root_ref)


def flag_materialised(session: Session, ref: str, report_limit: int | None) -> StatusChange:
    """Flag with set-based writes of infection rows and statuses."""
    root, root_ref = _root(session, ref)
    if session.execute(text(NON_PROPAGATING_BELOW), {"x": root}).first() is not None:
        raise RuntimeError("a non-propagating edge below: the general recompute is needed")
    session.execute(text(
        "INSERT INTO flag (artifact_id, reason, actor, previous_finding, active, created_at) "
        "VALUES (:x, 'what-if', 'bench', 'unscanned', true, CURRENT_TIMESTAMP)"), {"x": root})
    session.execute(text("UPDATE artifact SET finding = 'compromised' WHERE id = :x"), {"x": root})
    session.execute(text(
        "INSERT INTO infection (artifact_id, source_id, depth, via_id) "
        "SELECT descendant_id, ancestor_id, depth, via_id FROM lineage_closure "
        "WHERE ancestor_id = :x"), {"x": root})
    return _status_change(session, root, root_ref, "compromised", report_limit)


def unflag_materialised(session: Session, ref: str, report_limit: int | None) -> StatusChange:
    """Unflag: delete the source's infection rows, recompute the statuses set-based."""
    root, root_ref = _root(session, ref)
    session.execute(text("UPDATE flag SET active = false WHERE artifact_id = :x AND active"),
                    {"x": root})
    session.execute(text("UPDATE artifact SET finding = 'unscanned' WHERE id = :x"), {"x": root})
    session.execute(text("DELETE FROM infection WHERE source_id = :x"), {"x": root})
    return _status_change(session, root, root_ref, "clean", report_limit)


def _status_change(session: Session, root: int, root_ref: str, status: str,
                   report_limit: int | None) -> StatusChange:
    changed = {node for node, before, after in session.execute(text(CHANGES), {"x": root})
               if before != after and node != root}
    session.execute(text(UPDATE_STATUS), {"x": root})
    entries = _entries(session, root, root_ref, only=changed, limit=report_limit)
    return StatusChange(ref=root_ref, status=status, changed=entries,
                        deployments=deployed_descendants(session, root_ref))


def _insert_flag(session: Session, root: int) -> None:
    session.execute(text(
        "INSERT INTO flag (artifact_id, reason, actor, previous_finding, active, created_at) "
        "VALUES (:x, 'what-if', 'bench', 'unscanned', true, CURRENT_TIMESTAMP)"), {"x": root})


def flag_derived(session: Session, ref: str) -> list[DeploymentPublic]:
    """Flag when statuses are derived on read: one row, then the blast radius."""
    _insert_flag(session, _root(session, ref)[0])
    return deployed_descendants(session, ref)


def derived_read(session: Session, ref: str, query: str) -> Any:
    """With ``ref`` flagged (in this transaction): a derived status read."""
    root, _ = _root(session, ref)
    _insert_flag(session, root)
    node = session.execute(text(DEEPEST), {"root": root}).scalar_one()
    started = time.perf_counter()
    session.execute(text(query), {"node": node}).all()
    return time.perf_counter() - started


# --- measuring --------------------------------------------------------------------------


def _time(engine: Engine, function: Callable[[Session], Any], runs: int,
          rollback: bool) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        with unit_of_work(engine) as session:
            _no_jit(session)
            result = function(session)
            if rollback:
                session.rollback()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def _read_times(engine: Engine, ref: str, query: str, runs: int) -> list[float]:
    """The query's own time, each run in a rolled-back transaction that flags ``ref``."""
    seconds = []
    for _ in range(runs):
        with unit_of_work(engine) as session:
            _no_jit(session)
            seconds.append(derived_read(session, ref, query))
            session.rollback()
    return seconds


def _no_jit(session: Session) -> None:
    # PostgreSQL's JIT compiles the set-based statements for ~1 s: useless for OLTP.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


def _line(label: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"{label:<58} p50 {statistics.median(ordered) * 1000:8.1f} ms   "
            f"p95 {p95 * 1000:8.1f} ms   (n={len(ordered)})")


def _check(engine: Engine, ref: str) -> list[str]:
    """The what-if answers equal the service's, and the flagged state is consistent."""
    registry = LocalRegistry(engine, Actor("bench", Role.ADMIN))
    problems = []
    with unit_of_work(engine) as session:
        hits, below = deployed_descendants(session, ref), descendants(session, ref)
    if hits != registry.deployed_descendants(ref):
        problems.append("deployed_descendants differs from the service")
    service = registry.descendants(ref)
    if sorted(below, key=lambda e: e.ref) != sorted(service, key=lambda e: e.ref):
        problems.append("descendants differs from the service")
    with unit_of_work(engine) as session:
        _no_jit(session)
        flag_materialised(session, ref, None)
        session.flush()
        problems += [f"after flag: {p}" for p in find_inconsistencies(session)[:3]]
        unflag_materialised(session, ref, None)
        problems += [f"after unflag: {p}" for p in find_inconsistencies(session)[:3]]
        session.rollback()
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Time each variant; non-zero if it does not answer as the service does."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="a database kept by lineage_bench --keep")
    parser.add_argument("--ref", default="org0/base0@1.0", help="the base (seed 0's biggest)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--report-limit", type=int, default=100,
                        help="changed entries listed by a flag (the rest counted)")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison")
    args = parser.parse_args(argv)
    engine = make_engine(args.url)
    ref, runs = args.ref, args.runs
    problems = [] if args.no_check else _check(engine, ref)
    measured = [
        ("deployed_descendants, set-based",
         _time(engine, lambda s: deployed_descendants(s, ref), runs, False)[0]),
        ("descendants, one join",
         _time(engine, lambda s: descendants(s, ref), max(3, runs // 4), False)[0]),
        ("flag, set-based, full report of changed entries",
         _time(engine, lambda s: flag_materialised(s, ref, None), 3, True)[0]),
        (f"flag, set-based, report of {args.report_limit} entries + count",
         _time(engine, lambda s: flag_materialised(s, ref, args.report_limit), 3, True)[0]),
        ("flag, derived statuses (flag row + blast radius)",
         _time(engine, lambda s: flag_derived(s, ref), 5, True)[0]),
        ("derived status of its deepest descendant (base flagged)",
         _read_times(engine, ref, DERIVED_STATUS, runs)),
        ("derived: count every tainted node (base flagged)",
         _read_times(engine, ref, DERIVED_TAINTED, 5)),
    ]
    print(f"{args.url}  base {ref}")
    for label, seconds in measured:
        print(_line(label, seconds))
    if args.no_check:
        print("agreement with the service: not checked (--no-check)")
    else:
        print("agreement with the service: " + ("; ".join(problems) or "identical answers, "
                                                   "no inconsistency after flag/unflag"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
