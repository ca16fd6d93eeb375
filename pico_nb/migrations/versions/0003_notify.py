"""per-member run notifications (e-mail, webhook) and which ended runs were announced

Revision ID: 0003_notify
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_notify"
down_revision = "0003_h18"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("notify_email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("notify_webhook", sa.String(length=2000), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
    # Runs that ended before this revision are not announced now, long after the fact.
    op.execute("UPDATE runs SET notified_at = finished_at WHERE finished_at IS NOT NULL")
    op.create_index("ix_runs_unnotified", "runs", ["notified_at", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_unnotified", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("notified_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("notify_webhook")
        batch.drop_column("notify_email")
