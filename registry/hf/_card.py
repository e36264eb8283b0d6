"""Reading a model card's lineage metadata with ``huggingface_hub``.

The card is the snapshot's ``README.md``; its YAML front matter is read with
``huggingface_hub.metadata_load`` and ``ModelCardData``, the same code the Hub's
own client uses. Only what lineage needs is kept: ``base_model`` (one id or a
list), ``base_model_relation``, ``datasets``, ``license`` and ``pipeline_tag``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import InvalidModelCard
from registry.hf._refs import check_repo_id

__all__ = ["CARD_NAME", "CardFacts", "read_card"]

CARD_NAME = "README.md"


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
    import yaml  # type: ignore[import-untyped]  # huggingface_hub's own YAML parser
    from huggingface_hub import metadata_load

    try:
        metadata = metadata_load(path)
    except yaml.YAMLError as exc:
        raise InvalidModelCard(
            CARD_NAME, f"the YAML front matter is broken: {_yaml_problem(exc)}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidModelCard(CARD_NAME, "is not UTF-8 text", hint="re-save it as UTF-8") from exc
    except ValueError as exc:
        raise InvalidModelCard(
            CARD_NAME, "the YAML front matter is not a mapping of fields"
        ) from exc
    return metadata


def _yaml_problem(exc: Exception) -> str:
    """One line from a YAML error: what, and where in the front matter."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1} of the front matter)" if mark else ""
    return f"{problem}{where}"


def _card_data(metadata: Mapping[Any, Any]) -> Any:
    from huggingface_hub import ModelCardData

    fields = {k: v for k, v in metadata.items() if k != "model-index"}  # eval results: unused
    for key in [key for key in fields if not isinstance(key, str)]:
        fields.pop(key)  # a numeric YAML key cannot be a keyword argument; lineage uses none
    fields.pop("ignore_metadata_errors", None)
    return ModelCardData(**fields)


def _repo_ids(value: object, field: str, warnings: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidModelCard(
            CARD_NAME,
            f"{field} must be a repo id or a list of repo ids, not {value!r}",
        )
    ids: list[str] = []
    for item in items:
        problem = check_repo_id(item.strip())
        if problem is not None:
            raise InvalidModelCard(
                CARD_NAME,
                f"{field} {item!r} is not a Hugging Face repo id: {problem}",
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
        raise InvalidModelCard(CARD_NAME, f"{field} must be a single value, not {value!r}")
    return str(value).strip() or None
