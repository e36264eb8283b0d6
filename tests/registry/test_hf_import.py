"""Hugging Face import: real cache layouts, model cards, placeholders filled later, Hub hashes.

Each cache is built the way ``huggingface_hub`` lays it out on disk:
``models--org--name/blobs/<hash>``, ``refs/<branch>`` holding the commit and
``snapshots/<commit>/<file>`` symlinks into ``../../blobs``. Cards are README.md
files with YAML front matter; weights are real (tiny) safetensors and GGUF files,
so the admission scan runs for real. Service tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import doctest
import hashlib
import importlib
import json
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
import yaml  # type: ignore[import-untyped]
from sqlalchemy import Engine
from sqlmodel import select

import registry.hf
from registry.client import LocalRegistry
from registry.db import unit_of_work
from registry.errors import (
    AlreadyExists,
    InvalidInput,
    InvalidModelCard,
    NotInHfCache,
    PolicyViolation,
    UnsafePath,
)
from registry.hf import (
    HubFiles,
    HubLfs,
    HubRef,
    ImportPlan,
    blobs_dir_of,
    check_against_hub,
    git_blob_sha1,
    locate_snapshot,
    plan_import,
)
from registry.identity import Role
from registry.manifest import hash_tree
from registry.schemas import HfImportResult, HfLink
from registry.tables import Artifact
from scanning.static import scan_path
from tests.registry.live_server import serve_in_thread
from tests.registry.test_cli import Cli, cli_env, local_registry

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin")


def tensors(value: float) -> bytes:
    """A real, valid safetensors file."""
    return safetensors.numpy.save({"weight": np.full((2, 3), value, dtype=np.float32)})


def gguf() -> bytes:
    """A real, minimal GGUF v3 file: magic, version, no tensors, no metadata."""
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 0)


def card(text: str = "# A model\n", /, **metadata: Any) -> str:
    """A README.md with the metadata as YAML front matter."""
    return f"---\n{yaml.safe_dump(metadata, sort_keys=False)}---\n{text}"


def commit_of(repo_id: str, tag: str = "") -> str:
    """A deterministic 40-hex commit hash."""
    return hashlib.sha1(f"{repo_id}:{tag}".encode(), usedforsecurity=False).hexdigest()


def git_sha1(data: bytes) -> str:
    """The git blob id of bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class HfCache:
    """A Hugging Face hub cache in a temporary directory."""

    root: Path

    def repo_dir(self, repo_id: str) -> Path:
        """``models--org--name``."""
        return self.root / ("models--" + repo_id.replace("/", "--"))

    def add(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str],
        *,
        refs: Sequence[str] = ("main",),
        commit: str | None = None,
    ) -> Path:
        """Cache a snapshot of ``repo_id`` (blobs, refs, symlinks); its directory."""
        repo = self.repo_dir(repo_id)
        commit = commit or commit_of(repo_id, json.dumps({k: str(v) for k, v in files.items()}))
        snapshot = repo / "snapshots" / commit
        for rel, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            lfs = rel.endswith(LFS_SUFFIXES)
            blob = repo / "blobs" / (hashlib.sha256(data).hexdigest() if lfs else git_sha1(data))
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = snapshot / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
        for ref in refs:
            (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
            (repo / "refs" / ref).write_text(commit)
        return snapshot


def hub_info(snapshot: Path, repo_id: str) -> dict[str, Any]:
    """What ``HfApi().model_info(repo_id, files_metadata=True)`` answers for a snapshot."""
    siblings = []
    for path in sorted(p for p in snapshot.rglob("*") if not p.is_dir()):
        data = path.read_bytes()
        sibling: dict[str, Any] = {"rfilename": path.relative_to(snapshot).as_posix()}
        if path.name.endswith(LFS_SUFFIXES):
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
            pointer += f"size {len(data)}\n"
            sibling |= {
                "size": len(data),
                "blobId": git_sha1(pointer.encode()),
                "lfs": {"sha256": sha256, "size": len(data), "pointerSize": len(pointer)},
            }
        else:
            sibling |= {"size": len(data), "blobId": git_sha1(data)}
        siblings.append(sibling)
    return {"id": repo_id, "sha": snapshot.name, "private": False, "siblings": siblings}


@pytest.fixture
def hf_cache(tmp_path: Path) -> HfCache:
    """An empty Hugging Face cache."""
    (tmp_path / "hf-cache").mkdir()
    return HfCache(tmp_path / "hf-cache")


def weights(value: float = 1.0) -> dict[str, bytes | str]:
    """The files of an ordinary fine-tune."""
    return {"model.safetensors": tensors(value), "config.json": '{"model_type": "bert"}'}


def import_snapshot(
    reg: LocalRegistry,
    target: str | Path,
    *,
    cache: HfCache | None = None,
    revision: str | None = None,
    name: str | None = None,
    version: str | None = None,
    **options: Any,
) -> HfImportResult:
    """What ``mbom import-hf`` does, in-process: locate, plan, hash, scan, register."""
    snapshot = locate_snapshot(target, revision=revision, cache_dir=cache.root if cache else None)
    plan = plan_import(snapshot, name=name, version=version)
    manifest = hash_tree(snapshot.path, allowed_roots=snapshot.allowed_roots)
    result: HfImportResult = reg.import_hf(
        plan, manifest=manifest, scan=scan_path(snapshot.path), **options
    )
    return result


def register_files(reg: LocalRegistry, path: Path, **fields: Any) -> Any:
    """Register a directory as ``mbom register`` does (scanned)."""
    return reg.register_model(manifest=hash_tree(path), scan=scan_path(path), **fields)


def artifact_id(engine: Engine, kind: str, name: str) -> list[tuple[int | None, str]]:
    """(id, version) of every version of a name."""
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(Artifact.id, Artifact.version).where(
                Artifact.kind == kind, Artifact.name == name
            )
        ).all()
    return [(row[0], row[1]) for row in rows]


