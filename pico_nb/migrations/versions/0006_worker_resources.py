"""workers keep their own measurement of CPUs, load, memory and GPUs from their last heartbeat

Revision ID: 0006_worker_resources
Revises: 0005_worker_settings
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_worker_resources"
down_revision = "0005_worker_settings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("resources", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("resources")
