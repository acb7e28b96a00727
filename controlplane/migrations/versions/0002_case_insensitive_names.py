"""user and Space names unique case-insensitively

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 20:45:00

`Alice/app` and `alice/app` once were two Spaces whose images could shadow and delete each other's.
Creating the index fails on an installation that already holds such a pair; rename one first.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("uq_users_name_ci", "users", [sa.text("lower(name)")], unique=True)
    op.create_index("uq_spaces_owner_name_ci", "spaces", [sa.text("lower(owner)"), sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_spaces_owner_name_ci", table_name="spaces")
    op.drop_index("uq_users_name_ci", table_name="users")