def operations(reg: LocalRegistry) -> list[tuple[str, str]]:
    """(operation, subject) of every audit event, oldest first."""
    return [(event.operation, event.subject) for event in reg.list_events()]


# --- placeholders: created by the card, filled by a later registration -------------------------


def test_a_single_base_becomes_a_placeholder_that_a_later_register_fills(
    reg: LocalRegistry, engine: Engine, hf_cache: HfCache, make_model: Callable[..., Path]
) -> None:
    meta = {"base_model": "acme/base", "license": "apache-2.0", "pipeline_tag": "fill-mask"}
    snapshot = hf_cache.add("acme/ft", {**weights(), "README.md": card(**meta)})
    commit = snapshot.name

    result = import_snapshot(reg, "acme/ft", cache=hf_cache)

    assert (result.model.ref, result.model.source) == (
        f"acme/ft@{commit}",
        f"hf://acme/ft@{commit}",
    )
    assert (result.revision, result.commit, result.relation) == ("main", commit, "finetune")
    assert str(result.relation_basis).startswith("inferred")
    assert (result.license, result.pipeline_tag, result.filled_placeholder) == (
        "apache-2.0",
        "fill-mask",
        None,
    )
    assert result.links == [
        HfLink(
            repo_id="acme/base",
            kind="model",
            ref="acme/base@unpinned",
            relation="finetune",
            created=True,
        )
    ]
    assert (result.model.finding, result.model.status, result.model.format) == (
        "clean",
        "clean",
        "safetensors",
    )
    assert result.model.file_count == 3
    base = reg.show("acme/base@unpinned")
    assert (base.placeholder, base.finding, base.source, base.file_count) == (
        True,
        "unscanned",
        "hf://acme/base",
        0,
    )
    [(placeholder_id, _)] = artifact_id(engine, "model", "acme/base")
    reg.create_team(name="search")
    reg.deploy(f"acme/ft@{commit}", environment="prod", team="search")

    filled = register_files(
        reg,
        make_model("base", {"model.safetensors": tensors(0.5)}),
        name="acme/base",
        version="v1",
        source="hf://acme/base@v1",
    )

    assert (filled.ref, filled.placeholder, filled.finding, filled.file_count) == (
        "acme/base@v1",
        False,
        "clean",
        1,
    )
    assert artifact_id(engine, "model", "acme/base") == [(placeholder_id, "v1")]
    child = reg.show(f"acme/ft@{commit}")
    assert [(p.ref, p.relation) for p in child.parents] == [("acme/base@v1", "finetune")]
    events = operations(reg)
    assert ("placeholder.create", "acme/base@unpinned") in events
    assert ("placeholder.fill", "acme/base@v1") in events
    assert ("hf.import", f"acme/ft@{commit}") in events
    # The deployment below is reached through the base's registered version.
    [deployed] = reg.deployed_descendants("acme/base@v1")
    assert deployed.path == ["acme/base@v1", f"acme/ft@{commit}"]
    assert reg.find_inconsistencies() == []


def test_importing_the_base_later_fills_its_placeholder_and_keeps_the_edge(
    reg: LocalRegistry, engine: Engine, hf_cache: HfCache
) -> None:
    ft = hf_cache.add("acme/ft", {**weights(), "README.md": card(base_model="acme/base")})
    import_snapshot(reg, "acme/ft", cache=hf_cache)
    [(placeholder_id, _)] = artifact_id(engine, "model", "acme/base")
    base = hf_cache.add("acme/base", {"model.safetensors": tensors(0.0), "README.md": card()})

    result = import_snapshot(reg, "acme/base", cache=hf_cache)

    assert result.filled_placeholder == "acme/base@unpinned"
    assert result.model.ref == f"acme/base@{base.name}"
    assert artifact_id(engine, "model", "acme/base") == [(placeholder_id, base.name)]
    child = reg.show(f"acme/ft@{ft.name}")
    assert [p.ref for p in child.parents] == [f"acme/base@{base.name}"]


def test_a_registration_without_the_hub_source_does_not_fill_an_unpinned_placeholder(
    reg: LocalRegistry, engine: Engine, hf_cache: HfCache, make_model: Callable[..., Path]
) -> None:
    hf_cache.add("acme/ft", {**weights(), "README.md": card(base_model="acme/base")})
    import_snapshot(reg, "acme/ft", cache=hf_cache)
    register_files(
        reg, make_model("internal"), name="acme/base", version="1", source="s3://bucket/acme-base"
    )
    versions = {version for _, version in artifact_id(engine, "model", "acme/base")}
    assert versions == {"unpinned", "1"}
    assert reg.show("acme/base@unpinned").placeholder is True


def test_a_placeholder_with_a_recorded_digest_is_only_filled_by_those_files(
    reg: LocalRegistry, make_model: Callable[..., Path]
) -> None:
    from registry.bom import import_cyclonedx

    document = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "components": [
            {
                "type": "machine-learning-model",
                "name": "acme/base",
                "version": "1",
                "hashes": [{"alg": "SHA-256", "content": "ab" * 32}],
            }
        ],
    }
    with unit_of_work(reg.engine) as session:
        import_cyclonedx(session, document, actor=reg.actor)
    with pytest.raises(InvalidInput, match=r"acme/base@1 was recorded with digest sha256:abab"):
        register_files(reg, make_model("other"), name="acme/base", version="1")
    assert reg.show("acme/base@1").placeholder is True


