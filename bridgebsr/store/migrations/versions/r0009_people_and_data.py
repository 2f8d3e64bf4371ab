"""People acting on their own cases, case data, reports and channels kept in the store.

- Contacts: `link_generation` (1 for everyone: no link was issued before this revision);
  raising it revokes every signed link a person holds.
- `date_requests`: an owner asking for a new due date, answered by the pilot lead.
- `access_denials`: refused links and pages of the partners' door (rate limits count them).
- Cases get `fields` (typed case data), milestones `fields` (values captured on completion):
  both empty for existing rows. `evidence`: links added with a completion or a vote.
- `stored_reports`: report files every worker and the web app can serve.
- `channel_posts`: the outbox of chat channels that subscribe to a pilot kind, a partner or all.
- `measurements`: a case's indicator values by region and day.
- Milestones get an index on (owner, status): a person's open items.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_SOURCE = sa.Enum(
    "cli", "flow", "import", "demo", "api", "web", name="source", native_enum=False, length=40
)
_STATUS = sa.Enum(
    "pending",
    "held",
    "sent",
    "failed",
    "suppressed",
    name="notificationstatus",
    native_enum=False,
    length=40,
)


def upgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("link_generation", sa.Integer(), nullable=False, server_default="1")
        )
    # Existing rows carry no data yet: an empty set of fields.
    for table in ("cases", "milestones"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("fields", sa.JSON(), nullable=True))
        op.execute(f"UPDATE {table} SET fields = '{{}}'")  # noqa: S608
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("fields", nullable=False, existing_type=sa.JSON())
    # A person's open items (My items, the agenda by owner) are read by owner and status.
    op.create_index("ix_milestones_owner_status", "milestones", ["owner_id", "status"])
    _create_tables()


def _create_tables() -> None:
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("item_kind", sa.String(10), nullable=False),
        sa.Column("item_key", sa.String(60), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(254), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("source", _SOURCE, nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_evidence_case_id", "evidence", ["case_id"], unique=False)
    op.create_table(
        "date_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("item_key", sa.String(60), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("requested_due", sa.Date(), nullable=False),
        sa.Column("current_due", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("source", _SOURCE, nullable=False),
        sa.Column("decided_by", sa.String(254), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["requested_by_id"], ["contacts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_date_requests_case_id", "date_requests", ["case_id"], unique=False)
    op.create_index(
        "ix_date_requests_requested_by_id", "date_requests", ["requested_by_id"], unique=False
    )
    op.create_index("ix_date_requests_status", "date_requests", ["status"], unique=False)
    op.create_table(
        "access_denials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_denials_at", "access_denials", ["at"], unique=False)
    op.create_index("ix_access_denials_address", "access_denials", ["address"], unique=False)
    op.create_table(
        "stored_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("scope", sa.String(40), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("media_type", sa.String(120), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_stored_reports_name", "stored_reports", ["name"], unique=False)
    op.create_index("ix_stored_reports_created_at", "stored_reports", ["created_at"], unique=False)
    op.create_table(
        "channel_posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(240), nullable=False),
        sa.Column("channel", sa.String(120), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(60), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("status", _STATUS, nullable=False),
        sa.Column("fire_on", sa.Date(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index("ix_channel_posts_channel", "channel_posts", ["channel"], unique=False)
    op.create_index("ix_channel_posts_case_id", "channel_posts", ["case_id"], unique=False)
    op.create_index("ix_channel_posts_status", "channel_posts", ["status"], unique=False)
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("indicator", sa.String(60), nullable=False),
        sa.Column("region", sa.String(120), nullable=False),
        sa.Column("measured_on", sa.Date(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(254), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("source", _SOURCE, nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "indicator", "region", "measured_on"),
    )
    op.create_index("ix_measurements_case_id", "measurements", ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_milestones_owner_status", table_name="milestones")
    for table in (
        "measurements",
        "channel_posts",
        "stored_reports",
        "access_denials",
        "date_requests",
        "evidence",
    ):
        op.drop_table(table)
    for table in ("milestones", "cases"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("fields")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("link_generation")
