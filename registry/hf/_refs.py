"""Hugging Face repositories as the registry names them: ``hf://`` sources and versions.

A model card names its base models and datasets by repository id only
(``meta-llama/Llama-2-7b``), never by revision. The registry records such a
reference as ``name@unpinned`` with the source ``hf://org/name`` (datasets:
``hf://datasets/org/name``), and a snapshot read from the cache as
``name@<commit>`` with the source ``hf://org/name@<commit>``.

>>> ref = HubRef(repo_id="acme/base")
>>> ref.ref, ref.source
('acme/base@unpinned', 'hf://acme/base')
>>> HubRef.from_source("hf://datasets/acme/corpus@v2")
HubRef(repo_id='acme/corpus', kind=<Kind.DATASET: 'dataset'>, revision='v2')

``huggingface_hub`` is imported only to validate a repository id, so matching
sources stays cheap.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from registry.vocabulary import Kind

__all__ = ["UNPINNED", "HubRef", "check_repo_id"]

#: The version of a placeholder for a repository named without a revision.
UNPINNED = "unpinned"

_REVISION = re.compile(r"^[^\s@/\x00-\x1f\x7f]+$")
_PREFIX = {Kind.MODEL: "hf://", Kind.DATASET: "hf://datasets/"}


def check_repo_id(repo_id: object) -> str | None:
    """Why ``repo_id`` is no Hugging Face repository id, or ``None`` when it is one.

    The rule is ``huggingface_hub``'s (imported here, when first needed):

    >>> check_repo_id("acme/base") is None, check_repo_id("gpt2") is None
    (True, True)
    >>> check_repo_id("a/b/c") is not None
    True
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]

    if not isinstance(repo_id, str) or not repo_id:
        return "is not a repository id (a non-empty string)"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        return str(exc).removesuffix(".")
    return None


class HubRef(BaseModel):
    """A repository on the Hub (a model or a dataset), optionally at one revision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo_id: str = Field(min_length=1, max_length=96)
    kind: Kind = Kind.MODEL
    revision: str | None = Field(default=None, pattern=_REVISION.pattern, max_length=128)

    @field_validator("repo_id")
    @classmethod
    def _hub_repo_id(cls, repo_id: str) -> str:
        problem = check_repo_id(repo_id)
        if problem is not None:
            raise ValueError(f"{repo_id!r}: {problem}")
        return repo_id

    @property
    def version(self) -> str:
        """The registry version: the revision, or :data:`UNPINNED` when none is known."""
        return self.revision or UNPINNED

    @property
    def ref(self) -> str:
        """``name@version`` as the registry writes it."""
        return f"{self.repo_id}@{self.version}"

    @property
    def source(self) -> str:
        """``hf://org/name[@revision]`` (``hf://datasets/…`` for a dataset)."""
        suffix = f"@{self.revision}" if self.revision else ""
        return f"{_PREFIX[self.kind]}{self.repo_id}{suffix}"

    def same_repo(self, other: HubRef | None) -> bool:
        """Whether ``other`` names the same repository (any revision)."""
        return other is not None and (other.kind, other.repo_id) == (self.kind, self.repo_id)

    @classmethod
    def from_source(cls, source: str | None) -> HubRef | None:
        """The repository an ``hf://`` source names, or ``None`` for any other source."""
        if not source or not source.startswith("hf://"):
            return None
        kind = Kind.DATASET if source.startswith(_PREFIX[Kind.DATASET]) else Kind.MODEL
        rest = source[len(_PREFIX[kind]) :]
        repo_id, _, revision = rest.partition("@")
        if not repo_id or (revision and not _REVISION.match(revision)):
            return None
        # Not validated: a source is matched against, never registered from here.
        return cls.model_construct(repo_id=repo_id, kind=kind, revision=revision or None)
