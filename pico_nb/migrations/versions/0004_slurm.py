"""runs keep the executor's own job id (Slurm's) and when a stop was asked for

Revision ID: 0004_slurm
Revises: 0003_notify
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_slurm"
down_revision = "0003_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("job_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("stop_requested_at")
        batch.drop_column("job_id")
