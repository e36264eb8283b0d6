"""pending admissions: a stored version's name is held while the registry scans its files

Admission runs on the registry's side and can take minutes (a sandboxed
behavioral scan). ``pending_admission`` holds ``name@version`` meanwhile, with
the step admission is on and a heartbeat; the version itself is recorded only
when admission ends, so a pending version can be neither pulled, deployed nor
used as a parent. A row whose heartbeat stopped was left by a process that
died mid-admission: the next registration of that name takes it over.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_admission",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("team", sa.String(length=100), nullable=True),
        sa.Column("step", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "name", "version", name="uq_pending_admission_identity"),
    )


def downgrade() -> None:
    op.drop_table("pending_admission")
