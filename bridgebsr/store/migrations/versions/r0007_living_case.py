"""The living case: teams, baselines, plan changes, ad-hoc items, rework rounds, people leaving
and away.

- `case_team`: who holds a role on one case (empty for existing cases, which keep the owners
  they were opened with).
- Every milestone and gate keeps its original plan (`baseline_start`, `baseline_due`), a case
  its original target (`baseline_target`): existing rows take their planned dates and target,
  which no change could move before this revision.
- `baselines` (rebaselines with who, when and why) and `plan_changes` (an item's agreed dates
  moving) start empty.
- Milestones: `adhoc` (added to one case only; existing ones came from their template: false)
  and `round` (rework rounds; existing ones are in their first: 1).
- Contacts: `retired_at` and `successor_id` (existing contacts are active: both NULL);
  `absences` starts empty.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_SOURCE = sa.Enum(
    "cli", "flow", "import", "demo", "api", "web", name="source", native_enum=False, length=40
)
# Original plan columns and the planned column each starts from.
_BASELINES = {
    "cases": (("baseline_target", "target_date"),),
    "milestones": (("baseline_start", "planned_start"), ("baseline_due", "planned_due")),
    "gates": (("baseline_start", "planned_start"), ("baseline_due", "planned_due")),
}


def _milestone_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("adhoc", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("round", sa.Integer(), nullable=False, server_default="1"),
    ]


def upgrade() -> None:
    for table, pairs in _BASELINES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in pairs:
                batch_op.add_column(sa.Column(name, sa.Date(), nullable=True))
        op.execute(
            f"UPDATE {table} SET " + ", ".join(f"{new} = {old}" for new, old in pairs)  # noqa: S608
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in pairs:
                batch_op.alter_column(name, nullable=False, existing_type=sa.Date())
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        for column in _milestone_columns():
            batch_op.add_column(column)
    # The defaults fill existing rows; new rows get theirs from the code.
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        for column in _milestone_columns():
            batch_op.alter_column(column.name, server_default=None, existing_type=column.type)
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retired_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("successor_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_contacts_successor_id_contacts", "contacts", ["successor_id"], ["id"]
        )
    _create_tables()


def _create_tables() -> None:
    op.create_table(
        "case_team",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(60), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "role"),
    )
    with op.batch_alter_table("case_team", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_team_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_team_contact_id"), ["contact_id"], unique=False)
    op.create_table(
        "baselines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", _SOURCE, nullable=False),
        sa.Column("target_date", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "number"),
    )
    with op.batch_alter_table("baselines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_baselines_case_id"), ["case_id"], unique=False)
    op.create_table(
        "plan_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("item_kind", sa.String(10), nullable=False),
        sa.Column("item_key", sa.String(60), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("due", sa.Date(), nullable=False),
        sa.Column("why", sa.String(20), nullable=False),
        sa.Column("baseline", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("plan_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plan_changes_case_id"), ["case_id"], unique=False)
    op.create_table(
        "absences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("starts", sa.Date(), nullable=False),
        sa.Column("ends", sa.Date(), nullable=False),
        sa.Column("deputy_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"]),
        sa.ForeignKeyConstraint(["deputy_id"], ["contacts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("absences", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_absences_contact_id"), ["contact_id"], unique=False)


def downgrade() -> None:
    for table in ("absences", "plan_changes", "baselines", "case_team"):
        op.drop_table(table)
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_constraint("fk_contacts_successor_id_contacts", type_="foreignkey")
        batch_op.drop_column("successor_id")
        batch_op.drop_column("retired_at")
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        for column in _milestone_columns():
            batch_op.drop_column(column.name)
    for table, pairs in _BASELINES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in pairs:
                batch_op.drop_column(name)
