"""Which history entries are failed calls, and the one-line error that is safe to post."""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bot.integrations.call_failures import MASK, entry_secrets, entry_time, mask_url, safe_error_line, verdict
from sandbox.integration_history import CallOutcome, outgoing_call_entry

OUTGOING = {
    "_id": "hook1",
    "type": "webhook-outgoing",
    "name": "Deploy",
    "event": "sendMessage",
    "urls": ["https://deployer:hunter2hunter2@deploy.example.org/hooks/T0/B0/s3cretpath?api_key=k3yk3yk3y"],
    "token": "outgoing-token-0123456789",
    "_createdBy": {"_id": "u1", "username": "owen"},
}
AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SECRETS = ("hunter2hunter2", "s3cretpath", "k3yk3yk3y", "outgoing-token-0123456789")


def _entry(outcome: CallOutcome) -> dict[str, object]:
    # What the sandbox stores for such a call (its shapes are tested against the trigger handler).
    entry = outgoing_call_entry(OUTGOING, outcome, at=AT)
    entry["_updatedAt"] = AT.isoformat()
    return entry


def _line(outcome: CallOutcome) -> str:
    entry = _entry(outcome)
    found = verdict(entry)
    assert found.failed
    return safe_error_line(found.reason, entry_secrets(entry, OUTGOING))


def test_successful_calls_are_not_failures() -> None:
    assert not verdict(_entry(CallOutcome(status=200, body='{"ok": true}'))).failed
    assert not verdict({"step": "pre-http-call"}).failed  # still under way
    assert not verdict({"step": "after-http-call", "httpResult": json.dumps({"statusCode": 204, "content": ""})}).failed


def test_each_kind_of_failure_has_a_reason_without_secrets() -> None:
    refused = _line(CallOutcome(error_code="ECONNREFUSED"))
    expected = "request to https://deploy.example.org/… failed, reason: connect ECONNREFUSED deploy.example.org:443"
    assert refused == expected
    assert _line(CallOutcome(status=500, body="queue down")) == "HTTP 500: queue down"
    assert _line(CallOutcome(status=503, body="busy")) == "failed (an error status or an empty answer): busy"
    assert _line(CallOutcome(status=410, body="gone")).startswith("HTTP 410 (Gone")
    echoed = _line(CallOutcome(status=500, body=f"bad token {OUTGOING['token']} for {OUTGOING['urls'][0]}"))  # type: ignore[index]
    assert not any(secret in echoed for secret in SECRETS), echoed
    legacy = {"httpResult": json.dumps({"statusCode": 404, "content": "no such hook"}), "step": "after-http-call"}
    assert verdict(legacy).reason == "HTTP 404: no such hook"


def test_entry_time_reads_rest_and_ejson_dates() -> None:
    assert entry_time({"_updatedAt": "2026-12-06T12:00:00.000Z"}) == AT
    assert entry_time({"_createdAt": {"$date": AT.timestamp() * 1000}}) == AT
    assert entry_time({}) is None


def test_urls_keep_only_scheme_and_host() -> None:
    assert mask_url("https://u:p@h.example:8443/a/b?token=x#f") == "https://h.example:8443/…"
    assert mask_url("http://h.example") == "http://h.example"
    assert mask_url("http://[::1") == "***"
    assert mask_url("http://[::1]:8080/hook/SECRETPATH") == "http://[::1]:8080/…"


def test_the_reviewed_leaks_are_masked() -> None:
    """Was: each of these kept its secret in the `failing` line."""
    ipv6 = safe_error_line("request to http://[::1]:8080/hook/SECRETPATH failed")
    assert ipv6 == "request to http://[::1]:8080/… failed"
    assert safe_error_line("client_secret=SECRETX github_token=SECRETY") == "client_secret=*** github_token=***"
    assert safe_error_line('HTTP 401: {"client_secret": "SECRETX"}') == 'HTTP 401: {"client_secret": "***"}'
    assert safe_error_line("sent X-Api-Key: SECRETX, api_key=SECRETY") == "sent X-Api-Key: ***, api_key=***"
    assert safe_error_line("PASSWORD: 'hunter 22' rejected") == "PASSWORD: '***' rejected"
    headers = {"httpCallData": {"headers": {"X-Api-Key": "k3yk3yk3y", "apiKey": "SECRETZZ"}}}
    assert set(entry_secrets(headers)) == {"k3yk3yk3y", "SECRETZZ"}


