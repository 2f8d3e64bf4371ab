"""Milestones not stamped late yet get an index on (status, planned_due): the monitor's pass
stamps open milestones late once, when their due date has passed, and finds those not stamped
yet through it rather than by reading every open milestone (a pass that finds none new reads
next to nothing). A partial index (`overdue_on IS NULL`): stamping a milestone only takes it
out. Existing rows are indexed as they are.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_UNSTAMPED = sa.text("overdue_on IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_milestones_unstamped",
        "milestones",
        ["status", "planned_due"],
        sqlite_where=_UNSTAMPED,
        postgresql_where=_UNSTAMPED,
    )


def downgrade() -> None:
    op.drop_index("ix_milestones_unstamped", table_name="milestones")
