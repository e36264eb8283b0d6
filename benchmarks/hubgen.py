"""A synthetic lineage shaped like a public model hub, deterministic from a seed.

The shape follows what the Hugging Face Hub's model tree looks like:

* **roots** (foundation models, ~1% of versions) appear over time and are
  picked as bases with Zipf popularity by rank of appearance (the first,
  famous ones collect most derivatives);
* inside a family, a derivative builds on the root itself or, by preferential
  attachment, on an earlier derivative (popular fine-tunes get fine-tuned
  again), so fan-out is heavy-tailed and derivatives of derivatives go up to
  ``max_depth`` generations deep;
* ~3% of derivatives are **merges** of 2-3 parents, often across families;
* a few **datasets** are ``trained_on`` by roots and ``fine_tuned_on`` by some
  derivatives;
* ~5% of model versions are **deployed** by a handful of teams in a few
  environments.

Node ``i`` of a :class:`Hub` is the ``i``-th registration: every parent has a
smaller index, so registering the nodes in index order is always valid and the
registry's artifact id of node ``i`` is ``i + 1``. The generator makes
1,000,000 versions in a few seconds::

    .venv/bin/python -m benchmarks.hubgen --versions 1000000 --closure
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from registry.manifest import Manifest, ManifestEntry

MODEL, DATASET = "model", "dataset"
SINGLE_PARENT_RELATIONS = (
    ("finetune", 0.55), ("adapter", 0.20), ("quantized", 0.12),
    ("conversion", 0.05), ("distill", 0.04), ("head", 0.04),
)
ENVIRONMENTS = (("prod", 0.5), ("staging", 0.3), ("dev", 0.2))
TEAMS = ("search", "ads", "fraud", "vision", "speech", "assistant")

#: Closure row of one node: ancestor index -> (shortest depth, via index).
Ancestry = dict[int, tuple[int, int]]


@dataclass(frozen=True)
class HubShape:
    """The knobs of the generator; the defaults give the benchmark's hub."""

    root_rate: float = 0.01
    zipf_exponent: float = 1.1
    root_parent_rate: float = 0.45
    merge_rate: float = 0.03
    max_depth: int = 8
    trained_on_rate: float = 0.6
    fine_tuned_on_rate: float = 0.03
    team_rate: float = 0.10
    deploy_rate: float = 0.05
    second_environment_rate: float = 0.2
    teams: tuple[str, ...] = TEAMS

    def dataset_count(self, versions: int) -> int:
        """A few datasets: 8, plus one per 10,000 versions."""
        return 8 + versions // 10_000


