"""Short-lived signed transfer URLs: the batch API's upload/download/verify hrefs.

huggingface_hub PUTs an upload to the href alone (it sends no action headers: the Hub's hrefs are presigned S3
URLs), so the grant rides in the URL as on the Hub. It names one operation on one object of one Space and expires;
it is never the user's token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

ACTION_TTL = 900  # seconds: a transfer must start this soon after its batch answer


def _mac(secret: str, op: str, space: str, oid: str, expires: int) -> str:
    message = f"lfs:{op}:{space}:{oid}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_query(secret: str, op: str, space: str, oid: str, now: float | None = None) -> str:
    expires = int((now or time.time()) + ACTION_TTL)
    return urlencode({"exp": expires, "sig": _mac(secret, op, space, oid, expires)})


def valid(secret: str, op: str, space: str, oid: str, expires: str | None, sig: str | None) -> bool:
    if not expires or not sig or not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(sig, _mac(secret, op, space, oid, int(expires)))
