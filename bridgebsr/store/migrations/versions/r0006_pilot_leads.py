"""Contacts name the pilot kinds they lead.

For a case of a kind they lead, a pilot lead stands in for any role no one at the case's lead
partner holds (instead of every holder of that role anywhere). Existing contacts lead no kind
(`leads` empty) until a contacts import names them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    leads = sa.Column("leads", sa.String(length=300), nullable=False, server_default="")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(leads)
    # The default fills existing rows; new rows get theirs from the code.
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.alter_column("leads", server_default=None, existing_type=leads.type)


def downgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("leads")
