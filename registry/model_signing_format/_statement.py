"""The in-toto statement v1 that ``model_signing`` signs, as frozen value objects.

Layout (predicate ``https://model_signing/signature/v1.0``)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": MODEL_NAME, "digest": {"sha256": ROOT}}],
     "predicateType": "https://model_signing/signature/v1.0",
     "predicate": {
       "serialization": {"method": "files", "hash_type": "sha256",
                         "allow_symlinks": false, "ignore_paths": [".git", ...]},
       "resources": [{"name": "dir/file", "algorithm": "sha256", "digest": HEX}, ...]}}

``ROOT`` is the SHA-256 of the concatenated raw resource digests in the order
the resources are listed; producers list them sorted by path *components*
(``pathlib.PurePosixPath`` order: ``a/b`` before ``a-b/c``), so we do too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from registry._hashing import SHA256_HEX_RE, path_problem
from registry.errors import MalformedBundle
from registry.model_signing_format._bundle import load_limited_json

__all__ = [
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "Resource",
    "Serialization",
    "Statement",
    "resource_order",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
_COMPAT_PREDICATE_TYPE = "https://model_signing/Digests/v0.1"

#: The resource name ``model_signing`` gives the only file of a single-file model.
SINGLE_FILE_NAME = "."


def resource_order(name: str) -> tuple[str, ...]:
    """The sort key of a resource name: its path components (PurePosixPath order)."""
    return tuple(name.split("/"))


@dataclass(frozen=True)
class Resource:
    """One signed file: its relative POSIX path and SHA-256 (hex)."""

    name: str
    digest: str
    algorithm: str = "sha256"

    def __post_init__(self) -> None:
        if self.algorithm != "sha256":
            raise MalformedBundle(
                f"resource {self.name!r} is hashed with {self.algorithm!r}; "
                "mbom checks sha256 only",
                hint="sign with `model_signing sign key` and its default --hash sha256",
            )
        if self.name != SINGLE_FILE_NAME and path_problem(self.name) is not None:
            raise MalformedBundle(f"resource name {self.name!r} {path_problem(self.name)}")
        if not isinstance(self.digest, str) or not SHA256_HEX_RE.fullmatch(self.digest):
            raise MalformedBundle(f"resource {self.name!r} has no valid sha256 hex digest")

    def to_json(self) -> dict[str, Any]:
        """``{"name", "algorithm", "digest"}``."""
        return {"name": self.name, "algorithm": self.algorithm, "digest": self.digest}

    @classmethod
    def from_json(cls, data: object) -> Resource:
        """Rebuild a resource descriptor, validating every field."""
        fields = _object(data, "a resource")
        name, algorithm, digest = (fields.get(key) for key in ("name", "algorithm", "digest"))
        if not all(isinstance(value, str) for value in (name, algorithm, digest)):
            raise MalformedBundle("a resource lacks its name, algorithm or digest")
        return cls(name=str(name), digest=str(digest), algorithm=str(algorithm))


@dataclass(frozen=True)
class Serialization:
    """How the model was turned into resources (the predicate's ``serialization``)."""

    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()
    method: str = "files"
    hash_type: str = "sha256"

    def __post_init__(self) -> None:
        if self.method != "files":
            raise MalformedBundle(
                f"serialization method {self.method!r} is not supported; mbom checks "
                "'files' (one digest per file) only",
                hint="sign without --shard-size / shard serialization",
            )
        if self.hash_type != "sha256":
            raise MalformedBundle(
                f"hash type {self.hash_type!r} is not supported; mbom checks sha256 only"
            )

    def to_json(self) -> dict[str, Any]:
        """The parameters as ``model_signing`` records them (``ignore_paths`` only if any)."""
        data: dict[str, Any] = {
            "method": self.method,
            "hash_type": self.hash_type,
            "allow_symlinks": self.allow_symlinks,
        }
        if self.ignore_paths:
            data["ignore_paths"] = list(self.ignore_paths)
        return data

    @classmethod
    def from_json(cls, data: object) -> Serialization:
        """Rebuild the parameters; unknown methods and hash types are refused."""
        fields = _object(data, "predicate.serialization")
        method, hash_type = fields.get("method"), fields.get("hash_type")
        allow_symlinks = fields.get("allow_symlinks", False)
        ignore_paths = fields.get("ignore_paths", [])
        if not isinstance(method, str) or not isinstance(hash_type, str):
            raise MalformedBundle("predicate.serialization lacks its method or hash_type")
        if not isinstance(allow_symlinks, bool):
            raise MalformedBundle("predicate.serialization.allow_symlinks is not a boolean")
        if not isinstance(ignore_paths, list) or not all(isinstance(p, str) for p in ignore_paths):
            raise MalformedBundle("predicate.serialization.ignore_paths is not a list of paths")
        return cls(
            allow_symlinks=allow_symlinks,
            ignore_paths=tuple(ignore_paths),
            method=method,
            hash_type=hash_type,
        )


@dataclass(frozen=True)
class Statement:
    """A model-signing in-toto statement: the model's name, its files and their digests.

    Build one with :meth:`for_resources` (sorts the resources, computes the
    root digest) or :meth:`from_json` (checks the recorded root digest).
    """

    model_name: str
    root_digest: str
    serialization: Serialization
    resources: tuple[Resource, ...]

    def __post_init__(self) -> None:
        names = [resource.name for resource in self.resources]
        if len(set(names)) != len(names):
            raise MalformedBundle("the statement lists a resource twice")
        computed = _root_digest(self.resources)
        if computed != self.root_digest:
            raise MalformedBundle(
                f"the statement is inconsistent: its subject digest is {self.root_digest}, "
                f"its resources hash to {computed}"
            )

    @classmethod
    def for_resources(
        cls, model_name: str, resources: Iterable[Resource], serialization: Serialization
    ) -> Statement:
        """A statement over ``resources``, sorted as ``model_signing`` sorts them."""
        ordered = tuple(sorted(resources, key=lambda resource: resource_order(resource.name)))
        return cls(model_name, _root_digest(ordered), serialization, ordered)

    @property
    def digests(self) -> dict[str, str]:
        """Resource name to SHA-256 hex."""
        return {resource.name: resource.digest for resource in self.resources}

    def to_json(self) -> dict[str, Any]:
        """The statement as a JSON object (the DSSE payload, decoded)."""
        return {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.model_name, "digest": {"sha256": self.root_digest}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "serialization": self.serialization.to_json(),
                "resources": [resource.to_json() for resource in self.resources],
            },
        }

    def to_payload(self) -> bytes:
        """The UTF-8 JSON bytes that get signed (indented like protobuf's JSON printer)."""
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: object) -> Statement:
        """Rebuild a statement, refusing other statement or predicate types."""
        fields = _object(data, "the in-toto statement")
        if fields.get("_type") != STATEMENT_TYPE:
            raise MalformedBundle(f"the payload is not an in-toto {STATEMENT_TYPE} statement")
        predicate_type = fields.get("predicateType")
        if predicate_type == _COMPAT_PREDICATE_TYPE:
            raise MalformedBundle(
                f"predicate {predicate_type} (model_signing before 1.0) is not supported",
                hint="re-sign the model with model_signing 1.0 or later",
            )
        if predicate_type != PREDICATE_TYPE:
            raise MalformedBundle(f"predicate type {predicate_type!r} is not {PREDICATE_TYPE}")
        name, root = _subject(fields.get("subject"))
        predicate = _object(fields.get("predicate"), "the predicate")
        resources = predicate.get("resources")
        if not isinstance(resources, list):
            raise MalformedBundle("predicate.resources is not a list")
        return cls(
            model_name=name,
            root_digest=root,
            serialization=Serialization.from_json(predicate.get("serialization")),
            resources=tuple(Resource.from_json(item) for item in resources),
        )

    @classmethod
    def from_payload(cls, payload: bytes) -> Statement:
        """Parse the DSSE payload bytes."""
        return cls.from_json(load_limited_json(payload, "the DSSE payload"))


def _root_digest(resources: Iterable[Resource]) -> str:
    hasher = hashlib.sha256()
    for resource in resources:
        hasher.update(bytes.fromhex(resource.digest))
    return hasher.hexdigest()


def _subject(data: object) -> tuple[str, str]:
    if not isinstance(data, list) or len(data) != 1:
        raise MalformedBundle("the statement must have exactly one subject")
    subject = _object(data[0], "the subject")
    name, digest = subject.get("name"), subject.get("digest")
    root = digest.get("sha256") if isinstance(digest, Mapping) else None
    if not isinstance(name, str) or not isinstance(root, str) or not SHA256_HEX_RE.fullmatch(root):
        raise MalformedBundle("the subject lacks its name or sha256 digest")
    return name, root


def _object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise MalformedBundle(f"{what} is not a JSON object")
    return data