def test_a_flagged_placeholder_infects_the_import_and_stays_flagged_when_filled(
    reg: LocalRegistry, hf_cache: HfCache, make_model: Callable[..., Path]
) -> None:
    snapshot = hf_cache.add("acme/ft", {**weights(), "README.md": card(base_model="acme/base")})
    import_snapshot(reg, "acme/ft", cache=hf_cache)
    ft = f"acme/ft@{snapshot.name}"

    reg.flag("acme/base@unpinned", reason="advisory: backdoored upload")

    assert reg.show(ft).status == "infected"
    filled = register_files(
        reg, make_model("base"), name="acme/base", version="v1", source="hf://acme/base@v1"
    )
    assert (filled.status, filled.finding) == ("compromised", "compromised")
    assert reg.show(ft).status == "infected"
    blocks = [d.subject for d in reg.list_decisions() if d.verdict == "block"]
    assert blocks == ["acme/base@v1"], "the flag's block follows the placeholder to its version"
    reg.unflag("acme/base@v1", reason="false positive")
    assert reg.show("acme/base@v1").finding == "clean", "the scan's finding comes back"
    assert reg.show(ft).status == "clean"
    assert reg.find_inconsistencies() == []


def test_datasets_become_dataset_placeholders_used_for_training(
    reg: LocalRegistry, engine: Engine, hf_cache: HfCache
) -> None:
    meta = {"base_model": "acme/base", "datasets": ["acme/corpus", "imdb"]}
    snapshot = hf_cache.add("acme/ft", {**weights(), "README.md": card(**meta)})

    result = import_snapshot(reg, "acme/ft", cache=hf_cache)

    assert [(link.ref, link.kind, link.relation, link.created) for link in result.links] == [
        ("acme/base@unpinned", "model", "finetune", True),
        ("acme/corpus@unpinned", "dataset", "trained_on", True),
        ("imdb@unpinned", "dataset", "trained_on", True),
    ]
    corpus = reg.show("dataset:acme/corpus@unpinned")
    assert (corpus.placeholder, corpus.source) == (True, "hf://datasets/acme/corpus")
    [(corpus_id, _)] = artifact_id(engine, "dataset", "acme/corpus")
    filled = reg.register_dataset(
        name="acme/corpus",
        version="2024-01",
        digest="sha256:" + "c" * 64,
        source="hf://datasets/acme/corpus@2024-01",
    )
    assert (filled.ref, filled.placeholder) == ("acme/corpus@2024-01", False)
    assert artifact_id(engine, "dataset", "acme/corpus") == [(corpus_id, "2024-01")]
    parents = reg.show(f"acme/ft@{snapshot.name}").parents
    assert ("acme/corpus@2024-01", "trained_on") in [(p.ref, p.relation) for p in parents]


def test_several_bases_register_a_merge_with_both_edges(
    reg: LocalRegistry, hf_cache: HfCache
) -> None:
    snapshot = hf_cache.add(
        "acme/merged", {**weights(), "README.md": card(base_model=["acme/a", "acme/b"])}
    )
    result = import_snapshot(reg, "acme/merged", cache=hf_cache)
    assert (result.relation, result.relation_basis) == ("merge", "inferred: several base models")
    parents = reg.show(f"acme/merged@{snapshot.name}").parents
    assert sorted((p.ref, p.relation) for p in parents) == [
        ("acme/a@unpinned", "merge"),
        ("acme/b@unpinned", "merge"),
    ]


# --- linking to what the registry knows ---------------------------------------------------------


def test_a_base_already_registered_is_linked_preferring_its_hub_version(
    reg: LocalRegistry, hf_cache: HfCache, make_model: Callable[..., Path]
) -> None:
    register_files(
        reg,
        make_model("v1", {"w.safetensors": tensors(1)}),
        name="acme/base",
        version="v1",
        source="hf://acme/base@v1",
    )
    register_files(
        reg,
        make_model("int", {"w.safetensors": tensors(2)}),
        name="acme/base",
        version="internal",
        source="s3://bucket/base",
    )
    hf_cache.add("acme/ft", {**weights(), "README.md": card(base_model="acme/base")})
    hf_cache.add("acme/ft2", {**weights(3), "README.md": card(base_model="acme/other")})
    register_files(
        reg, make_model("o1", {"w.safetensors": tensors(4)}), name="acme/other", version="1"
    )
    register_files(
        reg, make_model("o2", {"w.safetensors": tensors(5)}), name="acme/other", version="2"
    )

    [hub] = import_snapshot(reg, "acme/ft", cache=hf_cache).links
    [newest] = import_snapshot(reg, "acme/ft2", cache=hf_cache).links

    assert (hub.ref, hub.created) == ("acme/base@v1", False)
    assert hub.note == (
        "2 versions of acme/base are registered: linked acme/base@v1 "
        "(the newest whose source is hf://acme/base)"
    )
    assert (newest.ref, newest.note) == (
        "acme/other@2",
        "2 versions of acme/other are registered: linked acme/other@2 (the newest)",
    )


