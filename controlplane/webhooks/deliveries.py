"""What a webhook delivery does, and the log of them per Space.

A push to the linked branch is recorded as "accepted" and answered at once (forges give up after ~10 s); its fetch
and build follow (`process`), and the row then says "building" (with the build) or "fetch failed". Everything
else is recorded as "ignored" with the reason. A delivery id seen before changes nothing ("duplicate").
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlplane.core.utc import iso
from controlplane.errors import InvalidInput, NotFound
from controlplane.links import SHA_RE, sync
from controlplane.models import Space, WebhookDelivery
from controlplane.services import Services
from controlplane.webhooks.linking import require_link
from controlplane.webhooks.providers import PROVIDERS

DELETED = "0" * 40


@dataclass(frozen=True)
class Decision:
    result: str  # accepted | ignored
    detail: str
    ref: str | None = None
    commit: str | None = None


def decide(provider: str, event: str, payload: dict, branch: str) -> Decision:
    """What a delivery asks for, given the linked branch; a push without a usable ref or commit is a 400."""
    kind = PROVIDERS[provider].kind(event)
    if kind == "ping":
        return Decision("ignored", "ping: the webhook reaches Spaceyard and its signature is right.")
    if kind == "other":
        return Decision("ignored", f"{event or 'unnamed'} events are not deployed; only pushes are.")
    ref, after = payload.get("ref"), payload.get("after")
    if not isinstance(ref, str) or not isinstance(after, str) or not SHA_RE.match(after):
        raise InvalidInput("Malformed push payload: it needs 'ref' and 'after' (a 40-hex commit id).")
    if ref != f"refs/heads/{branch}":
        return Decision("ignored", f"Push to {ref[:200]}; the linked branch is {branch}.", ref, after)
    if after == DELETED:
        return Decision("ignored", f"The branch {branch} was deleted; the Space keeps its last commit.", ref, after)
    return Decision("accepted", f"Fetching {after[:7]} from {branch}.", ref, after)


def record(
    svc: Services, space_id: int, provider: str, event: str, delivery_id: str, decision: Decision, payload: bytes
) -> WebhookDelivery | None:
    """Store the delivery (keeping the last `webhook_deliveries_kept`); None when its id was seen before."""
    row = WebhookDelivery(
        space_id=space_id,
        provider=provider,
        event=event,
        delivery_id=delivery_id,
        ref=decision.ref,
        commit_sha=decision.commit,
        result=decision.result,
        detail=decision.detail,
        payload=payload,
    )
    try:
        with svc.db.session() as s:
            if s.scalar(select(WebhookDelivery.id).where(*_same(space_id, provider, delivery_id))) is not None:
                return None
            s.add(row)
            s.flush()
            _prune(s, space_id, svc.settings.webhook_deliveries_kept)
            s.expunge(row)
    except IntegrityError:  # the same delivery arrived twice at once
        return None
    return row


def _same(space_id: int, provider: str, delivery_id: str) -> tuple:
    return (
        WebhookDelivery.space_id == space_id,
        WebhookDelivery.provider == provider,
        WebhookDelivery.delivery_id == delivery_id,
    )


def _prune(s: Session, space_id: int, keep: int) -> None:
    newest = select(WebhookDelivery.id).where(WebhookDelivery.space_id == space_id)
    kept = [r for r in s.scalars(newest.order_by(WebhookDelivery.id.desc()).limit(keep))]
    s.execute(delete(WebhookDelivery).where(WebhookDelivery.space_id == space_id, WebhookDelivery.id.not_in(kept)))


def process(svc: Services, delivery_id: int) -> None:
    """Fetch and build an accepted push; the delivery row ends saying what happened."""
    with svc.db.session() as s:
        row = s.get(WebhookDelivery, delivery_id)
        if row is None or row.result != "accepted":
            return
        space_id, commit = row.space_id, row.commit_sha
    result, detail, build_id = sync(svc, space_id, commit)
    with svc.db.session() as s:
        row = s.get(WebhookDelivery, delivery_id)
        if row is not None:  # pruned meanwhile by a burst of newer deliveries
            row.result, row.detail, row.build_id = result, detail, build_id


def redeliver(svc: Services, s: Session, space: Space, delivery: int) -> WebhookDelivery:
    """Process a stored payload again, as a new delivery (the owner's "redeliver"), against today's link."""
    link = require_link(s, space)
    original = s.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery, WebhookDelivery.space_id == space.id)
    )
    if original is None:
        raise NotFound(f"No delivery {delivery} for {space.full_name} (only the last few are kept).")
    decision = decide(original.provider, original.event, json.loads(original.payload), link.branch)
    detail = f"Redelivery of {original.delivery_id}. {decision.detail}"
    decision = Decision(decision.result, detail, decision.ref, decision.commit)
    again = f"redeliver-{uuid.uuid4().hex[:16]}"
    row = record(svc, space.id, original.provider, original.event, again, decision, original.payload)
    assert row is not None  # a fresh id
    return row


def view(row: WebhookDelivery) -> dict:
    return {
        "id": row.id,
        "time": iso(row.received_at),
        "provider": row.provider,
        "event": row.event,
        "deliveryId": row.delivery_id,
        "ref": row.ref,
        "commit": row.commit_sha,
        "result": row.result,
        "detail": row.detail,
        "build": row.build_id,
    }


def listing(s: Session, space: Space) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.space_id == space.id).order_by(WebhookDelivery.id.desc())
    return list(s.scalars(query))
