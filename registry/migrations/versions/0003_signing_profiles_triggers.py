"""model-signing bundles, scan profiles, triggers and replay results

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STR = sqlmodel.sql.sqltypes.AutoString


def _time() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "model_signing_bundle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("key_fingerprint", _STR(length=80), nullable=False),
        sa.Column("bundle", sa.JSON(), nullable=False),
        _time(),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifact.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_model_signing_bundle_artifact_id", "model_signing_bundle", ["artifact_id"])
    op.create_table(
        "scan_profile",
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("input_shape", sa.JSON(), nullable=False),
        sa.Column("value_min", sa.Float(), nullable=False),
        sa.Column("value_max", sa.Float(), nullable=False),
        sa.Column("num_classes", sa.Integer(), nullable=False),
        sa.Column("reference", sa.LargeBinary(), nullable=False),
        sa.Column("reference_digest", _STR(length=80), nullable=False),
        _time(),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifact.id"]),
        sa.PrimaryKeyConstraint("artifact_id"),
    )
    op.create_table(
        "trigger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("target_class", sa.Integer(), nullable=True),
        sa.Column("origin", _STR(length=16), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("digest", _STR(length=80), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("actor", _STR(length=200), nullable=False),
        _time(),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifact.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_trigger_artifact_id", "trigger", ["artifact_id"])
    op.create_table(
        "replay_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trigger_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("role", _STR(length=16), nullable=False),
        sa.Column("superseded", sa.Boolean(), nullable=False),
        sa.Column("outcome", _STR(length=16), nullable=False),
        sa.Column("rate", sa.Float(), nullable=True),
        sa.Column("collapsed_class", sa.Integer(), nullable=True),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("actor", _STR(length=200), nullable=False),
        _time(),
        sa.ForeignKeyConstraint(["trigger_id"], ["trigger.id"]),
        sa.ForeignKeyConstraint(["source_id"], ["artifact.id"]),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifact.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_replay_result_trigger_id", "replay_result", ["trigger_id"])
    op.create_index("ix_replay_result_artifact_id", "replay_result", ["artifact_id"])


def downgrade() -> None:
    op.drop_index("ix_replay_result_artifact_id", table_name="replay_result")
    op.drop_index("ix_replay_result_trigger_id", table_name="replay_result")
    op.drop_table("replay_result")
    op.drop_index("ix_trigger_artifact_id", table_name="trigger")
    op.drop_table("trigger")
    op.drop_table("scan_profile")
    op.drop_index("ix_model_signing_bundle_artifact_id", table_name="model_signing_bundle")
    op.drop_table("model_signing_bundle")