def test_a_team_requiring_approval_refuses_an_unknown_base_unless_overridden(
    reg: LocalRegistry, engine: Engine, hf_cache: HfCache
) -> None:
    reg.create_team(name="fraud", require_approval=True)
    hf_cache.add("acme/ft", {**weights(), "README.md": card(base_model="acme/base")})
    with pytest.raises(PolicyViolation, match="acme/base@unpinned is not approved for team fraud"):
        import_snapshot(reg, "acme/ft", cache=hf_cache, team="fraud")
    assert artifact_id(engine, "model", "acme/base") == [], "one transaction: nothing left"
    result = import_snapshot(reg, "acme/ft", cache=hf_cache, team="fraud", override="vetted")
    assert result.model.team == "fraud"


def test_a_malicious_snapshot_is_quarantined_and_its_base_stays_clean(
    reg: LocalRegistry, hf_cache: HfCache
) -> None:
    evil = b"cos\nsystem\n(S'echo pwned'\ntR."  # a pickle calling os.system
    files = {"pytorch_model.bin": evil, "README.md": card(base_model="acme/base")}
    hf_cache.add("acme/evil", files)
    result = import_snapshot(reg, "acme/evil", cache=hf_cache)
    assert (result.model.status, result.model.finding, result.model.format) == (
        "compromised",
        "compromised",
        "pytorch",
    )
    assert reg.show("acme/base@unpinned").status == "clean"


def test_importing_the_same_snapshot_twice_is_refused_and_changes_nothing(
    reg: LocalRegistry, hf_cache: HfCache
) -> None:
    hf_cache.add("acme/ft", {**weights(), "README.md": card(base_model="acme/base")})
    import_snapshot(reg, "acme/ft", cache=hf_cache)
    before = operations(reg)
    with pytest.raises(AlreadyExists, match="is already registered"):
        import_snapshot(reg, "acme/ft", cache=hf_cache)
    assert operations(reg) == before


def test_no_card_imports_without_lineage_and_warns(reg: LocalRegistry, hf_cache: HfCache) -> None:
    hf_cache.add("acme/bare", weights())
    hf_cache.add("acme/plain", {**weights(2), "README.md": "# no front matter\n"})
    bare = import_snapshot(reg, "acme/bare", cache=hf_cache)
    plain = import_snapshot(reg, "acme/plain", cache=hf_cache)
    assert (bare.links, bare.relation, bare.model.parents) == ([], None, [])
    assert bare.warnings == ["no README.md model card: imported without base models or datasets"]
    assert plain.warnings == [
        "README.md has no YAML front matter: imported without base models or datasets"
    ]


# --- the relation: from the card, or inferred as the Hub does ----------------------------------


@pytest.mark.parametrize(
    ("files", "metadata", "relation", "basis"),
    [
        pytest.param(
            weights(),
            {"base_model": "acme/base"},
            "finetune",
            "inferred: the Hub's default, no adapter or quantization files",
            id="plain",
        ),
        pytest.param(
            weights(),
            {"base_model": ["acme/a", "acme/b"]},
            "merge",
            "inferred: several base models",
            id="several-bases",
        ),
        pytest.param(
            {"adapter_config.json": '{"r": 8}', "adapter_model.safetensors": tensors(1)},
            {"base_model": "acme/base"},
            "adapter",
            "inferred: adapter files (adapter_config.json, adapter_model.safetensors)",
            id="adapter",
        ),
        pytest.param(
            {"model-Q4_K_M.gguf": gguf()},
            {"base_model": "acme/base"},
            "quantized",
            "inferred: quantized weights (model-Q4_K_M.gguf)",
            id="gguf",
        ),
        pytest.param(
            {
                "model.safetensors": tensors(1),
                "config.json": '{"quantization_config": {"quant_method": "gptq"}}',
            },
            {"base_model": "acme/base"},
            "quantized",
            "inferred: quantization_config in config.json (gptq)",
            id="gptq-config",
        ),
        pytest.param(
            {"model.safetensors": tensors(1), "quant_config.json": '{"w_bit": 4}'},
            {"base_model": "acme/base"},
            "quantized",
            "inferred: AutoAWQ's quant_config.json",
            id="awq",
        ),
        pytest.param(
            weights(),
            {"base_model": "acme/base", "base_model_relation": "quantized"},
            "quantized",
            "base_model_relation in the model card",
            id="explicit",
        ),
        pytest.param(
            {"adapter_config.json": "{}", "adapter_model.safetensors": tensors(1)},
            {"base_model": "acme/base", "base_model_relation": "finetune"},
            "finetune",
            "base_model_relation in the model card",
            id="card-wins-over-files",
        ),
        pytest.param(
            weights(),
            {"base_model": ["acme/a", "acme/b"], "base_model_relation": "merge"},
            "merge",
            "base_model_relation in the model card",
            id="explicit-merge",
        ),
    ],
)
def test_relation_comes_from_the_card_or_is_inferred_as_the_hub_does(
    hf_cache: HfCache,
    files: dict[str, bytes | str],
    metadata: dict[str, Any],
    relation: str,
    basis: str,
) -> None:
    hf_cache.add("acme/model", {**files, "README.md": card(**metadata)})
    plan = plan_import(locate_snapshot("acme/model", cache_dir=hf_cache.root))
    assert (plan.relation, plan.relation_basis) == (relation, basis)


# --- bad cards: a clear one-line error naming the problem --------------------------------------


