"""the artifact store: blobs, stored files, pulls; existing versions are metadata-only

mbom now keeps the files of the versions it vets in a content-addressed store
(``blob``: one row per SHA-256 present in the store; ``stored_file``: which
blob holds each file of a stored version) and records every download
(``pull``). ``artifact.stored`` says whether the registry holds a version's
files. Versions registered before this revision were recorded from a
client's manifest: the registry never received their files, so they become
metadata-only (``stored`` false). ``team.require_registry_scan`` lets a team
demand stored, registry-scanned bases.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _time(name: str) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite takes it natively with a constant default): a batch
    # rebuild of ``artifact`` would drop a table other tables' foreign keys point at.
    op.add_column(
        "artifact", sa.Column("stored", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "team",
        sa.Column("require_registry_scan", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "blob",
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _time("created_at"),
        _time("claimed_at"),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "stored_file",
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifact.id"]),
        sa.PrimaryKeyConstraint("artifact_id", "path"),
    )
    op.create_index("ix_stored_file_digest", "stored_file", ["digest"], unique=False)
    op.create_table(
        "pull",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("team", sa.String(length=100), nullable=True),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("override", sa.String(length=4000), nullable=True),
        _time("created_at"),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifact.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_pull_artifact", "pull", ["artifact_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pull_artifact", table_name="pull")
    op.drop_table("pull")
    op.drop_index("ix_stored_file_digest", table_name="stored_file")
    op.drop_table("stored_file")
    op.drop_table("blob")
    op.drop_column("team", "require_registry_scan")  # SQLite 3.35+ drops columns natively
    op.drop_column("artifact", "stored")
