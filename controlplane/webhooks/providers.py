"""What each forge sends with a push webhook: its signature (checked in constant time over the exact bytes
received), event name and delivery id. The push payloads themselves agree on `ref` and `after`."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

Kind = Literal["push", "ping", "other"]


@dataclass(frozen=True)
class Provider:
    name: str
    event_headers: tuple[str, ...]
    delivery_headers: tuple[str, ...]
    signature_headers: tuple[str, ...]
    push_events: tuple[str, ...]
    ping_events: tuple[str, ...] = ()

    def header(self, headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
        for name in names:
            if (value := headers.get(name)) is not None:
                return value
        return None

    def event(self, headers: Mapping[str, str]) -> str:
        return (self.header(headers, self.event_headers) or "").strip()[:64]

    def kind(self, event: str) -> Kind:
        if event in self.push_events:
            return "push"
        return "ping" if event in self.ping_events else "other"

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        """The forge's id of the delivery (kept by its own redelivery); without one, the body's digest, so a replayed
        body is still recognised."""
        given = (self.header(headers, self.delivery_headers) or "").strip()
        return given[:128] if given else "sha256:" + hashlib.sha256(body).hexdigest()

    def signature_refusal(self, headers: Mapping[str, str], body: bytes, secret: str) -> str | None:
        """None when the delivery is signed with `secret`, else why not (the 401's message)."""
        given = self.header(headers, self.signature_headers)
        if not given:
            return f"Missing signature: {self.name} deliveries carry {' or '.join(self.signature_headers)}."
        if self.name == "gitlab":  # GitLab sends the secret itself
            expected = secret
        else:
            expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if self.name == "github":
                expected = "sha256=" + expected
        # Bytes on both sides: compare_digest refuses non-ASCII str, and a header may hold anything.
        if not hmac.compare_digest(given.strip().encode("latin-1", "replace"), expected.encode()):
            return "Invalid signature: the webhook secret in the forge differs from this Space's webhook secret."
        return None


PROVIDERS = {
    "github": Provider(
        name="github",
        event_headers=("x-github-event",),
        delivery_headers=("x-github-delivery",),
        signature_headers=("x-hub-signature-256",),
        push_events=("push",),
        ping_events=("ping",),
    ),
    "gitlab": Provider(
        name="gitlab",
        event_headers=("x-gitlab-event",),
        delivery_headers=("idempotency-key", "x-gitlab-event-uuid"),  # the first is kept across retries (17.4+)
        signature_headers=("x-gitlab-token",),
        push_events=("Push Hook",),
    ),
    # Forgejo sends its own headers and Gitea's; either forge may use either URL.
    **{
        name: Provider(
            name=name,
            event_headers=("x-forgejo-event", "x-gitea-event"),
            delivery_headers=("x-forgejo-delivery", "x-gitea-delivery"),
            signature_headers=("x-forgejo-signature", "x-gitea-signature"),
            push_events=("push",),
        )
        for name in ("gitea", "forgejo")
    },
}


class PayloadError(ValueError):
    """The body is not a webhook payload (the 400's message)."""


def parse(body: bytes, content_type: str) -> tuple[dict, bytes]:
    """The payload and its JSON bytes (the body, or the 'payload' field of GitHub's form encoding)."""
    text = body
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        fields = parse_qs(body.decode("latin-1"))
        if "payload" not in fields:
            raise PayloadError("Malformed payload: a form-encoded delivery needs a 'payload' field.")
        text = fields["payload"][0].encode("latin-1")
    try:
        payload = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PayloadError(f"Malformed JSON payload: {e}.") from e
    if not isinstance(payload, dict):
        raise PayloadError("Malformed payload: a webhook payload is a JSON object.")
    return payload, text
