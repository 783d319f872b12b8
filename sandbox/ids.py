"""Identifier, token and date helpers matching Rocket.Chat/Meteor formats."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

_UNMISTAKABLE = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def meteor_id(length: int = 17) -> str:
    """Meteor `Random.id()`: 17 characters from the unmistakable alphabet."""
    return "".join(secrets.choice(_UNMISTAKABLE) for _ in range(length))


def object_id() -> str:
    """A 24-hex-character ObjectId string, as `BaseRaw.insertOne` generates for integrations."""
    return secrets.token_hex(12)


def login_token() -> str:
    """Meteor `Random.secret()`: 43 base64url characters."""
    return "".join(secrets.choice(_BASE64URL) for _ in range(43))


def hash_login_token(token: str) -> str:
    """Meteor `Accounts._hashLoginToken`: base64 of SHA-256 of the token."""
    return base64.b64encode(hashlib.sha256(token.encode()).digest()).decode()


def password_digest(password: str) -> str:
    """The lower-case hex SHA-256 a DDP client sends as `password.digest`."""
    return hashlib.sha256(password.encode()).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """REST date form: `2024-06-04T11:20:00.000Z`."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def epoch_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def to_rest(value: Any) -> Any:
    """Deep-copy a stored value into its REST JSON form (datetimes as ISO strings)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: to_rest(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_rest(v) for v in value]
    return value


def to_ejson(value: Any) -> Any:
    """Deep-copy a stored value into its DDP EJSON form (datetimes as `{"$date": ms}`)."""
    if isinstance(value, datetime):
        return {"$date": epoch_ms(value)}
    if isinstance(value, dict):
        return {k: to_ejson(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_ejson(v) for v in value]
    return value


def parse_date(value: Any) -> datetime | None:
    """Parse an ISO string or an EJSON `{"$date": ms}` into an aware datetime, else None."""
    if isinstance(value, dict) and isinstance(value.get("$date"), int | float):
        return datetime.fromtimestamp(value["$date"] / 1000, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
