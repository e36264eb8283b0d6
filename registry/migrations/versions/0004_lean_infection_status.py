"""lean infection table and artifact status for set-based propagation

The ``infection`` table is derived state the service rebuilds (from the closure
and the flags) and never points at a deleted artifact: its two foreign keys
cost more than the rows on a 20k-descendant flag (PostgreSQL runs two trigger
checks per inserted row). ``ix_artifact_status`` made every status change a
non-HOT update of the wide artifact row; listing by status scans instead, and
on PostgreSQL the artifact pages keep room for heap-only updates.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _infection(name: str, *, foreign_keys: bool) -> None:
    constraints: list[sa.Constraint] = []
    if foreign_keys:
        constraints = [
            sa.ForeignKeyConstraint(["artifact_id"], ["artifact.id"]),
            sa.ForeignKeyConstraint(["source_id"], ["artifact.id"]),
        ]
    op.create_table(
        name,
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("via_id", sa.Integer(), nullable=False),
        *constraints,
        sa.PrimaryKeyConstraint("artifact_id", "source_id", name=f"pk_{name}"),
    )


def _rebuild_infection(*, foreign_keys: bool) -> None:
    _infection("infection_rebuilt", foreign_keys=foreign_keys)
    op.execute(
        "INSERT INTO infection_rebuilt (artifact_id, source_id, depth, via_id) "
        "SELECT artifact_id, source_id, depth, via_id FROM infection"
    )
    op.drop_index("ix_infection_source", table_name="infection")
    op.drop_table("infection")
    op.rename_table("infection_rebuilt", "infection")
    op.create_index("ix_infection_source", "infection", ["source_id"])


def upgrade() -> None:
    _rebuild_infection(foreign_keys=False)
    op.drop_index("ix_artifact_status", table_name="artifact")
    if op.get_bind().dialect.name == "postgresql":
        # Room on each page for the new row versions of a status change, so that a
        # flag's thousands of updates stay heap-only (no index writes).
        op.execute("ALTER TABLE artifact SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE artifact RESET (fillfactor)")
    op.create_index("ix_artifact_status", "artifact", ["status"])
    _rebuild_infection(foreign_keys=True)
