"""Reading an outgoing webhook's call history (`integrations.history`): which calls failed, and
the last failure as one line that is safe to post in a room.

Theory of operation
-------------------
Rocket.Chat keeps one history document per call of a webhook's URL and moves its `step` on as
the call goes (contract §2.7; the trigger handler's `updateHistory`). A call *failed* when:

* `httpError` is set: no answer at all (refused, DNS, timeout; fetch's error object, whose
  `message` names the URL it called);
* `error` is truthy: Rocket.Chat judged the answer a failure (8.x: any status but 200/201/202 or
  an empty body, the status is in steps such as `after-process-http-status-500`; also script
  errors);
* `httpResult` is the pre-7 shape, the JSON of the whole HTTP result, with a `statusCode` out of
  2xx (servers from the `HTTP.call` days; 8.x stores only the body there).

Anything else counts as a call that did not fail, including one still under way (`pre-http-call`):
a call whose failure has not been recorded yet is not reported as one.

What the bot may repeat of an entry: the entries carry the webhook's token (`data.token`,
`httpCallData`, the copy of the integration) and its URLs, which often hold credentials
(`user:pass@`), tokens in the query or a secret path (`/services/T0/B0/XXXX`). `safe_error_line`
masks every known secret value first (the tokens, the stored URLs verbatim), then every URL it can
find down to `scheme://host/…` (as `show` does, a bracketed IPv6 host included), then
`name=value`, `name: value` and `"name": "value"` pairs whose name ends in a credential word
(`client_secret`, `X-Api-Key`; a quoted value whole, spaces and all) and `Basic`/`Bearer`
credentials, and only then cuts the text to one short line, so truncation can never expose the
tail of a secret that masking would have caught.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from bot.text import single_line, truncate

MASK: Final = "***"
LINE_LIMIT: Final = 140
SUCCESS_STATUSES: Final = range(200, 300)
_MIN_SECRET: Final = 4  # shorter values would mask ordinary words

# Anything that looks like a URL (scheme://...) up to whitespace or a closing quote/bracket; a
# bracketed IPv6 host (`http://[::1]:8080/…`) is part of it.
_URL: Final = re.compile(r"""(?i)\b[a-z][a-z0-9+.\-]{0,15}://(?:\[[^\s"'<>`\]]*\]|[^\s"'<>`\])}])*""")
# `user:password@host` without a scheme (some errors print hosts that way).
_USERINFO: Final = re.compile(r"""[^\s"'<>/@:]+:[^\s"'<>@]*@(?=[A-Za-z0-9\[])""")
# `name=value`, `name: value`, `"name": "value"` where the name ends in a credential word, whatever
# comes before it (`client_secret`, `github_token`, `X-Api-Key`, `privateKey`); a quoted value is
# masked whole, spaces and all (an unclosed quote: to the end).
_CREDENTIAL_PAIR: Final = re.compile(
    r"""(?i)(?<![A-Za-z0-9])([\w-]*?(?:token|key|secret|password|passwd|pwd|pass|sig|signature|auth|"""
    r"""authorization|credentials?|session|cookie))(["']?\s*[=:]\s*)("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|"""
    r"""[^\s&"',;]+)"""
)
# An Authorization header's value: a quoted value whole, else its scheme and credential.
_AUTH_HEADER: Final = re.compile(
    r"""(?i)\b((?:proxy-)?authorization["']?\s*[=:]\s*)(?:"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|"""
    r"""[^\s"',;]+(?:\s+[^\s"',;]+)?)"""
)
_AUTH_SCHEME: Final = re.compile(r"(?i)\b(basic|bearer|digest)\s+[A-Za-z0-9+/=._~\-]{4,}")
# A string under a key containing one of these is a secret (`apiKey`, `x-api-key`, `credentials`…).
_SECRET_KEY_WORDS: Final = (
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "key",
    "credential",
    "cookie",
    "session",
    "signature",
)
_STATUS_STEP: Final = re.compile(r"after-process-http-status-(\d{3})$")
_RETRY_STEP: Final = re.compile(r"going-to-retry-(\d+)$")


