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
find down to `scheme://host/…` (as `show` does, a bracketed IPv6 host included; a `)` or `]` inside
a URL does not end it), URLs without a scheme down to `host[:port]/…` (`hooks.example.com/services/
…`; a bare `host` or `host:port` stays), `user:pass@` (a password with a space or two included),
then `name=value`, `name: value` and `"name": "value"` pairs whose name ends in a credential word
(`client_secret`, `X-Api-Key`; a quoted value whole, spaces and all; `%3D`/`%3A` count as `=`/`:`),
`Basic`/`Bearer` credentials, a value right after a credential word that does not read as a word
(`Invalid token abc123…`, but `token expired`), JSON Web Tokens, keys known by their prefix
(`ghp_`, `xoxb-`, `sk_live_`, `AKIA`…) and long opaque runs of key characters, and only then cuts
the text to one short line, so truncation can never expose the tail of a secret that masking would
have caught.

These heuristics cannot know every secret: a value that reads as a word (`token hunter`, lower-case
letters only, under 16 characters) after a credential word with only a space between is shown, as
is a short unprefixed key nothing names. Every pattern starts only where its run of characters
starts and the heuristics read at most `_SCAN_LIMIT` characters (the cut drops the word it goes
through), so a hostile body costs bounded time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from bot.rocketchat.ejson import decode_date
from bot.text import single_line, truncate

MASK: Final = "***"
LINE_LIMIT: Final = 140
SUCCESS_STATUSES: Final = range(200, 300)
_MIN_SECRET: Final = 4  # shorter values would mask ordinary words
# The heuristics read at most this much of a long text (a response body): bounded work per line.
_SCAN_LIMIT: Final = 4000

