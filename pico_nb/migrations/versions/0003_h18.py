"""start times of a run's supervisor and pipeline, so a reused pid is never taken for them

Revision ID: 0003_h18
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_h18"
down_revision = "0003_h12"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("supervisor_start", sa.Float(), nullable=True))
        batch.add_column(sa.Column("pipeline_start", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("pipeline_start")
        batch.drop_column("supervisor_start")
