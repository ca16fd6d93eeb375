"""a folder per run: where each old run's outputs are, and per-run curation

Runs recorded before this revision all wrote into their experiment's output folder, so only the
last of them to finish still has its own results there; `runs.layout` records that ("shared")
for every existing run, while new runs get "run-folder" (`<output>/run-000n/`).

Revision ID: 0003_h13
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_h13"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("layout", sa.String(length=20), nullable=False, server_default="shared")
        )
    op.create_table(
        "curations",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("run_id"),
    )


def downgrade() -> None:
    op.drop_table("curations")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("layout")
