"""workers record the settings every worker must share, so a worker that differs is refused

Revision ID: 0005_worker_settings
Revises: 0004_slurm
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_worker_settings"
down_revision = "0004_slurm"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("settings", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("settings")
