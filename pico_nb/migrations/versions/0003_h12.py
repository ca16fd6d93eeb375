"""login throttling per account and per address, kept across hub restarts

Revision ID: 0003_h12
Revises: 0003_h13
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_h12"
down_revision = "0003_h13"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