_SAFE_CHARS = string.ascii_letters + string.digits
secret_text = st.text(alphabet=_SAFE_CHARS, min_size=8, max_size=24)
url_chars = st.text(alphabet=_SAFE_CHARS + "-._~", min_size=1, max_size=12)
filler = st.text(alphabet=string.ascii_letters + " ,.:;()[]\"'\n\t-", max_size=40)


@given(
    user=url_chars,
    password=secret_text,
    host=st.one_of(
        st.from_regex(r"[a-z]{1,10}(\.[a-z]{2,5}){1,2}", fullmatch=True),
        # Was: `http://[::1]:8080/hook/SECRETPATH` became `***]:8080/hook/SECRETPATH`.
        st.from_regex(r"\[[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,7}\](:[0-9]{1,5})?", fullmatch=True),
    ),
    path_secret=secret_text,
    query_secret=secret_text,
    before=filler,
    after=filler,
    scheme=st.sampled_from(["http", "https", "HTTPS", "ftp", "ws"]),
    key=st.sampled_from(["token", "api_key", "key", "secret", "sig", "access_token", "password"]),
)
def test_no_credential_or_query_value_of_a_url_survives(
    user: str,
    password: str,
    host: str,
    path_secret: str,
    query_secret: str,
    before: str,
    after: str,
    scheme: str,
    key: str,
) -> None:
    for secret in (password, path_secret, query_secret):
        assume(secret not in before + after + host + scheme)
    url = f"{scheme}://{user}:{password}@{host}/hooks/{path_secret}?{key}={query_secret}&x=1"
    line = safe_error_line(f"{before}request to {url} failed{after}", limit=1000)
    for secret in (password, path_secret, query_secret):
        assert secret not in line, line


@given(token=secret_text, before=filler, after=filler, limit=st.integers(min_value=1, max_value=200))
def test_a_known_token_never_survives_even_cut_short(token: str, before: str, after: str, limit: int) -> None:
    assume(token not in before + after)
    line = safe_error_line(f"{before}{token}{after}", [token], limit=limit)
    assert token not in line
    assert len(line) <= limit and "\n" not in line


credential_words = st.sampled_from(
    ["token", "password", "api-key", "apikey", "api_key", "Key", "secret", "Secret", "Authorization", "credentials"]
)
# What may come before the word: `client_secret`, `github_token`, `X-Api-Key`, `privateKey`, `app.token`.
name_prefixes = st.sampled_from(["", "client_", "github_", "access_", "X-Api-", "x-", "private", "app.", "MY_APP_"])


@given(
    prefix=name_prefixes,
    key=credential_words,
    sep=st.sampled_from(["=", ": ", ":", " = "]),
    quote=st.sampled_from(["", '"', "'"]),
    words=st.lists(secret_text, min_size=1, max_size=3),
    before=filler,
)
def test_key_value_credentials_are_masked(
    prefix: str, key: str, sep: str, quote: str, words: list[str], before: str
) -> None:
    """Was: `client_secret=X`, `github_token=X` and `X-Api-Key: X` kept X (a prefix before the
    word defeated the match), and `PASSWORD: 'hunter 22'` became `'*** 22'`."""
    value = " ".join(words) if quote else words[0]  # a quoted value may hold spaces
    assume(not any(word in before + prefix + key for word in words))  # `password=password`: the name stays
    line = safe_error_line(f"{before} {prefix}{key}{sep}{quote}{value}{quote} rest", limit=1000)
    assert not any(word in line for word in words), line
    assert f"{prefix}{key}" in line  # the name stays: the reader learns what was masked