@dataclass
class Hub:
    """The generated lineage: per node its kind, parents, relation and uses."""

    seed: int
    shape: HubShape
    kind: list[str] = field(default_factory=list)
    parents: list[tuple[int, ...]] = field(default_factory=list)
    relation: list[str | None] = field(default_factory=list)
    uses: list[tuple[tuple[int, str], ...]] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)
    family: list[int] = field(default_factory=list)
    team: list[str | None] = field(default_factory=list)
    #: ``(node, team, environment)`` in the order they are deployed.
    deployments: list[tuple[int, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.kind)

    def name(self, node: int) -> str:
        """The model or dataset name of a node."""
        if self.kind[node] == DATASET:
            return f"data/corpus{node}"
        if not self.parents[node]:
            return f"org{self.family[node] % 97}/base{self.family[node]}"
        return f"user{node % 997}/f{self.family[node]}-{self.relation[node]}-{node}"

    def version(self, node: int) -> str:
        """The version of a node."""
        return "1.0" if self.kind[node] == MODEL and not self.parents[node] else "1"

    def ref(self, node: int) -> str:
        """``name@version`` of a node."""
        return f"{self.name(node)}@{self.version(node)}"

    def publisher(self, node: int) -> str:
        """Who publishes a model (the owner part of its name)."""
        return self.name(node).split("/", 1)[0]

    def source(self, node: int) -> str:
        """Where a node comes from."""
        return f"hf://{self.name(node)}"

    def manifest(self, node: int) -> Manifest:
        """A one-file manifest, unique per node and seed."""
        sha = hashlib.sha256(f"hubgen:{self.seed}:{node}".encode()).hexdigest()
        size = 1_000_000 + int(sha[:8], 16) % 4_000_000_000
        return Manifest((ManifestEntry("model.safetensors", size, sha),))

    def dataset_digest(self, node: int) -> str:
        """A dataset's digest, unique per node and seed."""
        return "sha256:" + hashlib.sha256(f"hubgen-data:{self.seed}:{node}".encode()).hexdigest()

    def links(self, node: int) -> list[tuple[int, str]]:
        """Incoming edges in the order the service adds them: parents, then dataset uses."""
        relation = self.relation[node] or "finetune"
        return [(p, relation) for p in self.parents[node]] + list(self.uses[node])


def generate(versions: int, *, seed: int = 0, shape: HubShape | None = None) -> Hub:
    """Generate ``versions`` nodes (models and a few datasets), deterministically."""
    return _Generator(versions, seed, shape or HubShape()).run()


class _Generator:
    def __init__(self, versions: int, seed: int, shape: HubShape) -> None:
        self.versions, self.shape = versions, shape
        self.rng = random.Random(seed)
        self.hub = Hub(seed=seed, shape=shape)
        self.roots: list[int] = []
        self.root_weights: list[float] = []  # cumulative Zipf weights, by root rank
        self.pools: list[list[int]] = []  # per family: one entry per node + per child it got
        self.datasets: list[int] = []
        self.dataset_weights: list[float] = []

    def run(self) -> Hub:
        count = min(self.shape.dataset_count(self.versions), self.versions)
        dataset_slots = {0, *self.rng.sample(range(self.versions), count - 1)}
        for node in range(self.versions):
            if node in dataset_slots:
                self._dataset(node)
            elif not self.roots or self.rng.random() < self.shape.root_rate:
                self._root(node)
            else:
                self._derivative(node)
        self._deploy()
        return self.hub

    def _append(self, kind: str, parents: Sequence[int], relation: str | None,
                uses: Sequence[tuple[int, str]], depth: int, family: int, team: str | None) -> None:
        hub = self.hub
        hub.kind.append(kind)
        hub.parents.append(tuple(parents))
        hub.relation.append(relation)
        hub.uses.append(tuple(uses))
        hub.depth.append(depth)
        hub.family.append(family)
        hub.team.append(team)

    def _dataset(self, node: int) -> None:
        self._append(DATASET, (), None, (), 0, -1, None)
        self.datasets.append(node)
        rank = len(self.dataset_weights)
        self.dataset_weights.append(self._last(self.dataset_weights) + _zipf(rank, self.shape))

    def _root(self, node: int) -> None:
        family = len(self.roots)
        uses: list[tuple[int, str]] = []
        if self.datasets and self.rng.random() < self.shape.trained_on_rate:
            uses = [(d, "trained_on") for d in sorted(
                {self._pick_dataset() for _ in range(1 + int(self.rng.random() < 0.3))}
            )]
        self._append(MODEL, (), None, uses, 0, family, None)
        self.roots.append(node)
        self.root_weights.append(self._last(self.root_weights) + _zipf(family, self.shape))
        self.pools.append([node])

    def _derivative(self, node: int) -> None:
        rng, shape, hub = self.rng, self.shape, self.hub
        parents = [self._pick_parent()]
        if rng.random() < shape.merge_rate:
            for _ in range(1 + int(rng.random() < 0.2)):
                extra = self._pick_parent()
                if extra not in parents:
                    parents.append(extra)
        relation = "merge" if len(parents) > 1 else _weighted(rng, SINGLE_PARENT_RELATIONS)
        uses: list[tuple[int, str]] = []
        if self.datasets and rng.random() < shape.fine_tuned_on_rate:
            uses = [(self._pick_dataset(), "fine_tuned_on")]
        team = None
        if rng.random() < shape.team_rate:
            team = shape.teams[int(rng.random() * len(shape.teams))]
        family = hub.family[parents[0]]
        depth = 1 + max(hub.depth[p] for p in parents)
        self._append(MODEL, parents, relation, uses, depth, family, team)
        self.pools[family].append(node)

    def _pick_parent(self) -> int:
        """A Zipf-popular family, then its root or a preferentially chosen member."""
        rng, hub = self.rng, self.hub
        family = bisect.bisect_left(self.root_weights, rng.random() * self.root_weights[-1])
        if rng.random() < self.shape.root_parent_rate:
            return self.roots[family]
        pool = self.pools[family]
        parent = pool[int(rng.random() * len(pool))]
        while hub.depth[parent] >= self.shape.max_depth:  # stay within max_depth generations
            parent = hub.parents[parent][0]
        pool.append(parent)  # the more children, the likelier another one
        return parent

    def _pick_dataset(self) -> int:
        weights = self.dataset_weights
        return self.datasets[bisect.bisect_left(weights, self.rng.random() * weights[-1])]

    def _deploy(self) -> None:
        rng, shape, hub = self.rng, self.shape, self.hub
        for node, kind in enumerate(hub.kind):
            if kind != MODEL or rng.random() >= shape.deploy_rate:
                continue
            team = shape.teams[int(rng.random() * len(shape.teams))]
            first = _weighted(rng, ENVIRONMENTS)
            hub.deployments.append((node, team, first))
            if rng.random() < shape.second_environment_rate:
                second = _weighted(rng, [(e, w) for e, w in ENVIRONMENTS if e != first])
                hub.deployments.append((node, team, second))

    @staticmethod
    def _last(cumulative: list[float]) -> float:
        return cumulative[-1] if cumulative else 0.0


def _zipf(rank: int, shape: HubShape) -> float:
    return float((rank + 1) ** -shape.zipf_exponent)


def _weighted(rng: random.Random, choices: Sequence[tuple[str, float]]) -> str:
    total = sum(weight for _, weight in choices)
    point = rng.random() * total
    for value, weight in choices:
        point -= weight
        if point < 0:
            return value
    return choices[-1][0]


def ancestries(hub: Hub, stop: int | None = None) -> Iterator[tuple[int, Ancestry]]:
    """Each node's closure rows, as the registry computes them on registration.

    For every ancestor: the shortest depth, and ``via``, the node's parent on a
    shortest path (the smallest such parent on a tie) - exactly what
    ``registry.service.graph`` stores in ``lineage_closure``.
    """
    stored: list[Ancestry] = []
    for node in range(len(hub) if stop is None else stop):
        best: Ancestry = {}
        for parent, _ in hub.links(node):
            candidates = [(parent, (1, parent))]
            candidates += [(a, (d + 1, parent)) for a, (d, _) in stored[parent].items()]
            for ancestor, value in candidates:
                known = best.get(ancestor)
                if known is None or value < known:
                    best[ancestor] = value
        stored.append(best)
        yield node, best


@dataclass(frozen=True)
class HubSummary:
    """What a generated hub looks like, for the report."""

    versions: int
    models: int
    datasets: int
    roots: int
    merges: int
    edges: int
    max_depth: int
    deployed_versions: int
    deployments: int
    closure_rows: int | None = None
    top_bases: tuple[tuple[int, int], ...] = ()  # (node, descendants), most first

    def to_json(self) -> dict[str, object]:
        """The summary as plain JSON values."""
        return {**self.__dict__, "top_bases": [list(pair) for pair in self.top_bases]}


def summarize(hub: Hub, *, closure: bool = False) -> HubSummary:
    """Count the hub's shape; with ``closure``, also its closure size and top bases."""
    rows, top = None, ()
    if closure:
        rows, below = 0, Counter[int]()
        for _, ancestry in ancestries(hub):
            rows += len(ancestry)
            below.update(ancestry.keys())
        top = tuple((node, count) for node, count in below.most_common(20)
                    if hub.kind[node] == MODEL)[:5]
    models = sum(1 for kind in hub.kind if kind == MODEL)
    return HubSummary(
        versions=len(hub), models=models, datasets=len(hub) - models,
        roots=sum(1 for n, k in enumerate(hub.kind) if k == MODEL and not hub.parents[n]),
        merges=sum(1 for parents in hub.parents if len(parents) > 1),
        edges=sum(len(hub.parents[n]) + len(hub.uses[n]) for n in range(len(hub))),
        max_depth=max(hub.depth, default=0),
        deployed_versions=len({node for node, _, _ in hub.deployments}),
        deployments=len(hub.deployments), closure_rows=rows, top_bases=top,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Generate a hub and print its shape (and closure size) as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--closure", action="store_true", help="also compute the closure size")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    hub = generate(args.versions, seed=args.seed)
    generated = time.perf_counter() - started
    summary = summarize(hub, closure=args.closure)
    report = {"generate_s": round(generated, 2),
              "total_s": round(time.perf_counter() - started, 2), **summary.to_json()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
