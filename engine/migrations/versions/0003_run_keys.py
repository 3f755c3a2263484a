"""run keys for idempotency, rate limits and singletons

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 10:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_keys",
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("function", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "kind"),
    )
    with op.batch_alter_table("run_keys", schema=None) as batch_op:
        batch_op.create_index("ix_run_keys_lookup", ["function", "kind", "key", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("run_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_run_keys_lookup")
    op.drop_table("run_keys")
