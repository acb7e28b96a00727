"""Tokens, passwords, signed sessions and secret encryption: every secret-handling primitive in one place."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken

TOKEN_PREFIX = "sy_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def hash_token(token: str) -> str:
    # Tokens are long random strings, so a fast hash is enough (no brute-force surface).
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1)
    return hmac.compare_digest(candidate.hex(), digest)


def service_token(secret_key: str, purpose: str) -> str:
    """A token derived from the secret key, for internal callers (the builder reading repos)."""
    mac = hmac.new(secret_key.encode(), f"spaceyard:{purpose}".encode(), hashlib.sha256).hexdigest()
    return f"{TOKEN_PREFIX}{purpose}_{mac[:40]}"


class SecretBoxError(Exception):
    pass


class SecretBox:
    """Encrypts Space secrets at rest with a key derived from the settings' secret key."""

    def __init__(self, secret_key: str) -> None:
        key = hashlib.sha256(f"spaceyard-secrets:{secret_key}".encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as e:
            raise SecretBoxError(
                "a stored secret cannot be decrypted: SPACEYARD_SECRET_KEY differs from the key it was written with"
            ) from e


def secret_matches(presented: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a presented credential with a configured one (None never matches)."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())
