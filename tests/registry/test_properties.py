"""Random operation sequences keep the stored state equal to an independent model of it.

A hypothesis state machine registers models (random parents among the existing
ones, so random DAGs with merges) and datasets (random uses, evaluated_on
included), adds late parents (which may close a cycle), flags, unflags, clears
and deploys. Beside the registry it keeps a plain-Python model: the edges, the
flags, the clearances and the deployments, from which it computes every status
with networkx alone. After every step the registry's own from-scratch check
(``find_inconsistencies``) must find nothing, and the stored statuses, closure
rows and infection rows must agree with the model. A refused operation must
leave every table as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Engine, func, select

from lineage import Relation
from registry.client import LocalRegistry
from registry.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    LineageCycle,
    NotFound,
    PolicyViolation,
)
from registry.identity import Actor, Role
from registry.schemas import ReplayIn
from registry.tables import Artifact, AuditEvent, Deployment, Infection, LineageClosure
from scanning.behavioral.report import (
    ReplayMeasure,
    ReplayOutcome,
    ReplayReport,
    TriggerPattern,
)
from tests.conftest import fake_manifest
from tests.registry.test_db_support import (  # noqa: F401  (fixtures: engine and what it needs)
    empty,
    fast_engine,
    pg_database,
    snapshot,
    sqlite_template,
)

SINGLE_PARENT = [
    Relation.FINETUNE,
    Relation.ADAPTER,
    Relation.QUANTIZED,
    Relation.DISTILL,
    Relation.HEAD,
    Relation.CONVERSION,
]
USES = [Relation.TRAINED_ON, Relation.FINE_TUNED_ON, Relation.EVALUATED_ON]
ENVIRONMENTS = ["prod", "staging"]
TEAM = "t"
TAINTED = {"compromised", "infected", "confirmed"}
SETTINGS = settings(max_examples=25, stateful_step_count=20, deadline=None, database=None)


@dataclass
class Reference:
    """The registry as the test understands it, with statuses computed from scratch."""

    kinds: dict[str, str] = field(default_factory=dict)  # ref -> model | dataset
    edges: dict[tuple[str, str], Relation] = field(default_factory=dict)  # (parent, child)
    flagged: set[str] = field(default_factory=set)
    cleared: set[tuple[str, str]] = field(default_factory=set)  # (node, source)
    confirmed: dict[tuple[str, str], bool] = field(default_factory=dict)  # newest replay wins
    deployments: set[tuple[str, str]] = field(default_factory=set)  # (ref, environment)

    def of_kind(self, kind: str) -> list[str]:
        return sorted(ref for ref, known in self.kinds.items() if known == kind)

    def graph(self, *, propagating: bool = False) -> nx.DiGraph:
        """The lineage; with ``propagating``, only the edges that carry an infection."""
        graph = nx.DiGraph()
        graph.add_nodes_from(self.kinds)
        graph.add_edges_from(
            (parent, child)
            for (parent, child), relation in self.edges.items()
            if not propagating or relation is not Relation.EVALUATED_ON
        )
        return graph

    def sources(self) -> dict[str, dict[str, int]]:
        """node -> every flagged source reaching it over propagating edges -> distance."""
        graph = self.graph(propagating=True)
        found: dict[str, dict[str, int]] = {node: {} for node in self.kinds}
        for source in self.flagged:
            for node, depth in nx.single_source_shortest_path_length(graph, source).items():
                if node != source:
                    found[node][source] = depth
        return found

    def statuses(self) -> dict[str, str]:
        sources = self.sources()
        return {node: self._status(node, sources[node]) for node in self.kinds}

    def _status(self, node: str, sources: dict[str, int]) -> str:
        if node in self.flagged:
            return "compromised"
        if not sources:
            return "clean"
        if any(self.confirmed.get((node, s)) for s in sources):
            return "confirmed"
        return "cleared" if all((node, s) in self.cleared for s in sources) else "infected"


class RegistryMachine(RuleBasedStateMachine):
    """Drives one registry and its reference model through the same operations."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        empty(engine)
        self.engine = engine
        self.admin = LocalRegistry(engine, Actor("alice", Role.ADMIN))
        self.approver = LocalRegistry(engine, Actor("carol", Role.APPROVER))
        self.admin.create_team(name=TEAM)
        self.model = Reference()
        self.counter = 0
        self.events = 1  # audit events expected so far: creating the team is the first

    # --- helpers --------------------------------------------------------------------------

    def fresh_name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def succeeds(self, operation: Callable[[], Any], *, events: int = 1) -> None:
        operation()
        self.events += events

    def refused(self, operation: Callable[[], Any], error: type[Exception], message: str) -> None:
        before = snapshot(self.engine)
        with pytest.raises(error, match=message):
            operation()
        assert snapshot(self.engine) == before

    def status(self, ref: str) -> str:
        return self.model.statuses()[ref]

    def draw_links(
        self,
        data: st.DataObject,
        parents: list[str],
        datasets: list[str],
        *,
        most: int,
        fewest: int = 0,
    ) -> tuple[list[str], list[tuple[str, Relation]]]:
        """Some distinct ``parents`` (``fewest`` to ``most``) and up to two uses of ``datasets``."""
        count = data.draw(st.integers(min(fewest, len(parents)), min(most, len(parents))))
        chosen = (
            data.draw(
                st.lists(st.sampled_from(parents), min_size=count, max_size=count, unique=True)
            )
            if count
            else []
        )
        uses = (
            data.draw(
                st.lists(
                    st.tuples(st.sampled_from(datasets), st.sampled_from(USES)),
                    max_size=2,
                    unique_by=lambda use: use[0],
                )
            )
            if datasets
            else []
        )
        return chosen, uses

    def mostly(self, data: st.DataObject, preferred: list[str], every: list[str]) -> str:
        """One of ``preferred`` three times in four (when there is one), else any of ``every``."""
        pool = preferred if preferred and data.draw(st.integers(0, 3)) else every
        return data.draw(st.sampled_from(pool))

    # --- rules ----------------------------------------------------------------------------

    @initialize(data=st.data())
    def seed(self, data: st.DataObject) -> None:
        """A few models and a dataset first, so that every example has a lineage to work on."""
        self.register_dataset()
        for _ in range(data.draw(st.integers(2, 5))):
            self.register_model(data)

    @rule(data=st.data())
    def register_model(self, data: st.DataObject) -> None:
        parents, uses = self.draw_links(
            data, self.model.of_kind("model"), self.model.of_kind("dataset"), most=3
        )
        relation = data.draw(st.sampled_from([None, *SINGLE_PARENT])) if len(parents) == 1 else None
        override = data.draw(st.booleans())
        ref = self.fresh_name("m") + "@1"
        name, version = ref.split("@")
        carried = [d for d, use in uses if use is not Relation.EVALUATED_ON]
        tainted = [p for p in parents + carried if self.status(p) in TAINTED]

        def register() -> Any:
            return self.admin.register_model(
                name=name,
                version=version,
                manifest=fake_manifest(ref),
                parents=parents,
                relation=relation,
                datasets=uses,
                override="incident response" if override else None,
            )

        if tainted and not override:
            self.refused(register, PolicyViolation, f"parent {tainted[0]} is")
            return
        self.succeeds(register, events=2 if tainted else 1)
        self.model.kinds[ref] = "model"
        chosen = Relation.MERGE if len(parents) > 1 else relation or Relation.FINETUNE
        self.model.edges.update({(parent, ref): chosen for parent in parents})
        self.model.edges.update({(dataset, ref): use for dataset, use in uses})

    @precondition(lambda self: len(self.model.of_kind("dataset")) < 4)
    @rule()
    def register_dataset(self) -> None:
        name = self.fresh_name("d")
        self.succeeds(
            lambda: self.admin.register_dataset(
                name=name, version="1", digest=fake_manifest(name).digest
            )
        )
        self.model.kinds[f"{name}@1"] = "dataset"

    @rule(data=st.data())
    def add_parents(self, data: st.DataObject) -> None:
        models = self.model.of_kind("model")
        child = data.draw(st.sampled_from(models))
        known = {parent for parent, node in self.model.edges if node == child}
        below = nx.descendants(self.model.graph(), child) | {child}
        # Mostly edges that can be added; sometimes any, to meet cycles and duplicates.
        datasets, fewest = self.model.of_kind("dataset"), 0
        fitting = [m for m in models if m not in below | known]
        if fitting and data.draw(st.integers(0, 3)):
            models, fewest = fitting, 1
            datasets = [d for d in datasets if d not in known and data.draw(st.booleans())]
        parents, uses = self.draw_links(data, models, datasets, most=2, fewest=fewest)

        def add() -> Any:
            return self.admin.add_parents(child, parents=parents, datasets=uses)

        if not parents and not uses:
            self.refused(add, InvalidInput, "give at least one")
        elif known & {*parents, *(d for d, _ in uses)}:
            self.refused(add, InvalidInput, "that edge exists already")
        elif below & set(parents):
            self.refused(add, LineageCycle, "would be cyclic")
        else:
            self.succeeds(add)
            relation = Relation.MERGE if len(parents) + len(known) > 1 else Relation.FINETUNE
            self.model.edges.update({(parent, child): relation for parent in parents})
            self.model.edges.update({(dataset, child): use for dataset, use in uses})

    @rule(data=st.data())
    def flag(self, data: st.DataObject) -> None:
        every = sorted(self.model.kinds)
        ref = self.mostly(data, [node for node in every if node not in self.model.flagged], every)

        def flag() -> Any:
            return self.admin.flag(ref, reason="backdoor")

        if ref in self.model.flagged:
            self.refused(flag, Conflict, "flagged already")
            return
        self.succeeds(flag)
        self.model.flagged.add(ref)

    @precondition(lambda self: self.model.flagged)
    @rule(data=st.data())
    def unflag(self, data: st.DataObject) -> None:
        ref = self.mostly(data, sorted(self.model.flagged), sorted(self.model.kinds))

        def unflag() -> Any:
            return self.admin.unflag(ref, reason="false positive")

        if ref not in self.model.flagged:
            self.refused(unflag, InvalidInput, "is not flagged")
            return
        self.succeeds(unflag)
        self.model.flagged.discard(ref)
        self.model.cleared = {(node, s) for node, s in self.model.cleared if s != ref}

    @rule(data=st.data())
    def clear(self, data: st.DataObject) -> None:
        statuses = self.model.statuses()
        infected = [ref for ref, status in sorted(statuses.items()) if status == "infected"]
        ref = self.mostly(data, infected, sorted(statuses))

        def clear() -> Any:
            return self.approver.clear(ref, reason="retrained from clean data")

        if statuses[ref] not in ("infected", "cleared"):
            self.refused(clear, PolicyViolation, "only an inherited infection can be cleared")
            return
        self.succeeds(clear)
        self.model.cleared |= {(ref, source) for source in self.model.sources()[ref]}

    @precondition(lambda self: any(self.model.kinds[r] == "model" for r in self.model.flagged))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        sources = sorted(r for r in self.model.flagged if self.model.kinds[r] == "model")
        source = data.draw(st.sampled_from(sources))
        below = sorted(nx.descendants(self.model.graph(), source))
        chosen = (
            data.draw(st.lists(st.sampled_from(below), min_size=1, unique=True)) if below else []
        )
        rates = [data.draw(st.sampled_from([0.1, 0.5, 0.9])) for _ in chosen]
        trigger = self.admin.attach_trigger(source, data=TRIGGER)
        reports = [
            ReplayIn(ref=ref, report=replay_report(rate).to_json())
            for ref, rate in zip(chosen, rates, strict=True)
        ]

        def replay() -> Any:
            return self.admin.record_replays(source, trigger_id=trigger.id, results=reports)

        self.events += 1  # the trigger's attachment
        self.succeeds(replay)
        self.model.confirmed.update(
            {(ref, source): rate >= 0.5 for ref, rate in zip(chosen, rates, strict=True)}
        )

    @rule(data=st.data())
    def deploy(self, data: st.DataObject) -> None:
        ref = data.draw(st.sampled_from(self.model.of_kind("model")))
        environment = data.draw(st.sampled_from(ENVIRONMENTS))
        override = data.draw(st.booleans())
        tainted = self.status(ref) in TAINTED

        def deploy() -> Any:
            return self.admin.deploy(
                ref,
                environment=environment,
                team=TEAM,
                override="sandbox" if override else None,
            )

        if (ref, environment) in self.model.deployments:
            self.refused(deploy, AlreadyExists, "is already registered")
        elif tainted and not override:
            self.refused(deploy, PolicyViolation, f"{ref} is")
        else:
            self.succeeds(deploy, events=2 if tainted else 1)
            self.model.deployments.add((ref, environment))

    @precondition(lambda self: self.model.deployments)
    @rule(data=st.data())
    def undeploy(self, data: st.DataObject) -> None:
        every = [(ref, env) for ref in self.model.of_kind("model") for env in ENVIRONMENTS]
        pool = every if data.draw(st.integers(0, 3)) == 0 else sorted(self.model.deployments)
        ref, environment = data.draw(st.sampled_from(pool))

        def undeploy() -> Any:
            return self.admin.undeploy(ref, environment=environment, team=TEAM)

        if (ref, environment) not in self.model.deployments:
            self.refused(undeploy, NotFound, "is not registered")
            return
        self.succeeds(undeploy)
        self.model.deployments.discard((ref, environment))

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def a_from_scratch_recomputation_agrees(self) -> None:
        assert self.admin.find_inconsistencies() == []

    @invariant()
    def every_blast_radius_matches_the_model(self) -> None:
        """``descendants --deployed`` of every node: the deployments of it and its
        descendants, each with a shortest path that is a real path of the lineage."""
        graph = self.model.graph()
        for node in self.model.kinds:
            reach = nx.single_source_shortest_path_length(graph, node)
            expected = sorted(
                (ref, env, reach[ref]) for ref, env in self.model.deployments if ref in reach
            )
            answer = self.admin.deployed_descendants(node)
            assert sorted((d.ref, d.environment, len(d.path) - 1) for d in answer) == expected
            for deployment in answer:
                assert deployment.path[0] == node
                assert nx.is_path(graph, deployment.path), deployment.path

    @invariant()
    def the_stored_state_matches_the_model(self) -> None:
        closure = (LineageClosure.ancestor_id, LineageClosure.descendant_id)
        infection = (Infection.source_id, Infection.artifact_id)
        with self.engine.connect() as conn:
            artifacts = conn.execute(
                select(Artifact.id, Artifact.name, Artifact.version, Artifact.status)
            ).all()
            paths = conn.execute(select(*closure, LineageClosure.depth, LineageClosure.via_id))
            reaches = conn.execute(select(*infection, Infection.depth, Infection.via_id))
            closure_rows, infection_rows = paths.all(), reaches.all()
            deployments = conn.execute(
                select(Deployment.artifact_id, Deployment.environment).where(Deployment.active)
            ).all()
            events = conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
        names = {id_: f"{name}@{version}" for id_, name, version, _ in artifacts}
        assert {names[id_]: status for id_, _, _, status in artifacts} == self.model.statuses()
        assert {(names[id_], env) for id_, env in deployments} == self.model.deployments
        assert events == self.events
        shortest_paths(self.model.graph(), closure_rows, names)
        shortest_paths(
            self.model.graph(propagating=True), infection_rows, names, tops=self.model.flagged
        )


