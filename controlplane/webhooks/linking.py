"""A Space's link as its owner sets, shows and removes it (API and dashboard share these).

The deploy credential and the webhook secret are write-only: stored encrypted (the secrets' box), never in a
view. A webhook secret Spaceyard generates is returned once, by the call that made it.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from controlplane.core.utc import iso
from controlplane.errors import InvalidInput, NotFound
from controlplane.links import check_branch, check_url, link_of, new_webhook_secret
from controlplane.models import Space, SpaceLink, WebhookDelivery
from controlplane.services import Services
from controlplane.webhooks.providers import PROVIDERS

KEEP = object()  # "credential not given": the stored one stays
MAX_SECRET = 256


def save_link(
    svc: Services,
    s: Session,
    space: Space,
    url: object,
    branch: object,
    credential: object = KEEP,
    webhook_secret: object = None,
    new_secret: bool = False,
) -> str | None:
    """Link `space` (or change its link). Returns the webhook secret when Spaceyard generated one (shown once)."""
    check_branch(branch)
    check_url(url, private_ok=svc.settings.link_private_addresses)
    link = link_of(s, space)
    generated = None
    if webhook_secret not in (None, ""):
        if not isinstance(webhook_secret, str) or len(webhook_secret) > MAX_SECRET:
            raise InvalidInput(f"Invalid webhook secret: a string of at most {MAX_SECRET} characters.")
        secret = webhook_secret
    elif link is None or new_secret:
        secret = generated = new_webhook_secret()
    else:
        secret = None
    if credential is not KEEP and credential is not None and not isinstance(credential, str):
        raise InvalidInput("Invalid credential: a token, or user:token.")
    if link is None:
        link = SpaceLink(space_id=space.id)
        s.add(link)
    link.url, link.branch = url, branch
    if secret is not None:
        link.webhook_secret_encrypted = svc.secret_box.encrypt(secret)
    if credential is not KEEP:
        link.credential_encrypted = svc.secret_box.encrypt(credential) if credential else None
    s.flush()
    return generated


def unlink(s: Session, space: Space) -> bool:
    link = link_of(s, space)
    if link is None:
        return False
    s.delete(link)
    s.execute(delete(WebhookDelivery).where(WebhookDelivery.space_id == space.id))
    return True


def webhook_urls(svc: Services, space: Space) -> dict[str, str]:
    return {name: f"{svc.settings.base_url}/api/webhooks/{name}/{space.owner}/{space.name}" for name in PROVIDERS}


def view(svc: Services, space: Space, link: SpaceLink) -> dict:
    return {
        "url": link.url,
        "branch": link.branch,
        "hasCredential": link.credential_encrypted is not None,
        "webhooks": webhook_urls(svc, space),
        "createdAt": iso(link.created_at),
        "updatedAt": iso(link.updated_at),
    }


def require_link(s: Session, space: Space) -> SpaceLink:
    link = link_of(s, space)
    if link is None:
        raise NotFound(f"{space.full_name} is not linked to a repository.", "NotLinked")
    return link
