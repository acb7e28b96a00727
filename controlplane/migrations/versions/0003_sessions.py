"""server-side dashboard sessions; users can be disabled

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 21:10:00

Sessions used to be a signed user id in the cookie: signing out could not end a copied cookie. Existing
signed cookies are not rows here, so everyone signs in once more after this upgrade.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_hash"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"], unique=False)
    # A plain ADD COLUMN (SQLite has it): a batch copy of `users` would lose the expression index of 0002.
    op.add_column("users", sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # SQLite drops a column by copying the table, which cannot carry 0002's expression index: drop and restore it.
    op.drop_index("uq_users_name_ci", table_name="users")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("disabled")
    op.create_index("uq_users_name_ci", "users", [sa.text("lower(name)")], unique=True)
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_table("sessions")
