"""`show` cuts every webhook URL and avatar to `scheme://host[:port]/…` with the same masker as
`failing` (`call_failures.mask_url`): no credentials, path, query or fragment, a bracketed IPv6
host kept bracketed, and `***` for an address it cannot read (a port that is no number may be the
start of a password cut short)."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from set_harness import Harness

from bot.rocketchat.models import Integration
from commands.show import describe
from tests.commands.test_show_describe import NOW, outgoing_document

# (stored URL, what `show` prints for it). Each differs from what `show` printed before it used
# `failing`'s masker: an IPv6 host unbracketed (`http://::1:8080/…`), a fragment dropped as if the
# URL ended at the host, the user name of a password with `#` in it shown (`https://deploy:…`),
# and a crash ("Something went wrong") on a `[` in the user info.
SHOWN = [
    ("http://[::1]:8080/hook/SECRETPATH", "http://[::1]:8080/…"),
    ("https://[2001:db8::7]/services/T0/B0/XXXX", "https://[2001:db8::7]/…"),
    ("https://hooks.example.org#token=FRAGSECRET", "https://hooks.example.org/…"),
    ("https://deploy:s3cr#t@hooks.example.org/x", "***"),
    ("https://deploy:pa[ss@hooks.example.org/x", "***"),
    ("https://u:p@hooks.example.org:abc/x", "***"),
    ("https://relayuser:pa ss@hooks.example.org:8443/h?token=QSECRET", "https://hooks.example.org:8443/…"),
    ("https://hooks.example.org/", "https://hooks.example.org"),
]


@pytest.mark.parametrize(("url", "shown"), SHOWN)
def test_show_prints_each_address_as_failing_does(url: str, shown: str) -> None:
    lines = describe(Integration.of(outgoing_document(urls=[url], avatar=url)), NOW).splitlines()
    assert f"urls: `{shown}`" in lines
    assert f"avatar: `{shown}`" in lines


def test_every_address_of_a_webhook_is_cut_on_its_own() -> None:
    urls = [url for url, _ in SHOWN]
    text = describe(Integration.of(outgoing_document(urls=urls)), NOW)
    assert "urls: " + ", ".join(f"`{shown}`" for _, shown in SHOWN) in text.splitlines()
    for secret in ("SECRETPATH", "XXXX", "FRAGSECRET", "s3cr", "deploy", "pa[ss", "pa ss", "QSECRET", "relayuser"):
        assert secret not in text, text


async def test_show_answers_with_the_addresses_cut(h: Harness) -> None:
    """Through the command: `show` used to answer "Something went wrong" for everyone who looked
    at a webhook whose stored URL has a `[` in its user info (the API stores any text)."""
    made = h.control.create_outgoing_integration(
        "Bracketed relay",
        channel="#general",
        urls=["https://relay:pa[ss@hooks.example.org/x", "http://[::1]:8080/hook/SECRETPATH"],
        avatar="https://cdn.example.org/a.png#sig=AVATARSIG",
    )
    reply = await h.say("admin", "ops", f"!integration show {made['_id']}")
    lines = reply.text.splitlines()
    assert "urls: `***`, `http://[::1]:8080/…`" in lines, reply.text
    assert "avatar: `https://cdn.example.org/…`" in lines, reply.text
    for secret in ("pa[ss", "relay:", "SECRETPATH", "AVATARSIG"):
        assert secret not in reply.text


# Characters allowed as they are in a URL's user info (RFC 3986: unreserved, sub-delims, `%`),
# and some that are not but get typed anyway (a space, brackets).
_USERINFO = string.ascii_letters + string.digits + "-._~!$&'()*+,;=%[] "
# Anything that may follow the host: the query and fragment may hold `/?@:#` too.
_TAIL = _USERINFO + ":/?@#"
_HOSTS = ["hooks.example.org", "hooks.example.org:8443", "10.0.0.7:9000", "[::1]:8080", "[2001:db8::7]"]


@st.composite
def secret_urls(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    """(a URL, the `scheme://host[:port]` it shows as, its secrets)."""
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(st.sampled_from(_HOSTS))
    user = draw(st.text(alphabet=_USERINFO, min_size=8, max_size=20))
    password = draw(st.text(alphabet=_USERINFO + ":", min_size=8, max_size=20))
    form = draw(st.sampled_from(["none", "user", "both", "empty password"]))
    userinfo = {"none": "", "user": f"{user}@", "both": f"{user}:{password}@", "empty password": f"{user}:@"}[form]
    token = draw(st.text(alphabet=_TAIL, min_size=8, max_size=30))
    places = [f"/hooks/{token}", f"?token={token}", f"/h?api_key={token}", f"#access_token={token}"]
    where = draw(st.sampled_from(places))
    secrets = [token, *([user] if form != "none" else []), *([password] if form == "both" else [])]
    return f"{scheme}://{userinfo}{host}{where}", f"{scheme}://{host}", secrets


def _plain(value: str) -> str:
    return value.lower()


@settings(max_examples=300, deadline=None)
@given(secret_urls())
@example(("http://[::1]:8080/hooks/SECRETPATHx", "http://[::1]:8080", ["SECRETPATHx"]))
@example(("https://abcdefgh:pa[ssword@hooks.example.org/hooks/TOKENVALUE", "https://hooks.example.org", ["TOKENVALUE"]))
def test_show_never_shows_a_secret_of_a_url(case: tuple[str, str, list[str]]) -> None:
    """Random user names, passwords and tokens in the path, the query or the fragment: `show`
    prints the scheme, host and port and none of them (`***` when a bracket in the user info makes
    the address unreadable)."""
    url, origin, secrets = case
    # A secret that is part of what `show` prints anyway (the host, a field name) is no leak.
    baseline = describe(Integration.of(outgoing_document(urls=[origin + "/x"], avatar=origin + "/x")), NOW)
    for secret in secrets:
        assume(secret.strip() and _plain(secret) not in _plain(baseline))
    text = describe(Integration.of(outgoing_document(urls=[url], avatar=url)), NOW)
    for secret in secrets:
        assert _plain(secret) not in _plain(text), (url, text)
    userinfo = re.split(r"[/?#]", url.split("//", 1)[1], maxsplit=1)[0].rpartition("@")[0]
    shown = {f"{origin}/…"} | ({"***"} if "[" in userinfo or "]" in userinfo else set())
    lines = text.splitlines()
    assert {f"urls: `{s}`" for s in shown} & set(lines), (url, text)
    assert {f"avatar: `{s}`" for s in shown} & set(lines), (url, text)
