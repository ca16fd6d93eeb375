"""runs keep a hash of the token their Slurm job reports with, when it runs as the owner;
the lab gets an identity of its own, which names its live logs in a Redis others may share

Revision ID: 0007_job_tokens
Revises: 0006_worker_resources
Create Date: 2026-12-03
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0007_job_tokens"
down_revision = "0006_worker_resources"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("report_token_hash", sa.String(64), nullable=True))
    identity = op.create_table(
        "lab_identity",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("identity", sa.String(32), nullable=False),
    )
    op.bulk_insert(identity, [{"id": 1, "identity": secrets.token_hex(8)}])


def downgrade() -> None:
    op.drop_table("lab_identity")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("report_token_hash")
