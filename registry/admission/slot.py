"""Holding a version's name while admission scans it: a pending row and its heartbeat.

:func:`holding` records the version as pending (see
:mod:`registry.service.pending`) in a transaction of its own, renews the hold
from a background thread while the scans run with no transaction open, and
releases it when admission ends either way: :meth:`Slot.finish` in the
transaction that records the version, or by abandoning it when admission was
refused or failed. A process killed outright leaves the row behind; its lease
runs out and the next registration of that version takes it over.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlmodel import Session

from registry.db import lock_for_write, unit_of_work
from registry.errors import MbomError
from registry.identity import Actor
from registry.service import pending
from registry.vocabulary import Kind

#: The shortest pause between two heartbeats (seconds), whatever the lease.
_MIN_BEAT = 0.2


class Slot:
    """One admission attempt's hold on a version's name."""

    def __init__(self, engine: Engine, ticket: pending.Ticket, lease: float) -> None:
        self.engine = engine
        self.ticket = ticket
        self.lease = lease

    def step(self, name: str) -> None:
        """Record what admission is doing now (shown by ``mbom admissions``)."""
        with unit_of_work(self.engine) as session:
            pending.renew(session, self.ticket, lease=self.lease, step=name)

    def finish(self, session: Session) -> None:
        """Release the hold inside the transaction that records the version."""
        pending.finish(session, self.ticket)

    def beat(self, stop: threading.Event) -> None:
        """Renew the lease until ``stop`` is set (a background thread's loop)."""
        while not stop.wait(max(_MIN_BEAT, self.lease / 4)):
            # A busy or briefly unreachable database only delays this beat; the
            # lease is four beats long.
            with contextlib.suppress(MbomError, OSError), unit_of_work(self.engine) as session:
                if not pending.renew(session, self.ticket, lease=self.lease):
                    return  # released, or taken over by another attempt


@contextmanager
def holding(
    engine: Engine,
    *,
    actor: Actor,
    kind: Kind,
    name: str,
    version: str,
    digest: str,
    team: str | None,
    lease: float = pending.DEFAULT_LEASE,
    preflight: Callable[[Session], None] | None = None,
) -> Iterator[Slot]:
    """Hold ``name@version`` as pending for the duration of the block.

    ``preflight`` runs first, in the same transaction (the checks that refuse
    before minutes of scanning; a refusal leaves nothing pending). The block must call
    :meth:`Slot.finish` in the transaction that records the version; if the
    block leaves without that transaction committing, the hold is released here.
    """
    with unit_of_work(engine) as session:
        lock_for_write(session)  # the checks and the hold see one state
        if preflight is not None:  # refused here, nothing is held
            preflight(session)
        ticket = pending.begin(
            session,
            actor=actor,
            kind=kind,
            name=name,
            version=version,
            digest=digest,
            team=team,
            lease=lease,
        )
    slot = Slot(engine, ticket, lease)
    stop = threading.Event()
    heart = threading.Thread(target=slot.beat, args=(stop,), name="mbom-admission-lease")
    heart.daemon = True
    heart.start()
    committed = False
    try:
        yield slot
        committed = True
    finally:
        stop.set()
        heart.join()
        if not committed:
            # Best effort: if the database is gone too, the lease runs out instead.
            with contextlib.suppress(Exception), unit_of_work(engine) as session:
                pending.abandon(session, ticket)
