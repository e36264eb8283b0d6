"""The blast-radius index: every active deployment, reachable from each of its ancestors.

"Which deployments descend from this base, and how?" is the question mbom must
answer within 100 ms. ``deployed_path`` holds one row per active deployment and
per ancestor of the deployed version (and the version itself), with the
shortest path between them spelled as references, so the answer is one index
range scan on the ancestor whose cost follows the deployments hit, not the
base's descendants (21k at 100k versions, 173k at 1M).

The rows are derived state, kept in the transaction that changes what they
derive from: a deployment starts or ends, a model gains late parents (its
closure below changes), or a placeholder takes its registered version (the
references on paths through it change). :func:`differences` recomputes them
from the closure; ``find_inconsistencies`` reports any disagreement.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import delete, insert
from sqlalchemy import select as core_select
from sqlmodel import Session, col

from registry.service._idset import among
from registry.service.graph import descendant_rows, labels_of, paths_up
from registry.service.refs import ref_of
from registry.tables import DeployedPath, Deployment, LineageClosure

Row = tuple[int, int, int, tuple[str, ...]]  # (ancestor, deployment, depth, path)


def add(session: Session, deployment: Deployment) -> None:
    """Index a new active deployment."""
    _insert(session, _rows(session, [(deployment.id or 0, deployment.artifact_id)]))


def remove(session: Session, deployment: Deployment) -> None:
    """Forget an ended deployment."""
    session.execute(delete(DeployedPath).where(col(DeployedPath.deployment_id) == deployment.id))


def refresh_below(session: Session, artifact_id: int) -> None:
    """Re-derive the rows of every deployment of ``artifact_id`` and its descendants."""
    below = {artifact_id, *descendant_rows(session, artifact_id)}
    deployments = _active(session, below)
    if not deployments:
        return
    ids = [deployment for deployment, _ in deployments]
    session.execute(delete(DeployedPath).where(among(col(DeployedPath.deployment_id), ids)))
    _insert(session, _rows(session, deployments))


def rebuild(session: Session) -> None:
    """Derive every row afresh (the migration that introduced the table fills it so)."""
    session.execute(delete(DeployedPath))
    _insert(session, _rows(session, _active(session, None)))


def differences(session: Session) -> list[str]:
    """Where the stored rows differ from a recomputation from the closure."""
    table = DeployedPath.__table__.c  # type: ignore[attr-defined]
    stored = {
        (ancestor, deployment, depth, tuple(path))
        for ancestor, deployment, depth, path in session.connection().execute(
            core_select(table.ancestor_id, table.deployment_id, table.depth, table.path)
        )
    }
    expected = set(_rows(session, _active(session, None)))
    return [
        f"deployed path {row[:3]} {'missing' if row in expected else 'not expected'}"
        for row in sorted(stored ^ expected)
    ]


def _active(session: Session, artifacts: Collection[int] | None) -> list[tuple[int, int]]:
    query = core_select(col(Deployment.id), col(Deployment.artifact_id)).where(
        col(Deployment.active)
    )
    if artifacts is not None:
        query = query.where(among(col(Deployment.artifact_id), artifacts))
    rows = session.connection().execute(query).all()
    return [(deployment or 0, artifact) for deployment, artifact in rows]


def _rows(session: Session, deployments: Iterable[tuple[int, int]]) -> list[Row]:
    """The rows of the given ``(deployment, artifact)`` pairs, from the closure."""
    deployments = list(deployments)
    targets = {artifact for _, artifact in deployments}
    if not targets:
        return []
    closure = LineageClosure.__table__.c  # type: ignore[attr-defined]
    ancestors: dict[int, list[int]] = {target: [] for target in targets}
    for ancestor, target in session.connection().execute(
        core_select(closure.ancestor_id, closure.descendant_id).where(
            among(closure.descendant_id, targets)
        )
    ):
        ancestors[target].append(ancestor)
    paths = paths_up(session, ancestors)
    above = {a for found in ancestors.values() for a in found} | targets
    refs = {node: ref_of(label) for node, label in labels_of(session, above).items()}
    rows: list[Row] = []
    for deployment, target in deployments:
        rows.append((target, deployment, 0, (refs[target],)))
        for ancestor, path in paths[target].items():
            rows.append((ancestor, deployment, len(path) - 1, tuple(refs[n] for n in path)))
    return rows


def _insert(session: Session, rows: list[Row]) -> None:
    if rows:
        session.execute(
            insert(DeployedPath),
            [
                {"ancestor_id": a, "deployment_id": d, "depth": depth, "path": list(path)}
                for a, d, depth, path in rows
            ],
        )
