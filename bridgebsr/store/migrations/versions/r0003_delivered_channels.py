"""Outbox rows remember which channels took them, so a retry does not send those again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("delivered", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    # The default only fills existing rows; new rows get theirs from the code.
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("delivered", server_default=None, existing_type=sa.JSON())


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_column("delivered")