TRIGGER = TriggerPattern(
    mask=np.zeros((1, 8, 8), np.float32), pattern=np.ones((1, 8, 8), np.float32), target_class=0
).to_npz()


def replay_report(rate: float) -> ReplayReport:
    """What a replay measuring ``rate`` on a model reports (threshold 0.5)."""
    measure = ReplayMeasure(rate=rate, collapsed_class=0, target_rate=rate, clean_accuracy=0.9)
    return ReplayReport(outcome=ReplayOutcome.MEASURED, threshold=0.5, measure=measure)


def shortest_paths(
    graph: nx.DiGraph, rows: list[Any], names: dict[int, str], *, tops: set[str] | None = None
) -> None:
    """Check rows ``(top, bottom, depth, via)``: one per pair of ``graph`` (from ``tops``)
    joined by a path, ``depth`` its shortest length, ``via`` the bottom's parent on one."""
    distances = dict(nx.all_pairs_shortest_path_length(graph))
    expected = {
        (top, bottom): depth
        for top, reached in distances.items()
        if tops is None or top in tops
        for bottom, depth in reached.items()
        if bottom != top
    }
    assert {(names[top], names[bottom]): depth for top, bottom, depth, _ in rows} == expected
    for top, bottom, depth, via in rows:
        assert graph.has_edge(names[via], names[bottom]), (names[via], names[bottom])
        assert distances[names[top]].get(names[via]) == depth - 1, (names[top], names[via])


def test_stored_state_always_matches_an_independent_model(engine: Engine) -> None:
    run_state_machine_as_test(lambda: RegistryMachine(engine), settings=SETTINGS)