@given(
    prefix=name_prefixes,
    key=credential_words,
    words=st.lists(secret_text, min_size=1, max_size=3),
    before=filler,
    compact=st.booleans(),
)
def test_json_credentials_are_masked_whole(prefix: str, key: str, words: list[str], before: str, compact: bool) -> None:
    """Was: `{"client_secret": "X"}` kept X."""
    assume(not any(word in before + prefix + key for word in words))  # `"password": "password"`: the name stays
    document = {"error": "invalid_client", f"{prefix}{key}": " ".join(words)}
    body = json.dumps(document, separators=(",", ":") if compact else None)
    line = safe_error_line(f"{before} HTTP 401: {body}", limit=1000)
    assert not any(word in line for word in words), line
    assert "invalid_client" in line


@given(
    prefix=st.sampled_from(["", "X-", "x-", "client_", "private", "Proxy-"]),
    key=st.sampled_from(["Api-Key", "apiKey", "api_key", "key", "Credential", "credentials", "Cookie", "Session-Id"]),
    value=secret_text,
    before=filler,
)
def test_header_and_key_values_of_an_entry_are_never_repeated(prefix: str, key: str, value: str, before: str) -> None:
    """Was: `entry_secrets` took only keys naming a token/secret/password/auth, so the value of
    an `X-Api-Key` header echoed back in an error body was shown."""
    assume(value not in before)
    entry = {"httpCallData": {"headers": {f"{prefix}{key}": value}}, "httpError": {"message": "x"}}
    line = safe_error_line(f"{before} rejected {value}", entry_secrets(entry), limit=1000)
    assert value not in line, line


@given(scheme=st.sampled_from(["Basic", "Bearer", "bearer"]), value=secret_text)
def test_authorization_credentials_are_masked(scheme: str, value: str) -> None:
    assume(value not in "401: Authorization: sent upstream")
    assert value not in safe_error_line(f"401: Authorization: {scheme} {value}", limit=1000)
    assert value not in safe_error_line(f"sent {scheme} {value} upstream", limit=1000)


# Secrets that nothing names: the shapes a review found in `failing` lines. Each is embedded in
# random surrounding text, parted from it by a separator (glued to letters it would be another word).
separators = st.sampled_from([" ", ", ", " (", ") ", "[", "] ", '"', "'", "\t", "\n", ": ", " = "])
hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9\-]{0,8}[a-z0-9](\.[a-z0-9]{1,8}){0,2}\.[a-z]{2,6}", fullmatch=True),
    st.from_regex(r"(25[0-5]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|1[0-9]{2}|[1-9]?[0-9])){3}", fullmatch=True),
)
ports = st.one_of(st.just(""), st.integers(min_value=1, max_value=65535).map(lambda port: f":{port}"))


# A value that does not read as a word: a digit, an underscore or mixed case past its first letter
# (a lone word such as `expired`, `Expired` or `ENOTFOUND` is shown, and so are words and short
# numbers joined by `-` such as `after-process-http-status-500`: see the readability tests).
def _keylike(value: str) -> bool:
    parts = value.split("-")
    joined_words = len(parts) > 1 and any(p.isalpha() for p in parts)
    joined_words = joined_words and all(
        (p.isalpha() and len(p) <= 12 and p[1:] == p[1:].lower()) or (p.isdigit() and len(p) <= 5) for p in parts
    )
    secretish = (
        any(c.isdigit() or c == "_" for c in value)
        or (any(c.isupper() for c in value[1:]) and any(c.islower() for c in value))
        or len(value) >= 16
    )
    return value[0] != "-" and secretish and not joined_words


keylike = st.text(alphabet=_SAFE_CHARS + "_-", min_size=8, max_size=40).filter(_keylike)


def _embedded(before: str, sep1: str, shape: str, sep2: str, after: str) -> str:
    return safe_error_line(f"{before}{sep1}{shape}{sep2}{after}", limit=1000)


@given(
    host=hosts,
    port=ports,
    segments=st.lists(url_chars, max_size=3),
    secret=secret_text,
    closer=st.sampled_from(["", ")", "]", "))", ")]"]),
    query=st.booleans(),
    before=filler,
    after=filler,
    sep1=separators,
    sep2=separators,
)
def test_no_path_of_a_url_without_a_scheme_survives(
    host: str,
    port: str,
    segments: list[str],
    secret: str,
    closer: str,
    query: bool,
    before: str,
    after: str,
    sep1: str,
    sep2: str,
) -> None:
    """Was: `hooks.example.com/services/T00/B00/SECRETPATH` and `ECONNREFUSED example.org:8443/
    api/key/abc` were shown whole; so was a path after `)` or `]`."""
    assume(secret not in before + after + host + "".join(segments))
    path = "/".join([*segments, secret])
    url = f"{host}{port}{closer}/{path}" if not query else f"{host}{port}/hook?{secret}"
    line = _embedded(before, sep1, url, sep2, after)
    assert secret not in line, line


