"""the date of each Space's last commit on main, for list_spaces(sort="lastModified"); indexes for both date sorts

Existing Spaces get the time of their newest build (a push or an API commit queues one), else their creation: the
migration cannot read their git repos (it knows the database only). They are marked checked at their current
`updated_at`, so the listing reads the exact date from git at the row's next change rather than all at once.
The column stays nullable (new rows always get one): making it NOT NULL would make SQLite copy the table, which
drops the expression index that keeps names unique regardless of case.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 03:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("spaces", sa.Column("last_commit_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("spaces", sa.Column("last_commit_checked_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE spaces SET last_commit_at = COALESCE("
        "(SELECT MAX(builds.created_at) FROM builds WHERE builds.space_id = spaces.id), spaces.created_at), "
        "last_commit_checked_at = spaces.updated_at"
    )
    op.create_index("ix_spaces_last_commit_at", "spaces", ["last_commit_at", "id"], unique=False)
    op.create_index("ix_spaces_created_at", "spaces", ["created_at", "id"], unique=False)
    # Partial: only the rows the listing must read from git again, so finding them costs nothing at 10,000.
    stale = sa.text("last_commit_checked_at IS NULL OR last_commit_checked_at < updated_at")
    op.create_index(
        "ix_spaces_last_commit_stale", "spaces", ["id"], unique=False, sqlite_where=stale, postgresql_where=stale
    )


def downgrade() -> None:
    op.drop_index("ix_spaces_last_commit_stale", table_name="spaces")
    op.drop_index("ix_spaces_created_at", table_name="spaces")
    op.drop_index("ix_spaces_last_commit_at", table_name="spaces")
    # Not in batch mode: that copies the table on SQLite, which loses the case-insensitive unique name index.
    op.drop_column("spaces", "last_commit_checked_at")
    op.drop_column("spaces", "last_commit_at")
