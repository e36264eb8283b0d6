"""scan provenance: who ran each scan, the registry itself or a client

``scan_record.provenance`` is ``registry`` for a scan the registry ran in its
own process tree (the embedded registry's sandbox) and ``client`` for one a
client reported over the REST API. Only registry-run behavioral scans calibrate
later scans (the baseline of clean relatives), so that forged reports cannot
shift it.

Existing rows become ``client``: nothing recorded before this revision says
who ran a scan (an embedded registry and a server share the table, and a
report's ``actor`` is a user name either way), so none of them is trusted to
calibrate. A registry upgraded from 0005 calibrates again from the scans it
runs after the upgrade (``mbom rescan`` of clean relatives, embedded, rebuilds
the baseline at once).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scan_record", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "provenance",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="client",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("scan_record", schema=None) as batch_op:
        batch_op.drop_column("provenance")