# Anything that looks like a URL (scheme://...) up to whitespace, a quote or an angle bracket:
# closing brackets inside it are part of it (`http://host/a)/SECRET`, `http://host]/SECRET`), and
# only those at its very end are given back (`(see http://host/path)`); see `_shortened_url`.
_URL: Final = re.compile(r"""(?i)\b[a-z][a-z0-9+.\-]{0,15}://[^\s"'<>`]*""")
_TRAILING: Final = ")]}.,;:!?"
_HOST_THEN_CLOSER: Final = re.compile(r"""([^:]+://(?:\[[^\]/]*\][^/?#)\]}]*|[^\[/?#)\]}][^/?#)\]}]*))([)\]}]+)(.+)""")
# `user:password@host` without a scheme (some errors print hosts that way); the password may hold
# a few spaces (`user:pa ss@host`) and `@`s (the last `@` before the host ends it, as in a URL);
# after a second `:` (`user:pa:ss@host`) it is masked from there on (`user:***@host`), which keeps
# the search linear.
_USERINFO: Final = re.compile(
    r"""(?<![^\s"'<>/@:])[^\s"'<>/@:]+:(?=[^\s@])[^\s"'<>:]*(?:\s[^\s"'<>:]+){0,2}@(?=[A-Za-z0-9\[])"""
)
# A URL without a scheme: a host name with a dot and a top-level label (or an IPv4 address, or a
# bracketed IPv6 one), an optional port, then a path, query or fragment (`hooks.example.com/services/
# T0/B0/X`, `ECONNREFUSED example.org:8443/api/key/abc`); closing brackets between host and path
# are tolerated. A bare `host` or `host:port` (`getaddrinfo ENOTFOUND host`) is not a URL.
_HOST: Final = (
    r"""(?:(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9\-]{0,61}"""
    r"""|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\])"""
)
_HOST_ONLY: Final = re.compile(_HOST)
# It starts only where a dotted run starts (so the search stays linear); dots or hyphens before the
# host (`...hooks.example.com/x`) are kept as they are.
_BARE_URL: Final = re.compile(rf"""(?<![A-Za-z0-9.\-])([.\-]*)({_HOST}(?::\d{{1,5}})?)[)\]}}]*[/?#][^\s"'<>`]*""")
# `name=value`, `name: value`, `"name": "value"` where the name ends in a credential word, whatever
# comes before it (`client_secret`, `github_token`, `X-Api-Key`, `privateKey`: the name starts where
# the run of name characters does, so the search stays linear); a quoted value is
# masked whole, spaces and all (an unclosed quote: to the end).
_CREDENTIAL_PAIR: Final = re.compile(
    r"""(?i)(?<![\w-])([\w-]*?(?:token|key|secret|password|passwd|pwd|pass|sig|signature|auth|"""
    r"""authorization|credentials?|session|cookie))((?:["']|%22)?\s*(?:[=:]|%3[ADad]|%253[ADad])\s*)"""
    r"""("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|"""
    r"""[^\s&"',;]+)"""
)
# An Authorization header's value: a quoted value whole, else its scheme and credential.
_AUTH_HEADER: Final = re.compile(
    r"""(?i)\b((?:proxy-)?authorization["']?\s*[=:]\s*)(?:"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|"""
    r"""[^\s"',;]+(?:\s+[^\s"',;]+)?)"""
)
_AUTH_SCHEME: Final = re.compile(r"(?i)\b(basic|bearer|digest)\s+[A-Za-z0-9+/=._~\-]{4,}")
# A credential word followed by its value with only a space between (`Invalid token abc123def`,
# `bad api key sk_live_…`): the value is masked when it does not read as a word (`_looks_secret`),
# so `token expired` and `api key missing` stay as they are. The name of a pair masked already
# (`key client_token: ***`) is no value.
_WORD_VALUE: Final = re.compile(
    r"""(?i)(?<![\w-])((?:[\w-]*?(?:token|key|secret|password|passwd|pwd|passphrase|signature|"""
    r"""credentials?))\s+)(["']?)([A-Za-z0-9+/_.~\-]*[A-Za-z0-9+/_~\-](?:={1,2}(?=[\s)\]},;.]|$))?)\2"""
    r"""(?![A-Za-z0-9+/_~\-*=…]|\.\w)(?!["']?\s*(?:[=:]|%3[ADad])\s*["']?\*\*\*)"""
)
# A JSON Web Token (header and payload are base64url JSON, so both start `eyJ`), signed or not.
_JWT: Final = re.compile(r"""eyJ[\w-]{4,}\.eyJ[\w-]{2,}(?:\.[\w-]*)?""")
# Tokens whose prefix says what they are: GitHub, Slack, Stripe, OpenAI-style, GitLab, AWS access
# key ids, Google API keys.
_PREFIXED_TOKEN: Final = re.compile(
    r"""(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_\w{16,}|xox[abposre]-[A-Za-z0-9-]{8,}|"""
    r"""(?:sk|rk|pk)_(?:live|test)_\w{8,}|sk-[\w-]{16,}|glpat-[\w-]{16,}|(?:AKIA|ASIA)[A-Z0-9]{16}|"""
    r"""AIza[\w-]{30,})(?![\w-])"""
)
# Any other long run of key characters (see `_opaque`).
_LONG_RUN: Final = re.compile(r"""(?<![\w-])[\w-]{20,}(?![\w-])""", re.ASCII)
_OPAQUE_MIN: Final = 32  # at least this long, and not made of short words (`failed-and-not-configured-…`)
_MIXED_MIN: Final = 20  # at least this long with upper case, lower case and digits all in it
_WORD_PART_MAX: Final = 12
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
    """`scheme://host[:port]/…`: no credentials, no path, no query, no fragment; `***` when `url`
    is no URL with a host or its port is no number (what looks like a port may be the start of a
    password cut short). The one masker of every URL the bot shows: `show`, `set`'s previews, change
    lines, verification errors and `failing`."""
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
    cleaned = _bounded(cleaned, max(_SCAN_LIMIT, 4 * limit))
    cleaned = _URL.sub(_shortened_url, cleaned)
    cleaned = _USERINFO.sub(f"{MASK}@", cleaned)
    cleaned = _BARE_URL.sub(_shortened_bare_url, cleaned)
    cleaned = _AUTH_HEADER.sub(_masked_header, cleaned)
    cleaned = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {MASK}", cleaned)
    cleaned = _CREDENTIAL_PAIR.sub(_masked_pair, cleaned)
    cleaned = _mask_word_values(cleaned)
    cleaned = _JWT.sub(MASK, cleaned)
    cleaned = _PREFIXED_TOKEN.sub(MASK, cleaned)
    cleaned = _LONG_RUN.sub(lambda m: MASK if _opaque(m.group(0)) else m.group(0), cleaned)
    return truncate(cleaned, limit)


def _bounded(text: str, scan: int) -> str:
    """`text` cut to `scan` characters before the heuristics read it, without the word the cut
    went through (a secret cut in two would no longer look like one)."""
    if len(text) <= scan:
        return text
    end = scan
    while end and not text[end - 1].isspace() and not text[end].isspace():
        end -= 1  # back to the start of the word the cut goes through
    return text[:end] + "…"


