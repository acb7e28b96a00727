"""likes of Spaces; redirects from the names of moved Spaces

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 23:55:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "space_likes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("space_id", "user_id"),
    )
    op.create_index("ix_space_likes_user_id", "space_likes", ["user_id"], unique=False)
    op.create_table(
        "space_redirects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=96), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_space_redirects_space_id", "space_redirects", ["space_id"], unique=False)
    op.create_index(
        "uq_space_redirects_owner_name_ci",
        "space_redirects",
        [sa.text("lower(owner)"), sa.text("lower(name)")],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_space_redirects_owner_name_ci", table_name="space_redirects")
    op.drop_index("ix_space_redirects_space_id", table_name="space_redirects")
    op.drop_table("space_redirects")
    op.drop_index("ix_space_likes_user_id", table_name="space_likes")
    op.drop_table("space_likes")
