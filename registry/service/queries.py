"""Lineage questions: descendants and ancestors with paths, and who has them deployed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, distinct, func
from sqlalchemy import select as core_select
from sqlmodel import Session, col

from registry.errors import InvalidInput
from registry.schemas import BlastRadius, BlastRadiusGroup, DeploymentPublic, LineageEntry
from registry.service.exposure import pulls_below
from registry.service.graph import (
    Label,
    ancestor_rows,
    descendant_rows,
    labelled_paths,
    labels_of,
    paths_down,
    paths_up,
)
from registry.service.refs import ref_of, resolve
from registry.service.replays import current_replays
from registry.tables import Artifact, DeployedPath, Deployment


def descendants(
    session: Session, ref: str, *, depth: int | None = None, team: str | None = None
) -> list[LineageEntry]:
    """Every descendant (within ``depth``), nearest first, with its shortest path."""
    _check_depth(depth)
    root = resolve(session, ref)
    rows = descendant_rows(session, root.id or 0, max_depth=depth)
    entries = entries_for(session, root, rows, rows=rows)
    rates = _replay_rates(session, root.id or 0)
    return [
        e.model_copy(update={"replay_rate": rates.get(e.ref)}) if e.ref in rates else e
        for e in entries
        if team is None or e.team == team
    ]


def _replay_rates(session: Session, source: int) -> dict[str, float]:
    """The measured rate of ``source``'s trigger on each descendant it was replayed on."""
    return {
        r.ref: r.rate
        for r in current_replays(session, source=source)
        if r.role == "descendant" and r.rate is not None
    }


def ancestors(session: Session, ref: str, *, depth: int | None = None) -> list[LineageEntry]:
    """Every ancestor (models and datasets, within ``depth``), nearest first, with its path."""
    _check_depth(depth)
    node = resolve(session, ref)
    rows = ancestor_rows(session, node.id or 0, max_depth=depth)
    paths = paths_up(session, {node.id or 0: list(rows)})[node.id or 0]
    known = labels_of(session, [*rows, node.id or 0])
    return _entries(known, {a: paths[a] for a in rows}, [(rows[a][0], a) for a in rows])


def entries_for(
    session: Session,
    root: Artifact,
    ids: Iterable[int],
    *,
    rows: dict[int, tuple[int, int]] | None = None,
) -> list[LineageEntry]:
    """Lineage entries (depth, path from ``root``) for some of its descendants."""
    wanted = list(ids)
    if not wanted:
        return []
    if rows is None:
        paths, known = labelled_paths(session, root.id or 0, wanted)
    else:
        paths = paths_down(root.id or 0, rows, wanted)
        known = labels_of(session, {n for path in paths.values() for n in path})
    # A shortest path of depth d has d + 1 nodes: the depth needs no closure read.
    return _entries(known, paths, [(len(paths[n]) - 1, n) for n in wanted])


def _entries(
    known: dict[int, Label], paths: dict[int, list[int]], order: list[tuple[int, int]]
) -> list[LineageEntry]:
    result = []
    for depth, node in sorted(order, key=lambda item: (item[0], _sort_key(known[item[1]]))):
        artifact = known[node]
        result.append(
            LineageEntry(
                ref=ref_of(artifact),
                kind=artifact.kind,
                depth=depth,
                path=[ref_of(known[n]) for n in paths[node]],
                status=artifact.status,
                team=artifact.team,
            )
        )
    return result


def _sort_key(artifact: Label) -> tuple[str, str]:
    return (artifact.name, artifact.version)


def deployed_descendants(
    session: Session, ref: str, *, depth: int | None = None, team: str | None = None
) -> list[DeploymentPublic]:
    """Active deployments of a model or dataset's descendants (and of itself)."""
    _check_depth(depth)
    root = resolve(session, ref)
    return affected_deployments(session, root, depth=depth, team=team)