def mask_url(url: str) -> str:
    """`scheme://host[:port]/…`: no credentials, no path, no query (`show` shows URLs the same way)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    if ":" in host:
        host = f"[{host}]"  # IPv6, bracketed as in the URL
    rest = "/…" if (parts.path.strip("/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def safe_error_line(text: str, secrets: Iterable[str] = (), *, limit: int = LINE_LIMIT) -> str:
    """`text` on one line of at most `limit` characters with every secret masked (see module doc)."""
    known = {s for s in secrets if len(s) >= _MIN_SECRET}
    known |= {single_line(s) for s in known if len(single_line(s)) >= _MIN_SECRET}
    ordered = sorted(known, key=len, reverse=True)
    cleaned = _mask_known(text, ordered)
    cleaned = _mask_known(single_line(cleaned), ordered)  # joins what invisible characters split
    cleaned = _URL.sub(lambda m: mask_url(m.group(0)), cleaned)
    cleaned = _USERINFO.sub(f"{MASK}@", cleaned)
    cleaned = _AUTH_HEADER.sub(_masked_header, cleaned)
    cleaned = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {MASK}", cleaned)
    cleaned = _CREDENTIAL_PAIR.sub(_masked_pair, cleaned)
    return truncate(cleaned, limit)


def _quoted_mask(value: str) -> str:
    quote = value[0] if value[0] in "\"'" else ""
    return f"{quote}{MASK}{quote}"


def _masked_header(match: re.Match[str]) -> str:
    return f"{match.group(1)}{_quoted_mask(match.group(0)[match.end(1) - match.start() :])}"


def _masked_pair(match: re.Match[str]) -> str:
    name, separator, value = match.groups()
    return f"{name}{separator}{_quoted_mask(value)}"


def _mask_known(text: str, secrets: Iterable[str]) -> str:
    """Each known secret replaced: a stored URL by its `scheme://host/…`, anything else by `***`."""
    for secret in secrets:
        if secret in text:
            shown = mask_url(secret) if _URL.fullmatch(secret) else MASK
            text = text.replace(secret, shown)
    return text


def entry_secrets(entry: Mapping[str, Any], integration: Mapping[str, Any] | None = None) -> list[str]:
    """Values in a history entry (and the integration) never to repeat: every string under a key
    that names a token/secret/password/key/credential, and every stored URL verbatim."""
    found: list[str] = []

    def walk(value: Any, key: str, depth: int) -> None:
        if depth > 6:
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k), depth + 1)
        elif isinstance(value, list):
            for v in value:
                walk(v, key, depth + 1)
        elif isinstance(value, str) and (_secret_key(key) or key in ("url", "urls")):
            found.append(value)

    walk(entry, "", 0)
    if integration is not None:
        walk(integration, "", 0)
    return found


def _secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_KEY_WORDS)


@dataclass(frozen=True)
class CallVerdict:
    failed: bool
    reason: str = ""  # unsanitised; pass it through `safe_error_line` before showing it


def _body(raw: Any) -> tuple[int | None, str]:
    """(legacy status, body text) from `httpResult`: the JSON of the body (8.x) or of the whole
    HTTP result with `statusCode` (pre-7)."""
    if not isinstance(raw, str):
        return None, ""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None, raw
    if isinstance(parsed, dict) and isinstance(parsed.get("statusCode"), int):
        content = parsed.get("content")
        return parsed["statusCode"], content if isinstance(content, str) else ""
    if isinstance(parsed, str):
        return None, parsed
    return None, "" if parsed is None else json.dumps(parsed, ensure_ascii=False)


def _error_text(value: Any) -> str:
    if isinstance(value, Mapping):
        for key in ("message", "reason", "code", "error"):
            if isinstance(value.get(key), str) and value[key]:
                return str(value[key])
        return "error"
    if isinstance(value, str):
        return value
    return ""


def _step_reason(step: str) -> str:
    status = _STATUS_STEP.match(step)
    if status:
        code = status.group(1)
        return f"HTTP {code} (Gone: Rocket.Chat disabled the webhook)" if code == "410" else f"HTTP {code}"
    retry = _RETRY_STEP.match(step)
    if retry:
        return f"failed, retry {retry.group(1)} pending"
    return {
        "failed-and-not-configured-to-retry": "failed (an error status or an empty answer)",
        "too-many-retries": "failed after every retry",
        "failed-and-retry-delay-is-invalid": "failed; its retry delay setting is invalid",
    }.get(step, f"failed at step {step}" if step else "failed")


def verdict(entry: Mapping[str, Any]) -> CallVerdict:
    """Whether this call failed, and why (see the module doc)."""
    step = entry.get("step") if isinstance(entry.get("step"), str) else ""
    legacy_status, body = _body(entry.get("httpResult"))
    snippet = f": {body}" if body.strip() else ""
    http_error = entry.get("httpError")
    if http_error:
        return CallVerdict(True, _error_text(http_error) or "no answer")
    error = entry.get("error")
    if error:
        stack = entry.get("errorStack")
        if isinstance(error, str | Mapping) and _error_text(error):
            return CallVerdict(True, _error_text(error))
        if isinstance(stack, str) and stack.strip():
            return CallVerdict(True, stack.strip().splitlines()[0])
        return CallVerdict(True, _step_reason(str(step)) + snippet)
    if legacy_status is not None and legacy_status not in SUCCESS_STATUSES:
        return CallVerdict(True, f"HTTP {legacy_status}{snippet}")
    return CallVerdict(False)


def entry_time(entry: Mapping[str, Any]) -> datetime | None:
    """When the entry was last written (`_updatedAt`, else `_createdAt`), from REST's ISO form."""
    for key in ("_updatedAt", "_createdAt"):
        value = entry.get(key)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if isinstance(value, Mapping) and isinstance(value.get("$date"), int | float):
            return datetime.fromtimestamp(value["$date"] / 1000, UTC)
    return None