@pytest.mark.parametrize(
    ("readme", "message"),
    [
        pytest.param(
            "---\nbase_model: [acme/a\nlicense: mit\n---\n",
            r"README.md: the YAML front matter is broken: .*\(line \d+, column \d+",
            id="broken-yaml",
        ),
        pytest.param(
            "---\n- acme/a\n- acme/b\n---\n",
            "the YAML front matter is not a mapping of fields",
            id="not-a-mapping",
        ),
        pytest.param(
            card(base_model="acme/base", base_model_relation="telepathy"),
            "unknown base_model_relation 'telepathy'",
            id="unknown-relation",
        ),
        pytest.param(
            card(base_model="acme/model"),
            r"base_model names the model itself \(acme/model\)",
            id="self-base",
        ),
        pytest.param(
            card(base_model=["acme/a", "ACME/Model"]),
            "base_model names the model itself",
            id="self-base-other-case",
        ),
        pytest.param(
            card(base_model="not a repo/id!"),
            "base_model 'not a repo/id!' is not a Hugging Face repo id",
            id="bad-id",
        ),
        pytest.param(
            card(base_model="a/b/c"),
            "base_model 'a/b/c' is not a Hugging Face repo id",
            id="too-many-slashes",
        ),
        pytest.param(
            card(base_model={"name": "acme/a"}),
            "base_model must be a repo id or a list of repo ids",
            id="base-is-a-mapping",
        ),
        pytest.param(
            card(base_model="acme/base", datasets=[1, 2]),
            "datasets must be a repo id or a list of repo ids",
            id="datasets-numbers",
        ),
        pytest.param(
            card(base_model="acme/base", base_model_relation="merge"),
            "base_model_relation is merge but base_model names one model",
            id="merge-of-one",
        ),
        pytest.param(
            card(base_model=["acme/a", "acme/b"], base_model_relation="adapter"),
            "base_model names 2 models but base_model_relation is adapter",
            id="adapter-of-two",
        ),
        pytest.param(
            card(base_model="acme/a", license=["mit", "bsd"]),
            "license must be a single value",
            id="license-list",
        ),
    ],
)
def test_bad_cards_are_refused_with_one_clear_line(
    hf_cache: HfCache, readme: str, message: str
) -> None:
    hf_cache.add("acme/model", {**weights(), "README.md": readme})
    snapshot = locate_snapshot("acme/model", cache_dir=hf_cache.root)
    with pytest.raises(InvalidModelCard, match=message) as caught:
        plan_import(snapshot)
    assert "\n" not in caught.value.diagnostics()


def test_a_card_that_is_not_utf8_is_refused(hf_cache: HfCache) -> None:
    hf_cache.add("acme/model", {**weights(), "README.md": b"---\nlicense: \xff\xfe\n---\n"})
    with pytest.raises(InvalidModelCard, match="README.md: is not UTF-8 text"):
        plan_import(locate_snapshot("acme/model", cache_dir=hf_cache.root))


def test_repeated_bases_are_recorded_once_with_a_warning(hf_cache: HfCache) -> None:
    hf_cache.add("acme/model", {**weights(), "README.md": card(base_model=["acme/a", "acme/a"])})
    plan = plan_import(locate_snapshot("acme/model", cache_dir=hf_cache.root))
    assert [base.repo_id for base in plan.bases] == ["acme/a"]
    assert plan.relation == "finetune"
    assert plan.warnings == ("README.md lists base_model acme/a twice; recorded once",)


# --- finding the snapshot: cache, revisions, directories --------------------------------------


def test_revisions_resolve_by_branch_tag_or_commit(hf_cache: HfCache) -> None:
    old = hf_cache.add("acme/model", {**weights(1), "README.md": card()}, refs=("v1.0",))
    new = hf_cache.add("acme/model", {**weights(2), "README.md": card(license="mit")})

    by_default = locate_snapshot("acme/model", cache_dir=hf_cache.root)
    by_tag = locate_snapshot("acme/model", revision="v1.0", cache_dir=hf_cache.root)
    by_commit = locate_snapshot("acme/model", revision=old.name, cache_dir=hf_cache.root)
    by_directory = locate_snapshot(new)

    assert (by_default.commit, by_default.revision, by_default.repo_id) == (
        new.name,
        "main",
        "acme/model",
    )
    assert (by_tag.commit, by_tag.revision) == (old.name, "v1.0")
    assert (by_commit.commit, by_commit.revision) == (old.name, old.name)
    assert (by_directory.repo_id, by_directory.commit, by_directory.revision) == (
        "acme/model",
        new.name,
        "main",
    )
    assert by_default.blobs == hf_cache.repo_dir("acme/model") / "blobs"
    assert blobs_dir_of(new) == by_default.blobs
    plan = plan_import(by_tag)
    assert (plan.version, plan.source) == (old.name, f"hf://acme/model@{old.name}")