def affected_deployments(
    session: Session,
    root: Artifact,
    *,
    depth: int | None = None,
    team: str | None = None,
    limit: int | None = None,
) -> list[DeploymentPublic]:
    """Deployments of ``root`` and its descendants, nearest first, each with its path.

    One range scan of the deployed-path index on ``root``
    (:mod:`registry.service.deployed_paths`) joined with the deployments and
    their versions' current status: the cost follows the deployments hit, not
    the number of descendants. ``limit`` keeps the nearest ones.
    """
    hits = _hits(root, depth=depth, team=team)
    if limit is not None:
        hits = hits.order_by(
            col(DeployedPath.depth),
            col(Deployment.team),
            col(Deployment.environment),
            col(Artifact.name),
            col(Artifact.version),
        ).limit(limit)
    query = hits.with_only_columns(
        col(Deployment.id),
        col(Deployment.environment),
        col(Deployment.team),
        col(Deployment.active),
        col(Deployment.created_at),
        col(Deployment.created_by),
        col(Artifact.status),
        col(DeployedPath.path),
    )
    deployments = [
        DeploymentPublic(
            id=deployment_id,
            ref=path[-1],
            environment=environment,
            team=owner,
            status=status,
            active=active,
            created_at=created_at,
            created_by=created_by,
            path=path,
        )
        for deployment_id, environment, owner, active, created_at, created_by, status, path in (
            session.connection().execute(query).all()
        )
    ]
    return sorted(deployments, key=lambda d: (len(d.path), d.team, d.environment, d.ref))


def blast_radius(
    session: Session,
    ref: str,
    *,
    depth: int | None = None,
    team: str | None = None,
    limit: int = 20,
) -> BlastRadius:
    """How many deployments descend from a model or dataset, by team, environment and
    status, and the ``limit`` nearest of them: the answer for a base so popular that the
    full list is thousands long."""
    _check_depth(depth)
    if limit < 0:
        raise InvalidInput(f"--limit must be 0 or more, not {limit}")
    root = resolve(session, ref)
    hits = _hits(root, depth=depth, team=team)
    groups = hits.with_only_columns(
        col(Deployment.team),
        col(Deployment.environment),
        col(Artifact.status),
        func.count(),
    ).group_by(col(Deployment.team), col(Deployment.environment), col(Artifact.status))
    versions = hits.with_only_columns(func.count(distinct(col(Deployment.artifact_id))))
    connection = session.connection()
    counted = [
        BlastRadiusGroup(team=owner, environment=environment, status=status, deployments=n)
        for owner, environment, status, n in connection.execute(groups).all()
    ]
    counted.sort(key=lambda g: (-g.deployments, g.team, g.environment, g.status))
    pulled_by, pulls = pulls_below(session, root, limit=limit)
    return BlastRadius(
        ref=ref_of(root),
        deployments=sum(g.deployments for g in counted),
        versions=connection.execute(versions).scalar_one(),
        groups=counted,
        nearest=affected_deployments(session, root, depth=depth, team=team, limit=limit),
        pulls=pulls,
        pulled_by=pulled_by,
    )


def _hits(root: Artifact, *, depth: int | None, team: str | None) -> Select[Any]:
    """The active deployments below ``root`` (and its own), as a join to pick columns from."""
    query = (
        core_select(col(Deployment.id))
        .select_from(DeployedPath)
        .join(Deployment, col(Deployment.id) == col(DeployedPath.deployment_id))
        .join(Artifact, col(Artifact.id) == col(Deployment.artifact_id))
        .where(col(DeployedPath.ancestor_id) == root.id)
    )
    if depth is not None:
        query = query.where(col(DeployedPath.depth) <= depth)
    if team is not None:
        query = query.where(col(Deployment.team) == team)
    return query


def deployment_public(
    deployment: Deployment, artifact: Artifact, *, path: list[str] | None = None
) -> DeploymentPublic:
    """The public view of a deployment."""
    return DeploymentPublic(
        id=deployment.id or 0,
        ref=ref_of(artifact),
        environment=deployment.environment,
        team=deployment.team,
        status=artifact.status,
        active=deployment.active,
        created_at=deployment.created_at,
        created_by=deployment.created_by,
        path=path or [],
    )


def _check_depth(depth: int | None) -> None:
    if depth is not None and depth < 1:
        raise InvalidInput(f"--depth must be at least 1, not {depth}")
