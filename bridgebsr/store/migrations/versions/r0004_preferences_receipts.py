"""Contacts' notification preferences and delivery receipts.

Contacts gain channels, digest, quiet hours and a daily cap (existing contacts get the
defaults: email and chat, immediate, 21:00 to 07:00, 20 a day). Every message sent or tried is
a row in `deliveries`, and outbox rows point at the message that carried them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _preferences() -> list[sa.Column[object]]:
    return [
        sa.Column("channels", sa.String(40), nullable=False, server_default="email,chat"),
        sa.Column("digest", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("quiet_from", sa.Time(), nullable=True, server_default=sa.text("'21:00:00'")),
        sa.Column("quiet_until", sa.Time(), nullable=True, server_default=sa.text("'07:00:00'")),
        sa.Column("daily_cap", sa.Integer(), nullable=False, server_default="20"),
    ]


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("recipient_id", sa.Integer(), sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("notices", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
    )
    op.create_index("ix_deliveries_recipient_id", "deliveries", ["recipient_id"])
    op.create_index("ix_deliveries_at", "deliveries", ["at"])
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        for column in _preferences():
            batch_op.add_column(column)
    # The defaults fill existing rows; new rows get theirs from the code.
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        for column in _preferences():
            batch_op.alter_column(column.name, server_default=None, existing_type=column.type)
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_notifications_delivery_id", "deliveries", ["delivery_id"], ["id"]
        )
        batch_op.create_index("ix_notifications_delivery_id", ["delivery_id"])


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_delivery_id")
        batch_op.drop_constraint("fk_notifications_delivery_id", type_="foreignkey")
        batch_op.drop_column("delivery_id")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        for column in _preferences():
            batch_op.drop_column(column.name)
    op.drop_index("ix_deliveries_at", table_name="deliveries")
    op.drop_index("ix_deliveries_recipient_id", table_name="deliveries")
    op.drop_table("deliveries")
