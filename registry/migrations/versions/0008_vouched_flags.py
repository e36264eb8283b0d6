"""vouched flags: which findings make the same content malicious under other names

``flag.vouched`` is true when the registry stands behind a finding: an admin's
(or an advisory's) flag, or a scan the registry ran itself. Only such flags make
the same bytes malicious when registered under another name; a client's own
scan report compromises the model it came with and nothing else.

Existing flags: those a scan set (their reason begins ``static scan:`` or
``behavioral scan:``) become unvouched, since nothing recorded says who ran the
scan (as revision 0007 treats existing scans as client-reported); every other
flag was set by a person through ``mbom flag`` and stays vouched.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flag", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("vouched", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE flag SET vouched = TRUE WHERE reason NOT LIKE 'static scan:%' "
        "AND reason NOT LIKE 'behavioral scan:%' AND reason NOT LIKE 'known malicious content:%'"
    )


def downgrade() -> None:
    with op.batch_alter_table("flag", schema=None) as batch_op:
        batch_op.drop_column("vouched")
