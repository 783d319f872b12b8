"""Which history entries are failed calls, and the one-line error that is safe to post."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime

from hypothesis import assume, given
from hypothesis import strategies as st

from bot.integrations.call_failures import entry_secrets, entry_time, mask_url, safe_error_line, verdict
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
    assume(not any(word in before for word in words))
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
    assume(not any(word in before for word in words))
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
