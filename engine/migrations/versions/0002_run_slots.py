"""run slots for concurrency limits

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_slots",
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("slot", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "slot"),
    )
    with op.batch_alter_table("run_slots", schema=None) as batch_op:
        batch_op.create_index("ix_run_slots_slot", ["slot"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_slots", schema=None) as batch_op:
        batch_op.drop_index("ix_run_slots_slot")
    op.drop_table("run_slots")