def _split_trailing(text: str) -> tuple[str, str]:
    """(`text` without the closing brackets and punctuation at its end, those characters)."""
    kept = text.rstrip(_TRAILING)
    return kept, text[len(kept) :]


def _shortened_url(match: re.Match[str]) -> str:
    """`scheme://host[:port]/…`; a closing bracket right after the host (`[http://h.example]/x`)
    ends the host, and whatever follows it is a path."""
    url, trailing = _split_trailing(match.group(0))
    split = _HOST_THEN_CLOSER.match(url)
    if split is None:
        return mask_url(url) + trailing
    head, closers, rest = split.groups()
    return f"{mask_url(head)}{closers}{'/…' if rest.startswith('/') else '…'}{trailing}"


def _shortened_bare_url(match: re.Match[str]) -> str:
    """`host[:port]/…` for a URL without a scheme; a lone `host/` is left as it is."""
    url, trailing = _split_trailing(match.group(0))
    lead, authority = match.group(1), match.group(2)
    rest = url[len(lead) + len(authority) :]
    if not rest.lstrip(")]}").strip("/"):
        return match.group(0)
    closers = rest[: len(rest) - len(rest.lstrip(")]}"))]
    return f"{lead}{authority}{closers}/…{trailing}"


def _looks_secret(value: str) -> bool:
    """Whether a value found after a credential word is no word: it holds a digit (but is no short
    number such as a status), an underscore, mixed case past its first letter (`aBcD`; `ENOTFOUND`
    and `Expired` read as words), one of `+/=~`, or is long; a host name and words or short numbers
    joined by `-` (`after-process-http-status-500`) are no secret."""
    if value.isdigit():
        return len(value) >= 6
    if _HOST_ONLY.fullmatch(value.rstrip("/")):
        return False  # `key example.com`, `token 10.0.0.7`: a host is no secret
    parts = value.split("-")
    if len(parts) > 1 and all(_word_or_number(part) for part in parts) and not value.replace("-", "").isdigit():
        return False  # `after-process-http-status-500`, `re-issued`: words joined
    return (
        any(c.isdigit() for c in value)
        or "_" in value
        or (any(c.isupper() for c in value[1:]) and any(c.islower() for c in value))
        or (len(value) >= 16 and "." not in value)  # a long host name is no secret
        or any(c in "+/=~" for c in value)
    )


def _mask_word_values(text: str) -> str:
    """Each value after a credential word masked (`_WORD_VALUE`) when it looks secret. A value that
    reads as a word may itself be a credential word (`KEY token 00000000`), so the search goes on
    right after the name, not after the value."""
    out: list[str] = []
    pos = 0
    while (match := _WORD_VALUE.search(text, pos)) is not None:
        if _looks_secret(match.group(3)):
            out.append(f"{text[pos : match.start(3)]}{MASK}")
            pos = match.end(3)
        else:
            out.append(text[pos : match.end(1)])
            pos = match.end(1)
    out.append(text[pos:])
    return "".join(out)


def _word_or_number(part: str) -> bool:
    lowered = part.lower()
    word = part.isalpha() and len(part) <= _WORD_PART_MAX and (part == lowered or part[1:] == lowered[1:])
    return word or (part.isdigit() and len(part) <= 5)


def _opaque(run: str) -> bool:
    """Whether a run of `[A-Za-z0-9_-]` looks like a key rather than words joined by `-`/`_`:
    at least `_OPAQUE_MIN` long with a digit, mixed case or a part longer than a word, or at least
    `_MIXED_MIN` long with upper case, lower case and digits all in it."""
    has_digit = any(c.isdigit() for c in run)
    has_upper = any(c.isupper() for c in run)
    has_lower = any(c.islower() for c in run)
    if len(run) >= _MIXED_MIN and has_digit and has_upper and has_lower:
        return True
    if len(run) < _OPAQUE_MIN:
        return False
    parts = [p for p in re.split(r"[-_]", run) if p]
    wordy = all(p.isalpha() and len(p) <= _WORD_PART_MAX for p in parts)
    return has_digit or (has_upper and has_lower and not wordy) or not wordy


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
    """When the entry was last written (`_updatedAt`, else `_createdAt`), from REST's ISO form
    or EJSON's `{"$date": ms}` (`decode_date`)."""
    for key in ("_updatedAt", "_createdAt"):
        when = decode_date(entry.get(key))
        if when is not None:
            return when
    return None
