"""keyed audit chain: the HMAC key's id and the state digests per event

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing events keep key_id NULL: a legacy, unkeyed segment that an admin
    # seals once with `mbom audit anchor`.
    with op.batch_alter_table("audit_event") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("state", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_column("state")
        batch.drop_column("key_id")
