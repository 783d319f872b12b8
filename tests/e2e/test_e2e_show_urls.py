"""`show` through the real bot on the sandbox: every stored webhook URL and the avatar are cut to
`scheme://host[:port]/…` by the masker `failing` uses, whatever the API let someone store (an IPv6
host, a password with `#` or `[` in it, a token in the query or the fragment)."""

from __future__ import annotations

import pytest
from e2e_support import SHARED_GROUP, Workspace, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group(SHARED_GROUP)]

PASSWORD = "e2e-Pw#x7Kq2"
URLS = [
    f"https://relay:{PASSWORD}@relay.example.net/hooks/SHOWPATH1",  # cut at `#`: the port is `Pw`
    "http://[::1]:8080/hooks/SHOWPATH2",
    "https://hooks.example.org/h?token=SHOWQUERY3#sig=SHOWFRAG4",
    "https://deploy:pa[ss@hooks.example.org/x",
]
SHOWN = "urls: `***`, `http://[::1]:8080/…`, `https://hooks.example.org/…`, `***`"


def test_show_cuts_every_url_and_shows_no_secret(workspace: Workspace) -> None:
    hook = workspace.control.create_outgoing_integration(
        unique_name("Shown relay"),
        channel="#general",
        urls=URLS,
        avatar="https://cdn.example.org/a.png?key=SHOWAVATAR5",
        created_by="admin",
    )
    answer = workspace.chat.command("admin", "general", f"!integration show {hook['_id']}")["msg"]
    lines = answer.splitlines()
    assert SHOWN in lines, answer
    assert "avatar: `https://cdn.example.org/…`" in lines, answer
    for secret in (PASSWORD, "Pw", "relay:", "deploy", "pa[ss", "SHOWPATH", "SHOWQUERY3", "SHOWFRAG4", "SHOWAVATAR5"):
        assert secret not in answer, answer