def test_a_revision_not_in_the_cache_names_the_cached_ones(hf_cache: HfCache) -> None:
    snapshot = hf_cache.add("acme/model", {**weights(), "README.md": card()})
    with pytest.raises(
        NotInHfCache, match="acme/model at revision v9 is not in the Hugging Face cache"
    ) as caught:
        locate_snapshot("acme/model", revision="v9", cache_dir=hf_cache.root)
    assert f"cached revisions: main, {snapshot.name}" in caught.value.diagnostics()
    with pytest.raises(NotInHfCache, match="acme/missing at revision main") as caught:
        locate_snapshot("acme/missing", cache_dir=hf_cache.root)
    assert "download it first with: hf download acme/missing" in caught.value.diagnostics()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("./nowhere", "nowhere does not exist"),
        ("a/b/c", "a/b/c does not exist"),
        ("not valid!", "'not valid!' is neither a directory nor a Hugging Face repo id"),
    ],
)
def test_a_target_that_is_neither_directory_nor_repo_id(
    hf_cache: HfCache, target: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        locate_snapshot(target, cache_dir=hf_cache.root)


def test_a_file_is_no_snapshot(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(tensors(1))
    with pytest.raises(InvalidInput, match="model.safetensors is a file, not a snapshot directory"):
        locate_snapshot(tmp_path / "model.safetensors")


def test_an_unreadable_config_is_a_warning_not_an_error(hf_cache: HfCache) -> None:
    files = {"model.safetensors": tensors(1), "config.json": "{not json"}
    hf_cache.add("acme/model", {**files, "README.md": card(base_model="acme/base")})
    plan = plan_import(locate_snapshot("acme/model", cache_dir=hf_cache.root))
    assert plan.relation == "finetune"
    [warning] = plan.warnings
    assert warning.startswith("config.json cannot be read (Expecting property name")


def test_a_snapshot_directory_and_another_revision_disagree(hf_cache: HfCache) -> None:
    snapshot = hf_cache.add("acme/model", {**weights(), "README.md": card()})
    with pytest.raises(
        InvalidInput, match=f"is the snapshot of commit {snapshot.name}, not of revision dev"
    ):
        locate_snapshot(snapshot, revision="dev")


def test_a_plain_directory_needs_a_name_and_is_versioned_by_revision(
    make_model: Callable[..., Path],
) -> None:
    path = make_model("local", {**weights(), "README.md": card(base_model="acme/base")})
    with pytest.raises(InvalidInput, match="is not in a Hugging Face cache"):
        plan_import(locate_snapshot(path))
    unpinned = plan_import(locate_snapshot(path), name="acme/local")
    tagged = plan_import(locate_snapshot(path, revision="v2"), name="acme/local")
    pinned = plan_import(locate_snapshot(path), name="acme/local", version="2024.1")
    assert (unpinned.version, unpinned.source, unpinned.commit) == ("main", "hf://acme/local", None)
    assert unpinned.warnings == (
        f"{path} records no commit: registered as version main (pass --version to pin it)",
    )
    assert (tagged.version, tagged.source) == ("v2", "hf://acme/local@v2")
    assert (pinned.version, pinned.warnings) == ("2024.1", ())
    with pytest.raises(InvalidInput, match="is not a Hugging Face repo id"):
        plan_import(locate_snapshot(path), name="acme/a/b")


def test_a_cache_snapshot_is_not_renamed(hf_cache: HfCache) -> None:
    snapshot = hf_cache.add("acme/model", weights())
    with pytest.raises(InvalidInput, match="is a snapshot of acme/model, not of acme/other"):
        plan_import(locate_snapshot(snapshot), name="acme/other")


# --- hashing through the cache's symlinks: into this repo's blobs only -------------------------


def test_snapshot_symlinks_are_followed_into_the_repo_blobs(hf_cache: HfCache) -> None:
    files = {**weights(), "tokenizer/vocab.txt": "a b c"}
    snapshot = locate_snapshot(hf_cache.add("acme/model", files))
    manifest = hash_tree(snapshot.path, allowed_roots=snapshot.allowed_roots)
    assert [(e.path, e.size) for e in manifest.entries] == [
        ("config.json", 22),
        ("model.safetensors", len(tensors(1.0))),
        ("tokenizer/vocab.txt", 5),
    ]
    with pytest.raises(UnsafePath, match=r"\.(json|safetensors)"):
        hash_tree(snapshot.path)  # without the blobs root, the links lead out of PATH


@pytest.mark.parametrize("where", ["outside", "other-repo"])
def test_a_snapshot_symlink_leading_elsewhere_is_refused(
    hf_cache: HfCache, tmp_path: Path, where: str
) -> None:
    snapshot = hf_cache.add("acme/model", weights())
    hf_cache.add("acme/other", {"secret.bin": b"other repo's bytes"})
    target = (
        tmp_path / "secret.txt"
        if where == "outside"
        else next((hf_cache.repo_dir("acme/other") / "blobs").iterdir())
    )
    target.write_bytes(b"not part of acme/model")
    (snapshot / "stolen.bin").symlink_to(target)
    located = locate_snapshot(snapshot)
    with pytest.raises(UnsafePath, match="stolen.bin"):
        hash_tree(located.path, allowed_roots=located.allowed_roots)


# --- verifying against the Hub's published hashes ---------------------------------------------


def test_a_snapshot_matches_the_hubs_hashes_by_sha256_and_git_blob_id(hf_cache: HfCache) -> None:
    snapshot = hf_cache.add("acme/model", {**weights(), "README.md": card()})
    info = hub_info(snapshot, "acme/model")
    published = HubFiles.from_json(info)
    manifest = hash_tree(snapshot, allowed_roots=[hf_cache.repo_dir("acme/model") / "blobs"])

    report = check_against_hub(snapshot, manifest, published)

    assert (report.ok, report.problems) == (True, [])
    assert {(c.path, c.algorithm, c.state) for c in report.files} == {
        ("README.md", "git-sha1", "match"),
        ("config.json", "git-sha1", "match"),
        ("model.safetensors", "sha256", "match"),
    }
    assert report.to_json()["matched"] == 3
    assert (report.repo_id, report.revision) == ("acme/model", snapshot.name)


def test_tampered_missing_and_extra_files_are_reported(hf_cache: HfCache) -> None:
    snapshot = hf_cache.add("acme/model", {**weights(), "README.md": card()})
    info = hub_info(snapshot, "acme/model")
    info["siblings"] = [s for s in info["siblings"] if s["rfilename"] != "README.md"]
    info["siblings"].append({"rfilename": "tokenizer.json", "size": 2, "blobId": "0" * 40})
    for name in ("model.safetensors", "config.json"):  # the blobs behind the links
        (snapshot / name).resolve().write_bytes(b"tampered")
    manifest = hash_tree(snapshot, allowed_roots=[hf_cache.repo_dir("acme/model") / "blobs"])

    report = check_against_hub(snapshot, manifest, HubFiles.from_json(info))

    assert not report.ok
    assert {c.path: (c.state, c.algorithm) for c in report.files} == {
        "README.md": ("extra", None),
        "config.json": ("mismatch", "git-sha1"),
        "model.safetensors": ("mismatch", "sha256"),
        "tokenizer.json": ("missing", "git-sha1"),
    }
    assert report.problems == [
        "extra: README.md",
        "mismatch: config.json",
        "mismatch: model.safetensors",
        "missing: tokenizer.json",
    ]


def test_hub_hashes_read_both_the_api_and_the_dataclass_spelling() -> None:
    sha = "e" * 64
    api = HubFiles.from_json(
        {
            "siblings": [
                {
                    "rfilename": "w.bin",
                    "size": 5,
                    "blobId": "1" * 40,
                    "lfs": {"sha256": sha, "size": 5, "pointerSize": 130},
                }
            ]
        }
    )
    asdict = HubFiles.from_json(
        {
            "siblings": [
                {
                    "rfilename": "w.bin",
                    "size": 5,
                    "blob_id": "1" * 40,
                    "lfs": {"sha256": sha, "size": 5, "pointer_size": 130},
                }
            ]
        }
    )
    assert api == asdict
    assert api.siblings[0].lfs == HubLfs(sha256=sha, size=5, pointer_size=130)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"id": "acme/m"}, "siblings: Field required"),
        ({"siblings": [{"size": 1}]}, r"siblings\.0\.rfilename: Field required"),
        ({"siblings": [{"rfilename": "a"}]}, r"siblings\[0\] \(a\) has neither lfs.sha256 nor "),
        (
            {"siblings": [{"rfilename": "a", "lfs": {"sha256": "xyz", "size": 1}}]},
            r"siblings\.0\.lfs\.sha256: String should match pattern",
        ),
        ([1, 2], "not a model_info"),
    ],
)
def test_malformed_hub_hashes_name_the_field(data: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        HubFiles.from_json(data)


def test_an_unreadable_hashes_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read .*missing.json"):
        HubFiles.read(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="bad.json is not a JSON document"):
        HubFiles.read(tmp_path / "bad.json")


def test_git_blob_ids_are_gits(tmp_path: Path) -> None:
    (tmp_path / "hello").write_bytes(b"hello\n")
    (tmp_path / "empty").write_bytes(b"")
    # `git hash-object` of these files.
    assert git_blob_sha1(tmp_path / "hello") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_sha1(tmp_path / "empty") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


# --- values: plans and references --------------------------------------------------------------


def test_a_plan_round_trips_and_a_tampered_plan_is_refused(hf_cache: HfCache) -> None:
    meta = {"base_model": ["acme/a", "acme/b"], "datasets": "acme/corpus", "license": "mit"}
    hf_cache.add("acme/model", {**weights(), "README.md": card(**meta)})
    plan = plan_import(locate_snapshot("acme/model", cache_dir=hf_cache.root))
    assert ImportPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    changes: list[tuple[dict[str, Any], str]] = [
        ({"relation": "finetune"}, "several base models make a merge"),
        ({"bases": [{"repo_id": "acme/model"}, {"repo_id": "acme/b"}]}, "its own base model"),
        (
            {"bases": [], "relation": None, "datasets": [{"repo_id": "x/y", "kind": "model"}]},
            "datasets must be dataset repositories",
        ),
        ({"repo_id": "a/b/c"}, r"repo_id: Value error"),
        ({"version": "has space"}, "version: String should match pattern"),
        ({"commit": "main"}, "commit: String should match pattern"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
    ]
    for change, message in changes:
        with pytest.raises(InvalidInput, match=message):
            ImportPlan.from_json({**plan.to_json(), **change})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("hf://acme/base", HubRef(repo_id="acme/base")),
        ("hf://acme/base@v1", HubRef(repo_id="acme/base", revision="v1")),
        ("hf://gpt2", HubRef(repo_id="gpt2")),
        (
            "hf://datasets/acme/corpus@main",
            HubRef(repo_id="acme/corpus", kind="dataset", revision="main"),
        ),
        ("s3://bucket/model", None),
        (None, None),
        ("hf://", None),
    ],
)
def test_hub_sources_parse(source: str | None, expected: HubRef | None) -> None:
    assert HubRef.from_source(source) == expected
    if expected is not None:
        assert HubRef.from_source(expected.source) == expected


