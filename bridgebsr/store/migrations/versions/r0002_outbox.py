"""Notification outbox; when the monitor first saw a milestone late or a gate expired.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_STATUSES = ("pending", "held", "sent", "failed", "suppressed")


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(240), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(60), nullable=True),
        sa.Column("rule", sa.String(60), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*_STATUSES, name="notificationstatus", native_enum=False, length=40),
            nullable=False,
        ),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("fire_on", sa.Date(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["recipient_id"], ["contacts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_notifications_next_attempt_at"), ["next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notifications_recipient_id"), ["recipient_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_notifications_status"), ["status"], unique=False)
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.add_column(sa.Column("overdue_on", sa.Date(), nullable=True))
    with op.batch_alter_table("gates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expired_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gates", schema=None) as batch_op:
        batch_op.drop_column("expired_on")
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.drop_column("overdue_on")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        for name in ("status", "recipient_id", "next_attempt_at", "case_id"):
            batch_op.drop_index(batch_op.f(f"ix_notifications_{name}"))
    op.drop_table("notifications")
