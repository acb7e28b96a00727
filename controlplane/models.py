"""Database tables. Changes go through Alembic migrations in controlplane/migrations/versions/."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True)}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    spending_limit: Mapped[float | None] = mapped_column(Float)
    max_gpus: Mapped[int | None] = mapped_column(Integer)
    # Set by an admin: the user's tokens and sessions stop working (migration 0003).
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Names are unique case-insensitively, as on the Hub: `Alice` and `alice` are one user (migration 0002).
Index("uq_users_name_ci", func.lower(User.name), unique=True)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(96))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="write")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    user: Mapped[User] = relationship()


class LoginSession(Base):
    """A dashboard sign-in. The browser's cookie holds a random id; only its hash is stored, so revoking the row
    (sign-out, password change, account disabled, "end session") ends it on the server (migration 0003)."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    user_agent: Mapped[str | None] = mapped_column(String(255))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    user: Mapped[User] = relationship()


class Space(Base):
    __tablename__ = "spaces"
    # Ids are never reused after a delete: they name caches, image tags and Redis streams elsewhere.
    __table_args__ = (UniqueConstraint("owner", "name"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(96), index=True)
    name: Mapped[str] = mapped_column(String(96))
    sdk: Mapped[str] = mapped_column(String(16), default="gradio")
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    hardware_requested: Mapped[str] = mapped_column(String(32), default="cpu-basic")
    hardware_current: Mapped[str | None] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(32), default="NO_APP_FILE")
    # Spaceyard's own detail behind the Hub stage: "sleeping", "waiting for hardware", ...
    detail: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    sleep_time: Mapped[int | None] = mapped_column(Integer)
    head_sha: Mapped[str | None] = mapped_column(String(40))
    card_data: Mapped[dict] = mapped_column(JSON, default=dict)
    image: Mapped[str | None] = mapped_column(String(255))
    # Where the router sends traffic, e.g. "127.0.0.1:49153"; set while an app answers.
    endpoint: Mapped[str | None] = mapped_column(String(255))
    container_id: Mapped[str | None] = mapped_column(String(128))
    # The build whose image serves now (its config says the port and whether the router strips the prefix).
    running_build_id: Mapped[int | None] = mapped_column(Integer)
    # Set by a rollback: restarts and wakes keep this build until another one is deployed (migration 0006).
    pinned_build_id: Mapped[int | None] = mapped_column(Integer)
    strip_prefix: Mapped[bool] = mapped_column(Boolean, default=False)
    last_request_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The date of main's last commit (what `lastModified` shows), kept for `list_spaces(sort="lastModified")`;
    # read from git by `listing.refresh_last_commits` (migration 0007). `last_commit_checked_at` is the
    # `updated_at` it was read at: a commit moves `updated_at` (the stage says BUILDING), so a row whose
    # `updated_at` moved past it is read again.
    last_commit_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    last_commit_checked_at: Mapped[datetime | None]

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


Index("uq_spaces_owner_name_ci", func.lower(Space.owner), func.lower(Space.name), unique=True)
# A sorted page of 100 reads the index in order instead of sorting every Space.
Index("ix_spaces_last_commit_at", Space.last_commit_at, Space.id)
Index("ix_spaces_created_at", Space.created_at, Space.id)  # the same for sort="createdAt"
# The rows whose last commit is to be read again (listing.refresh_last_commits), found without a scan of all.
LAST_COMMIT_STALE = (Space.last_commit_checked_at.is_(None)) | (Space.last_commit_checked_at < Space.updated_at)
Index("ix_spaces_last_commit_stale", Space.id, sqlite_where=LAST_COMMIT_STALE, postgresql_where=LAST_COMMIT_STALE)


class Build(Base):
    __tablename__ = "builds"
    # Never reused: a build id names its Redis event stream and its image tag, which outlive a deleted row.
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    commit_sha: Mapped[str] = mapped_column(String(40))
    # QUEUED, RUNNING, SUCCESS, FAILED, CANCELLED
    status: Mapped[str] = mapped_column(String(16), default="QUEUED", index=True)
    no_cache: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    image: Mapped[str | None] = mapped_column(String(255))
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    log: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict | None] = mapped_column(JSON)
    last_event_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # When its image was garbage-collected (controlplane/images.py): it can no longer be rolled back to.
    image_removed_at: Mapped[datetime | None]


class ColdStart(Base):
    """One start of a Space (deploy, wake, restart) and the seconds from its request to the app's first answer
    (controlplane/coldstart.py; migration 0006)."""

    __tablename__ = "cold_starts"
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class SpaceSecret(Base):
    __tablename__ = "space_secrets"
    __table_args__ = (UniqueConstraint("space_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(128))
    value_encrypted: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SpaceVariable(Base):
    __tablename__ = "space_variables"
    __table_args__ = (UniqueConstraint("space_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UsageInterval(Base):
    """One stretch of a Space holding one tier's hardware; open while ended_at is NULL."""

    __tablename__ = "usage_intervals"
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int | None] = mapped_column(ForeignKey("spaces.id", ondelete="SET NULL"), index=True)
    space_name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(96), index=True)
    tier: Mapped[str] = mapped_column(String(32))
    gpu_model: Mapped[str | None] = mapped_column(String(64))
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    unit_cost: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None] = mapped_column(index=True)


class GpuSample(Base):
    __tablename__ = "gpu_samples"
    id: Mapped[int] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(String(128))
    gpu_uuid: Mapped[str] = mapped_column(String(128))
    gpu_model: Mapped[str] = mapped_column(String(64))
    space_name: Mapped[str | None] = mapped_column(String(200), index=True)
    utilization: Mapped[float] = mapped_column(Float)
    memory_used: Mapped[int] = mapped_column(BigInteger)  # bytes: one 80 GB GPU overflows 32 bits
    power_watts: Mapped[float | None] = mapped_column(Float)  # None where the board reports no power
    sampled_at: Mapped[datetime] = mapped_column(index=True)


class SpaceLike(Base):
    """A user's like of a Space (`HfApi.unlike`, `list_liked_repos`, `list_repo_likers`; migration 0004)."""

    __tablename__ = "space_likes"
    __table_args__ = (UniqueConstraint("space_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    user: Mapped[User] = relationship()
    space: Mapped[Space] = relationship()


class SpaceRedirect(Base):
    """A name a Space had before `move_repo`: its old URLs redirect to wherever the Space is now, until another
    Space takes the name (migration 0004)."""

    __tablename__ = "space_redirects"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(96))
    name: Mapped[str] = mapped_column(String(96))
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("uq_space_redirects_owner_name_ci", func.lower(SpaceRedirect.owner), func.lower(SpaceRedirect.name), unique=True)


class SpaceLink(Base):
    """The external repository a Space mirrors (docs/webhooks.md): its branch becomes the Space's `main`. The
    deploy credential and the webhook secret are encrypted like Space secrets and never shown (migration 0005)."""

    __tablename__ = "space_links"
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    branch: Mapped[str] = mapped_column(String(255))
    credential_encrypted: Mapped[str | None] = mapped_column(Text)
    webhook_secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One push webhook received for a linked Space, with what became of it; the last few per Space are kept
    (settings.webhook_deliveries_kept). The payload is kept for "redeliver" (migration 0005)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("space_id", "provider", "delivery_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    event: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[str] = mapped_column(String(128))
    ref: Mapped[str | None] = mapped_column(String(255))
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    # accepted (being fetched), building, ignored, fetch failed
    result: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    build_id: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