def test_the_public_names_are_exported() -> None:
    assert sorted(registry.hf.__all__) == [
        "CardFacts",
        "HUB_RELATIONS",
        "HubFileCheck",
        "HubFiles",
        "HubLfs",
        "HubRef",
        "HubSibling",
        "HubVerifyReport",
        "ImportPlan",
        "Snapshot",
        "UNPINNED",
        "blobs_dir_of",
        "check_against_hub",
        "check_repo_id",
        "git_blob_sha1",
        "infer_relation",
        "locate_snapshot",
        "plan_import",
        "read_card",
    ]
    assert all(hasattr(registry.hf, name) for name in registry.hf.__all__)
    assert all(
        getattr(registry.hf, name).__doc__ for name in registry.hf.__all__ if not name.isupper()
    )


@pytest.mark.parametrize(
    "module_name", ["registry.hf._refs", "registry.hf._snapshot", "registry.hf._hub_hashes"]
)
def test_doctests(module_name: str) -> None:
    failures, attempted = doctest.testmod(importlib.import_module(module_name))
    assert (failures, attempted > 0) == (0, True)


# --- the real mbom executable ------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """``mbom`` on a fresh SQLite registry under its own MBOM_HOME, offline."""
    url = f"sqlite:///{tmp_path / 'home' / 'registry.db'}"
    local_registry(url).engine.dispose()
    env = cli_env(tmp_path, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "no-hf-home"))
    return Cli(env, tmp_path)