@given(
    scheme=st.sampled_from(["http", "https"]),
    host=hosts,
    lead=st.sampled_from(["", "/a", "/hooks/x"]),
    closer=st.sampled_from([")", "]", "}", ")]"]),
    secret=secret_text,
    before=filler,
    after=filler,
    sep1=separators,
    sep2=separators,
)
def test_no_path_after_a_closing_bracket_in_a_url_survives(
    scheme: str, host: str, lead: str, closer: str, secret: str, before: str, after: str, sep1: str, sep2: str
) -> None:
    """Was: the URL ended at the first `)` or `]`, so `http://host/a)/SECRET` kept `/SECRET`."""
    assume(secret not in before + after + host)
    line = _embedded(before, sep1, f"{scheme}://{host}{lead}{closer}/{secret}", sep2, after)
    assert secret not in line, line


@given(
    user=url_chars,
    words=st.lists(secret_text, min_size=1, max_size=3),
    host=hosts,
    port=ports,
    before=filler,
    after=filler,
    sep1=separators,
    sep2=separators,
)
def test_no_password_before_a_host_survives_even_with_spaces(
    user: str, words: list[str], host: str, port: str, before: str, after: str, sep1: str, sep2: str
) -> None:
    """Was: `user:pa ss@host` kept `pa` and `ss`."""
    assume(not any(word in before + after + host + user for word in words))
    line = _embedded(before, sep1, f"{user}:{' '.join(words)}@{host}{port}", sep2, after)
    assert not any(word in line for word in words), line


@given(
    prefix=st.sampled_from(["Invalid ", "bad ", "wrong ", "", "expired "]),
    key=st.sampled_from(["token", "api key", "API key", "apikey", "secret", "password", "access token", "signature"]),
    quote=st.sampled_from(["", '"', "'"]),
    value=keylike,
    before=filler,
    after=filler,
    sep=separators,
)
def test_a_value_right_after_a_credential_word_is_masked(
    prefix: str, key: str, quote: str, value: str, before: str, after: str, sep: str
) -> None:
    """Was: `Invalid token abc123def456`, `bad api key sk_live_…` were shown whole."""
    assume(value not in before + after)
    line = _embedded(before, sep, f"{prefix}{key} {quote}{value}{quote}", " ", after)
    assert value not in line, line


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@given(
    alg=st.sampled_from(["HS256", "RS256", "none"]),
    subject=secret_text,
    signature=st.binary(min_size=0, max_size=64),
    before=filler,
    after=filler,
    sep1=separators,
    sep2=separators,
)
def test_no_json_web_token_survives(
    alg: str, subject: str, signature: bytes, before: str, after: str, sep1: str, sep2: str
) -> None:
    """Was: a bare `eyJ….eyJ….sig` (no `Bearer` before it) was shown whole."""
    header = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": subject}).encode())
    token = f"{header}.{payload}.{_b64url(signature)}"
    line = _embedded(before, sep1, token, sep2, after)
    assert payload not in line and header not in line, line
    if len(signature) >= 3:
        assert _b64url(signature) not in line, line


@given(
    prefix=name_prefixes,
    key=credential_words,
    sep=st.sampled_from(["%3D", "%3d", "%3A", "%3a", "%253D", "%22%3A%22"]),
    value=secret_text,
    lead=st.sampled_from(["", "/hook?x=1&", "%26", "body: "]),
    before=filler,
    after=filler,
)
def test_percent_encoded_credentials_are_masked(
    prefix: str, key: str, sep: str, value: str, lead: str, before: str, after: str
) -> None:
    """Was: `token%3Dabc…` and `password%3A…` (a pair percent-encoded) were shown whole."""
    assume(value not in before + after + prefix + key + lead)  # `credentials%3Dcredenti`: the name stays
    line = safe_error_line(f"{before} {lead}{prefix}{key}{sep}{value} {after}", limit=1000)
    assert value not in line, line


