"""workers, central log chunks, GPU needs and dispatch times for the Celery executor

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("gpus", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "log_chunks",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("stop", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("run_id", "start"),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("needs_gpu", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_runs_user_started", "runs", ["user_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_user_started", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("dispatched_at")
        batch.drop_column("needs_gpu")
    op.drop_table("log_chunks")
    op.drop_table("workers")