def test_cli_import_hf_then_verify_against_the_hubs_hashes(
    cli: Cli, hf_cache: HfCache, tmp_path: Path
) -> None:
    meta = {"base_model": "acme/base", "datasets": ["acme/corpus"], "license": "mit"}
    snapshot = hf_cache.add("acme/ft", {**weights(), "README.md": card(**meta)})
    hf_cache.add("acme/broken", {**weights(2), "README.md": "---\nbase_model: [x\n---\n"})
    hf_cache.add("acme/bare", weights(3))
    hashes = tmp_path / "acme-ft.json"
    hashes.write_text(json.dumps(hub_info(snapshot, "acme/ft")))
    cache = ("--cache-dir", hf_cache.root)

    imported, broken, missing, bare, ok = cli.many(
        ["import-hf", "acme/ft", *cache, "--publisher", "acme", "--json", 0],
        ["import-hf", "acme/broken", *cache, 2],
        ["import-hf", "acme/ft", "--revision", "v9", *cache, 1],
        ["import-hf", "acme/bare", *cache, 0],
        ["verify", snapshot, "--hf-hashes", hashes, "--json", 0],
    )

    result = imported.json()
    assert result["model"]["ref"] == f"acme/ft@{snapshot.name}"
    assert (result["model"]["source"], result["model"]["publisher"]) == (
        f"hf://acme/ft@{snapshot.name}",
        "acme",
    )
    assert [(link["ref"], link["relation"], link["created"]) for link in result["links"]] == [
        ("acme/base@unpinned", "finetune", True),
        ("acme/corpus@unpinned", "trained_on", True),
    ]
    assert (result["relation"], result["license"], result["revision"]) == (
        "finetune",
        "mit",
        "main",
    )
    assert "the YAML front matter is broken" in broken.error_line()
    assert "acme/ft at revision v9 is not in the Hugging Face cache" in missing.error_line()
    assert "mbom: warning: no README.md model card" in bare.err
    assert "Traceback" not in broken.err + missing.err
    report = ok.json()
    assert (report["ok"], report["matched"], report["problems"]) == (True, 3, [])
    assert {f["algorithm"] for f in report["files"]} == {"sha256", "git-sha1"}

    (snapshot / "config.json").resolve().write_text('{"model_type": "evil"}')
    tampered, human, combined = cli.many(
        ["verify", snapshot, "--hf-hashes", hashes, "--json", 1],
        ["verify", snapshot, "--hf-hashes", hashes, 1],
        ["verify", snapshot, "acme/ft@1", "--hf-hashes", hashes, 2],
    )
    assert tampered.json()["problems"] == ["mismatch: config.json"]
    assert "2/3 files match" in human.out
    assert "FAILED: mismatch: config.json" in human.out
    assert "--hf-hashes checks PATH against the Hub's hashes only" in combined.error_line()
    shown = json.loads(cli("show", "acme/base@unpinned", "--json").out)
    assert (shown["placeholder"], shown["source"]) == (True, "hf://acme/base")


def test_cli_import_hf_through_a_server(cli: Cli, hf_cache: HfCache, tmp_path: Path) -> None:
    from registry.api import create_app
    from registry.settings import Settings

    url = f"sqlite:///{tmp_path / 'home' / 'registry.db'}"
    reg = local_registry(url)
    token = reg.create_token(user="ci", role=Role.PUBLISHER).token
    snapshot = hf_cache.add("acme/ft", {**weights(), "README.md": card(base_model="acme/base")})
    with serve_in_thread(create_app(Settings(database_url=url), engine=reg.engine)) as server:
        remote = cli.remote(server, token)
        result = remote("import-hf", snapshot, "--json").json()
        again = remote("import-hf", snapshot, code=1)
    assert result["model"]["ref"] == f"acme/ft@{snapshot.name}"
    assert result["model"]["created_by"] == "ci"
    assert "is already registered" in again.error_line()
    assert reg.show("acme/base@unpinned").placeholder is True
    reg.engine.dispose()


def test_cli_import_hf_of_registered_files_takes_the_hinted_option(
    cli: Cli, hf_cache: HfCache
) -> None:
    """The duplicate-content refusal names an option import-hf really has."""
    hf_cache.add("acme/ft", {**weights(), "README.md": card(license="mit")})
    cache = ("--cache-dir", hf_cache.root)
    cli("import-hf", "acme/ft", *cache)
    refused = cli("import-hf", "acme/ft", *cache, "--version", "mirror", code=1)
    assert "pass --allow-duplicate-content" in refused.error_line()
    mirrored = cli("import-hf", "acme/ft", *cache, "--version", "mirror",
                   "--allow-duplicate-content", "--json")
    assert mirrored.json()["model"]["ref"] == "acme/ft@mirror"
