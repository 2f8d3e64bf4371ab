"""The outbox: a notice for one person (`Notification`), the receipt of each message sent
(`Delivery`) and a team channel's post (`ChannelPost`). Rows are written once by their dedupe
key (`notifications.outbox`) and change status by the delivery rules."""

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Text
from sqlmodel import Field, SQLModel

from models.enums import NotificationStatus
from models.tables import stored_enum


class Notification(SQLModel, table=True):
    """Outbox row: one ladder step (or notice) for one recipient, written once by dedupe key."""

    __tablename__ = "notifications"

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=240)
    case_id: int = Field(foreign_key="cases.id", index=True)
    subject: str | None = Field(default=None, max_length=60)
    rule: str = Field(max_length=60)
    recipient_id: int = Field(foreign_key="contacts.id", index=True)
    urgent: bool = False
    status: NotificationStatus = Field(
        default=NotificationStatus.PENDING, index=True, sa_type=stored_enum(NotificationStatus)
    )
    due_on: date | None = None
    fire_on: date
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, index=True)
    last_error: str | None = Field(default=None, sa_type=Text)
    delivered: list[str] = Field(
        default_factory=list,
        sa_type=JSON,
        description="Channels that took it, so retries skip them.",
    )
    sent_at: datetime | None = None
    delivery_id: int | None = Field(default=None, foreign_key="deliveries.id", index=True)
    sending: bool = Field(
        default=False,
        description="A message carrying it went to the channels and its outcome is not "
        "recorded yet (it stays so when the dispatcher dies mid-delivery).",
    )
    resent: int = Field(
        default=0,
        description="Times it was sent again after an attempt whose outcome was never "
        "recorded: possible duplicates.",
    )


class Delivery(SQLModel, table=True):
    """Receipt of one message to one person (a notice, a digest or an overflow summary): which
    channels took it and which failed, and why. One row per attempt."""

    __tablename__ = "deliveries"

    id: int | None = Field(default=None, primary_key=True)
    recipient_id: int = Field(foreign_key="contacts.id", index=True)
    at: datetime = Field(index=True)
    kind: str = Field(max_length=20)
    notices: int
    ok: bool
    title: str = Field(max_length=300)
    channels: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    resent: int = Field(
        default=0,
        description="Notices it carried that an earlier attempt, whose outcome was never "
        "recorded, may have delivered already (possible duplicates).",
    )


class ChannelPost(SQLModel, table=True):
    """Outbox row of a chat channel subscribed to a pilot kind, a partner or all: one post per
    event, written once by dedupe key."""

    __tablename__ = "channel_posts"

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(unique=True, max_length=240)
    channel: str = Field(max_length=120, index=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    rule: str = Field(max_length=60)
    urgent: bool = False
    status: NotificationStatus = Field(
        default=NotificationStatus.PENDING, index=True, sa_type=stored_enum(NotificationStatus)
    )
    fire_on: date
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = Field(default=None, sa_type=Text)
    sent_at: datetime | None = None
