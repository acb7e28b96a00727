"""rollback and cold starts: the build a Space is pinned to, builds whose image was removed, each start's time to
its first answer

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 01:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spaces") as batch:
        batch.add_column(sa.Column("pinned_build_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("image_removed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "cold_starts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_cold_starts_space_id", "cold_starts", ["space_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cold_starts_space_id", table_name="cold_starts")
    op.drop_table("cold_starts")
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("image_removed_at")
    with op.batch_alter_table("spaces") as batch:
        batch.drop_column("pinned_build_id")
