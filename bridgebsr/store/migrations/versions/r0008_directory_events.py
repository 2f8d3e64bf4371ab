"""The directory's audit trail: `directory_events`, one row per change to a person or a
partner (added, edited, imported, away, back, retired), append-only as `case_events` is (the
database refuses UPDATE and DELETE). It starts empty: no earlier change was recorded.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SOURCE = sa.Enum(
    "cli", "flow", "import", "demo", "api", "web", name="source", native_enum=False, length=40
)

_APPEND_ONLY_SQLITE = """
CREATE TRIGGER directory_events_no_{verb} BEFORE {VERB} ON directory_events
BEGIN SELECT RAISE(ABORT, 'directory_events is append-only'); END
"""

_APPEND_ONLY_PG = """
CREATE FUNCTION directory_events_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'directory_events is append-only'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER directory_events_no_change BEFORE UPDATE OR DELETE ON directory_events
FOR EACH ROW EXECUTE FUNCTION directory_events_append_only();
"""


def upgrade() -> None:
    op.create_table(
        "directory_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("subject", sa.String(254), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("source", _SOURCE, nullable=False),
        sa.Column("source_ref", sa.String(120), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("directory_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_directory_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_directory_events_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_directory_events_subject"), ["subject"], unique=False)
    # The audit trail is evidence: the database itself refuses edits and deletions.
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("update", "delete"):
            op.execute(_APPEND_ONLY_SQLITE.format(verb=verb, VERB=verb.upper()))
    else:
        op.execute(_APPEND_ONLY_PG)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS directory_events_no_{verb}")
    else:
        op.execute("DROP TRIGGER IF EXISTS directory_events_no_change ON directory_events")
        op.execute("DROP FUNCTION IF EXISTS directory_events_append_only()")
    op.drop_table("directory_events")