_KEY_BODY = string.ascii_letters + string.digits
prefixed_tokens = st.one_of(
    st.tuples(st.sampled_from(["ghp_", "gho_", "ghs_", "github_pat_"]), st.text(_KEY_BODY, min_size=36, max_size=40)),
    st.tuples(st.sampled_from(["xoxb-", "xoxp-", "xoxa-"]), st.text(_KEY_BODY + "-", min_size=10, max_size=50)),
    st.tuples(
        st.sampled_from(["sk_live_", "sk_test_", "rk_live_", "pk_live_"]), st.text(_KEY_BODY, min_size=10, max_size=40)
    ),
    st.tuples(
        st.sampled_from(["AKIA", "ASIA"]), st.text(string.ascii_uppercase + string.digits, min_size=16, max_size=16)
    ),
    st.tuples(st.sampled_from(["sk-", "glpat-"]), st.text(_KEY_BODY + "_-", min_size=20, max_size=48)),
).map("".join)
# Keys nothing names: 32+ characters of key alphabet with a digit in them, or 20+ with upper case,
# lower case and digits (a word joined to words with `-`/`_` is no key: see the readability tests).
opaque_tokens = st.one_of(
    st.text(_KEY_BODY + "_-", min_size=32, max_size=64).filter(lambda s: any(c.isdigit() for c in s)),
    st.text(_KEY_BODY, min_size=20, max_size=31).filter(
        lambda s: any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)
    ),
)


@given(
    token=st.one_of(prefixed_tokens, opaque_tokens),
    before=filler,
    after=filler,
    sep1=separators,
    sep2=separators,
)
def test_no_long_opaque_token_survives(token: str, before: str, after: str, sep1: str, sep2: str) -> None:
    """Was: a key nothing named (`ghp_…`, `xoxb-…`, `sk_live_…`, `AKIA…`, 32 random characters)
    was shown whole."""
    line = _embedded(before, sep1, token, sep2, after)
    assert token not in line, line
    assert MASK in line


def test_the_second_review_shapes_are_masked() -> None:
    """Was: each of these kept its secret in the `failing` line."""
    assert safe_error_line("POST hooks.example.com/services/T00/B00/SECRETPATH failed") == (
        "POST hooks.example.com/… failed"  # the host stays: the reader learns where the call went
    )
    assert safe_error_line("KEY client_token: s3cr3t99 refused") == "KEY client_token: *** refused"
    assert safe_error_line("connect ECONNREFUSED example.org:8443/api/key/abc") == (
        "connect ECONNREFUSED example.org:8443/…"
    )
    assert safe_error_line("ECONNRESET 10.0.0.7:8080/hook?token=x") == "ECONNRESET 10.0.0.7:8080/…"
    assert safe_error_line("Invalid token abc123def456ghi.") == "Invalid token ***."
    assert safe_error_line("KEY X-Api-token=s3cr3t99") == "KEY X-Api-token=***"
    assert safe_error_line("bad api key sk_live_4eC39HqLyjWDarjtT1zdp7dc") == "bad api key ***"
    assert safe_error_line('wrong password "Hunter2x" given') == 'wrong password "***" given'
    assert safe_error_line("KEY token 00000000 refused") == "KEY token *** refused"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    assert safe_error_line(f"rejected {jwt} (expired)") == "rejected *** (expired)"
    assert safe_error_line("GET /hook?token%3Dabc123xyz%26a%3D1") == "GET /hook?token%3D***"
    assert safe_error_line("body password%3Ahunter2hunter2 rejected") == "body password%3A*** rejected"
    keys = "ghp_16C7e42F292c6912E7710c838347Ae178B4a xoxb-2934-4567-abcdefghij AKIAIOSFODNN7EXAMPLE"
    assert safe_error_line(f"leaked {keys}") == "leaked *** *** ***"
    assert safe_error_line("id 123e4567-e89b-12d3-a456-426614174000 key") == "id *** key"
    assert safe_error_line("see (http://h.example/a)/SECRETPATH) or [http://h.example]/SECRET") == (
        "see (http://h.example/…) or [http://h.example]/…"
    )
    assert safe_error_line("(at h.example)/SECRETPATH") == "(at h.example)/…"
    assert safe_error_line("proxy user:pa ss@proxy.example:3128 refused") == "proxy ***@proxy.example:3128 refused"


