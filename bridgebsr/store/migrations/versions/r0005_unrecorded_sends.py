"""Outbox rows and receipts count possible duplicates.

Dispatch marks an outbox row `sending` before its message goes to the channels and clears the
mark when it records the outcome, so a row still marked when it is claimed again was perhaps
delivered by a dispatcher that died before recording it. Sending it again adds one to the
row's `resent`, and the receipt of that message counts such notices in its own `resent`.
Existing rows are not being sent (`sending` false) and were never sent twice (`resent` 0);
existing receipts carried no such notice (`resent` 0).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _outbox() -> list[sa.Column[object]]:
    return [
        sa.Column("sending", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("resent", sa.Integer(), nullable=False, server_default="0"),
    ]


def _receipts() -> list[sa.Column[object]]:
    return [sa.Column("resent", sa.Integer(), nullable=False, server_default="0")]


def upgrade() -> None:
    for table, columns in (("notifications", _outbox), ("deliveries", _receipts)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns():
                batch_op.add_column(column)
        # The defaults fill existing rows; new rows get theirs from the code.
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns():
                batch_op.alter_column(column.name, server_default=None, existing_type=column.type)


def downgrade() -> None:
    for table, columns in (("deliveries", _receipts), ("notifications", _outbox)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns():
                batch_op.drop_column(column.name)
