"""Case store: partners, contacts, template versions, cases, milestones, gates, audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_APPEND_ONLY_SQLITE = """
CREATE TRIGGER case_events_no_{verb} BEFORE {VERB} ON case_events
BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END
"""

_APPEND_ONLY_PG = """
CREATE FUNCTION case_events_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'case_events is append-only'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER case_events_no_change BEFORE UPDATE OR DELETE ON case_events
FOR EACH ROW EXECUTE FUNCTION case_events_append_only();
"""


def _append_only() -> None:
    # The audit trail is evidence: the database itself refuses edits and deletions.
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("update", "delete"):
            op.execute(_APPEND_ONLY_SQLITE.format(verb=verb, VERB=verb.upper()))
    else:
        op.execute(_APPEND_ONLY_PG)


def _drop_append_only() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS case_events_no_{verb}")
    else:
        op.execute("DROP TRIGGER IF EXISTS case_events_no_change ON case_events")
        op.execute("DROP FUNCTION IF EXISTS case_events_append_only()")


def upgrade() -> None:
    """Create every table of the case store."""
    op.create_table(
        "key_sequences",
        sa.Column("prefix", sa.String(6), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", "year"),
    )
    op.create_table(
        "partners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "cluster",
                "public-authority",
                "tech-transfer",
                "national-contact-point",
                "transnational-collaboration",
                "university",
                "sme",
                "investor",
                name="partnerkind",
                native_enum=False,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("region", sa.String(120), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_partners_code"), ["code"], unique=True)

    op.create_table(
        "template_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("first_used_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "version"),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(60), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_email"), ["email"], unique=True)
        batch_op.create_index(batch_op.f("ix_contacts_partner_id"), ["partner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_role"), ["role"], unique=False)

    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(24), nullable=False),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("lead_partner_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "active",
                "on_hold",
                "completed",
                "cancelled",
                name="casestatus",
                native_enum=False,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("current_stage", sa.String(60), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("target_date", sa.Date(), nullable=False),
        sa.Column("forecast_date", sa.Date(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_partner_id"],
            ["partners.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["contacts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_country"), ["country"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_key"), ["key"], unique=True)
        batch_op.create_index(batch_op.f("ix_cases_kind"), ["kind"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_cases_lead_partner_id"), ["lead_partner_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_cases_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_status"), ["status"], unique=False)

    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("subject", sa.String(60), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column(
            "source",
            sa.Enum(
                "cli", "flow", "import", "demo", "api", name="source", native_enum=False, length=40
            ),
            nullable=False,
        ),
        sa.Column("source_ref", sa.String(120), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_events_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_events_kind"), ["kind"], unique=False)

    op.create_table(
        "gates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(60), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("stage", sa.String(60), nullable=False),
        sa.Column("approver_role", sa.String(60), nullable=False),
        sa.Column("required", sa.Integer(), nullable=False),
        sa.Column("deadline_days", sa.Integer(), nullable=False),
        sa.Column(
            "days",
            sa.Enum("working", "calendar", name="daykind", native_enum=False, length=40),
            nullable=False,
        ),
        sa.Column(
            "on_timeout",
            sa.Enum(
                "escalate", "reject", "approve", name="timeoutoutcome", native_enum=False, length=40
            ),
            nullable=False,
        ),
        sa.Column("rework_stage", sa.String(60), nullable=True),
        sa.Column("depends_on", sa.JSON(), nullable=False),
        sa.Column("planned_start", sa.Date(), nullable=False),
        sa.Column("planned_due", sa.Date(), nullable=False),
        sa.Column("forecast_start", sa.Date(), nullable=False),
        sa.Column("forecast_due", sa.Date(), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "open",
                "approved",
                "rejected",
                name="gatestatus",
                native_enum=False,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("decided_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "key"),
    )
    with op.batch_alter_table("gates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gates_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_gates_deadline"), ["deadline"], unique=False)
        batch_op.create_index(batch_op.f("ix_gates_forecast_due"), ["forecast_due"], unique=False)
        batch_op.create_index(batch_op.f("ix_gates_status"), ["status"], unique=False)

    op.create_table(
        "milestones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(60), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("stage", sa.String(60), nullable=False),
        sa.Column("owner_role", sa.String(60), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Integer(), nullable=False),
        sa.Column(
            "days",
            sa.Enum("working", "calendar", name="daykind", native_enum=False, length=40),
            nullable=False,
        ),
        sa.Column("strict", sa.Boolean(), nullable=False),
        sa.Column("depends_on", sa.JSON(), nullable=False),
        sa.Column("planned_start", sa.Date(), nullable=False),
        sa.Column("planned_due", sa.Date(), nullable=False),
        sa.Column("forecast_start", sa.Date(), nullable=False),
        sa.Column("forecast_due", sa.Date(), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "planned",
                "in_progress",
                "done",
                "waived",
                "blocked",
                name="milestonestatus",
                native_enum=False,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("started_on", sa.Date(), nullable=True),
        sa.Column("finished_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["contacts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "key"),
    )
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_milestones_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_milestones_forecast_due"), ["forecast_due"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_milestones_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_milestones_planned_due"), ["planned_due"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_milestones_status"), ["status"], unique=False)

    op.create_table(
        "gate_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gate_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("approver_id", sa.Integer(), nullable=False),
        sa.Column(
            "decision",
            sa.Enum("approve", "reject", name="decision", native_enum=False, length=40),
            nullable=False,
        ),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "cli", "flow", "import", "demo", "api", name="source", native_enum=False, length=40
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["approver_id"],
            ["contacts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["gate_id"],
            ["gates.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gate_id", "round", "approver_id"),
    )
    with op.batch_alter_table("gate_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gate_decisions_gate_id"), ["gate_id"], unique=False)

    _append_only()


def downgrade() -> None:
    """Drop the case store."""
    _drop_append_only()
    with op.batch_alter_table("gate_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gate_decisions_gate_id"))

    op.drop_table("gate_decisions")
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_milestones_status"))
        batch_op.drop_index(batch_op.f("ix_milestones_planned_due"))
        batch_op.drop_index(batch_op.f("ix_milestones_owner_id"))
        batch_op.drop_index(batch_op.f("ix_milestones_forecast_due"))
        batch_op.drop_index(batch_op.f("ix_milestones_case_id"))

    op.drop_table("milestones")
    with op.batch_alter_table("gates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gates_status"))
        batch_op.drop_index(batch_op.f("ix_gates_forecast_due"))
        batch_op.drop_index(batch_op.f("ix_gates_deadline"))
        batch_op.drop_index(batch_op.f("ix_gates_case_id"))

    op.drop_table("gates")
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_events_kind"))
        batch_op.drop_index(batch_op.f("ix_case_events_case_id"))
        batch_op.drop_index(batch_op.f("ix_case_events_at"))

    op.drop_table("case_events")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_status"))
        batch_op.drop_index(batch_op.f("ix_cases_owner_id"))
        batch_op.drop_index(batch_op.f("ix_cases_lead_partner_id"))
        batch_op.drop_index(batch_op.f("ix_cases_kind"))
        batch_op.drop_index(batch_op.f("ix_cases_key"))
        batch_op.drop_index(batch_op.f("ix_cases_country"))

    op.drop_table("cases")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_role"))
        batch_op.drop_index(batch_op.f("ix_contacts_partner_id"))
        batch_op.drop_index(batch_op.f("ix_contacts_email"))

    op.drop_table("contacts")
    op.drop_table("template_versions")
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_partners_code"))

    op.drop_table("partners")
    op.drop_table("key_sequences")
