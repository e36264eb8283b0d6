"""Marking the domain operations that write."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlmodel import Session

from registry.db import lock_for_write

P = ParamSpec("P")
R = TypeVar("R")


def mutation(
    operation: Callable[Concatenate[Session, P], R],
) -> Callable[Concatenate[Session, P], R]:
    """Take the writers' lock before the operation reads anything it will write from.

    A mutation nested in another runs in the outer one's transaction and lock; on
    SQLite a transaction that has only read so far is begun again as a writer (see
    :func:`registry.db.lock_for_write`).
    """

    @functools.wraps(operation)
    def run(session: Session, /, *args: P.args, **kwargs: P.kwargs) -> R:
        lock_for_write(session)
        return operation(session, *args, **kwargs)

    return run
