"""Reading a model card's lineage metadata with ``huggingface_hub``.

The card is the snapshot's ``README.md``; its YAML front matter is read with
``huggingface_hub.metadata_load`` and ``ModelCardData``, the same code the Hub's
own client uses. Only what lineage needs is kept: ``base_model`` (one id or a
list), ``base_model_relation``, ``datasets``, ``license`` and ``pipeline_tag``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from registry.errors import InvalidModelCard
from registry.hf._refs import check_repo_id
from registry.limits import (
    MAX_CARD_BYTES,
    MAX_CARD_FRONT_MATTER_BYTES,
    MAX_CARD_LIST_ITEMS,
    MAX_CARD_NODES,
    MAX_JSON_DEPTH,
    brief,
    clip,
)

__all__ = ["CARD_NAME", "CardFacts", "read_card"]

CARD_NAME = "README.md"
_LINEAGE_FIELDS = ("base_model", "base_model_relation", "datasets", "license", "pipeline_tag")
_TEXT_CHARS = 200  # a license, a pipeline tag, a relation: a word or two


@dataclass(frozen=True)
class CardFacts:
    """The lineage metadata of a model card, checked but not yet interpreted.

    ``relation`` is ``base_model_relation`` as written (``None`` when absent);
    ``warnings`` are what could be ignored safely (a repeated base, say).
    """

    bases: tuple[str, ...] = ()
    relation: str | None = None
    datasets: tuple[str, ...] = ()
    license: str | None = None
    pipeline_tag: str | None = None
    warnings: tuple[str, ...] = ()


def read_card(snapshot: Path) -> CardFacts | None:
    """The card's facts, or ``None`` when ``snapshot`` has no ``README.md`` or no front matter.

    Raises :class:`~registry.errors.InvalidModelCard` naming the problem when
    the front matter is no YAML mapping, or a field has the wrong shape or is
    no valid repository id.
    """
    path = snapshot / CARD_NAME
    if not path.is_file():
        return None
    metadata = _load_metadata(path)
    if metadata is None:
        return None
    data = _card_data(metadata)
    warnings: list[str] = []
    return CardFacts(
        bases=_repo_ids(data.get("base_model"), "base_model", warnings),
        relation=_optional_text(data.get("base_model_relation"), "base_model_relation"),
        datasets=_repo_ids(data.get("datasets"), "datasets", warnings),
        license=_optional_text(data.get("license"), "license"),
        pipeline_tag=_optional_text(data.get("pipeline_tag"), "pipeline_tag"),
        warnings=tuple(warnings),
    )


def _load_metadata(path: Path) -> dict[str, Any] | None:
    """The front matter as ``huggingface_hub.metadata_load`` reads it, within the limits.

    The card's size, the front matter's size, its node count and depth are
    checked before any YAML object is built, and aliases are refused: an alias
    bomb (a list of aliases of lists of aliases …) would otherwise expand into
    billions of items the moment anything walks it.
    """
    import yaml  # type: ignore[import-untyped]  # huggingface_hub's own YAML parser
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    match = REGEX_YAML_BLOCK.search(_card_text(path))
    if match is None:
        return None
    block = match.group(2)
    _check_size(
        len(block.encode("utf-8", "surrogatepass")),
        MAX_CARD_FRONT_MATTER_BYTES,
        "its YAML front matter",
    )
    try:
        metadata = yaml.load(block, Loader=_card_loader())  # a SafeLoader, with limits
    except yaml.YAMLError as exc:
        raise InvalidModelCard(
            CARD_NAME, f"the YAML front matter is broken: {_yaml_problem(exc)}"
        ) from exc
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidModelCard(CARD_NAME, "the YAML front matter is not a mapping of fields")
    return metadata


def _card_text(path: Path) -> str:
    """The card as text (``utf-8-sig``, as the Hub reads it), refused when oversized."""
    try:
        _check_size(path.stat().st_size, MAX_CARD_BYTES, "it")
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidModelCard(CARD_NAME, f"cannot be read: {exc.strerror}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidModelCard(CARD_NAME, "is not UTF-8 text", hint="re-save it as UTF-8") from exc


def _check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise InvalidModelCard(
            CARD_NAME,
            f"{what} is {size:,} bytes, more than the {limit:,} mbom reads",
            hint="lineage needs only base_model, base_model_relation and datasets",
        )


@cache
def _card_loader() -> type[Any]:
    """``yaml.SafeLoader`` refusing aliases, deep nesting and too many nodes.

    The checks run while nodes are composed, before anything is constructed.
    Built on first use: importing YAML costs every CLI start 40 ms.
    """
    import yaml

    class CardLoader(yaml.SafeLoader):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.nodes = 0
            self.depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            problem = self._problem()
            if problem is not None:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, problem, mark)
            self.nodes += 1
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def _problem(self) -> str | None:
            if self.check_event(yaml.AliasEvent):
                return "aliases (*name) are not allowed in a model card"
            if self.nodes >= MAX_CARD_NODES:
                return f"more than {MAX_CARD_NODES:,} values"
            if self.depth >= MAX_JSON_DEPTH:
                return f"nested more than {MAX_JSON_DEPTH} deep"
            return None

    return CardLoader


def _yaml_problem(exc: Exception) -> str:
    """One short line from a YAML error: what, and where in the front matter."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1} of the front matter)" if mark else ""
    return f"{clip(problem)}{where}"


def _card_data(metadata: Mapping[Any, Any]) -> Any:
    """The lineage fields as ``ModelCardData``; the rest (tags, eval results) is not read.

    Handing over only these keeps huggingface_hub's quadratic de-duplication of
    ``tags`` (and its model-index parsing) off a card with a million tags.
    """
    from huggingface_hub import ModelCardData

    return ModelCardData(**{k: metadata[k] for k in _LINEAGE_FIELDS if k in metadata})


def _repo_ids(value: object, field: str, warnings: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidModelCard(
            CARD_NAME,
            f"{field} must be a repo id or a list of repo ids, not {brief(value)}",
        )
    if len(items) > MAX_CARD_LIST_ITEMS:
        raise InvalidModelCard(
            CARD_NAME,
            f"{field} lists {len(items):,} ids, more than the {MAX_CARD_LIST_ITEMS:,} allowed",
        )
    ids: list[str] = []
    for item in items:
        problem = check_repo_id(item.strip())
        if problem is not None:
            raise InvalidModelCard(
                CARD_NAME,
                f"{field} {brief(item)} is not a Hugging Face repo id: {clip(problem)}",
                hint=f"write {field} as org/name",
            )
        if item.strip() in ids:
            warnings.append(f"{CARD_NAME} lists {field} {item.strip()} twice; recorded once")
        else:
            ids.append(item.strip())
    return tuple(ids)


def _optional_text(value: object, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool | dict | list):
        raise InvalidModelCard(CARD_NAME, f"{field} must be a single value, not {brief(value)}")
    text = str(value).strip()
    if len(text) > _TEXT_CHARS:
        raise InvalidModelCard(CARD_NAME, f"{field} is longer than {_TEXT_CHARS} characters")
    return text or None
