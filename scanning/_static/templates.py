"""Jinja chat templates (tokenizer configs, GGUF metadata) that escape their sandbox."""

from __future__ import annotations

import re

from scanning._static.context import ScanContext, Where
from scanning.report import Severity

__all__ = ["check_chat_template"]

_ESCAPES = re.compile(
    r"__(?:class|mro|subclasses|globals|builtins|import|init|base|bases|getattribute|"
    r"dict|code|reduce|reduce_ex|loader|spec)__|\|\s*attr\s*\(|\b(?:os|subprocess)\s*\.\s*"
    r"(?:system|popen|Popen|run)|\b(?:eval|exec)\s*\(|lipsum\s*\.|cycler\s*\.|joiner\s*\.",
)


def check_chat_template(
    template: str, ctx: ScanContext, where: Where, *, field: str, offset: int | None = None
) -> None:
    """Report a template that reaches Python internals (server-side template injection)."""
    match = _ESCAPES.search(template)
    if match is None:
        return
    ctx.report(
        where,
        "template.injection",
        f"{field} contains {match.group(0)!r}",
        Severity.MALICIOUS,
        "chat templates are rendered by Jinja when the model is served; reaching Python "
        "internals from a template runs arbitrary code (CVE-2024-34359)",
        offset=offset,
    )