@pytest.mark.parametrize(
    "text",
    [
        "getaddrinfo ENOTFOUND text2gif.guggy.com",
        "connect ECONNREFUSED deploy.example.org:443",
        "connect ETIMEDOUT 10.0.0.7:8443",
        "request to https://deploy.example.org/… failed, reason: socket hang up",
        "HTTP 500: deploy queue unavailable",
        "HTTP 404: no such hook",
        "HTTP 410 (Gone: Rocket.Chat disabled the webhook)",
        "socket hang up",
        "failed (an error status or an empty answer): busy",
        "failed at step failed-and-not-configured-to-retry",
        "Invalid token",
        "token expired",
        "api key missing",
        "wrong password for user owen",
        "self signed certificate in certificate chain",
        'HTTP 401: {"ok":false,"error":"invalid_auth"}',
        "Error: 401 Unauthorized at 12:00",
        "Client network socket disconnected before secure TLS connection was established",
        "hook 6e817e7d257b060c3692864c answered n149",
        "see https://status.example.com for details",
        "sent text/plain; expected application/json",
        "TypeError: Cannot read properties of undefined (reading 'map')",
    ],
)
def test_ordinary_errors_are_shown_unchanged(text: str) -> None:
    assert safe_error_line(text) == text


ordinary_words = st.sampled_from(
    [
        "getaddrinfo",
        "ENOTFOUND",
        "ECONNREFUSED",
        "ETIMEDOUT",
        "socket",
        "hang",
        "up",
        "HTTP",
        "500",
        "502",
        "404",
        "deploy",
        "queue",
        "unavailable",
        "failed",
        "request",
        "timeout",
        "reason",
        "connect",
        "token",
        "key",
        "password",
        "secret",
        "expired",
        "missing",
        "invalid",
        "Invalid",
        "not",
        "found",
        "Bad",
        "Gateway",
        "Service",
        "Unavailable",
        "error",
        "retry",
        "after",
        "the",
        "webhook",
        "hooks.example.com",
        "10.0.0.7:443",
        "deploy.example.org:8443",
        "(busy)",
        "[warn]",
        "failed-and-not-configured-to-retry",
        "after-process-http-status-500",
        "Rocket.Chat",
        "at",
        "12:00",
    ]
)


@given(words=st.lists(ordinary_words, min_size=1, max_size=12), seps=st.lists(st.sampled_from([" ", ", ", ": "])))
def test_ordinary_error_text_is_left_readable(words: list[str], seps: list[str]) -> None:
    """Hosts, ports, status codes, step names and words, credential words among them, pass
    unchanged as long as no value follows a credential word."""
    text = words[0]
    for index, word in enumerate(words[1:]):
        sep = seps[index] if index < len(seps) else " "
        previous = words[index].lower()
        if sep != " " and previous in ("token", "key", "password", "secret"):
            sep = " "  # `token: expired` is a pair: its value is masked (tested above)
        text += sep + word
    assert safe_error_line(text, limit=1000) == text


def test_a_secret_cut_by_the_scan_bound_is_left_out() -> None:
    """A long body is read up to a bound (the work per line stays bounded); a value the bound cuts
    in two no longer looks like a secret, so the cut drops it rather than show its head."""
    secret = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"  # masked whole; its head alone would not be
    for kept in range(1, len(secret)):  # the bound (4000 characters) cuts after `kept` of them
        text = f"http://h.example/{'p' * (3979 - kept)} zz {secret} tail"
        assert text.index(secret) == 4000 - kept
        line = safe_error_line(text, limit=140)
        assert "ghp_" not in line, line
        assert line.startswith("http://h.example/… zz"), line


def test_long_hostile_text_is_masked_and_cut() -> None:
    for text in ("ab-" * 20000, "a:" * 20000, "eyJa." * 10000, ("a" * 60 + ".") * 800, "token " * 8000):
        line = safe_error_line(text)
        assert len(line) <= 140
