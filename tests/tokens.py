"""Webhook tokens for property-based tests, drawn so that they never spell a word of the source.

Hypothesis draws `st.text` values from string literals it finds in the project's own modules
("channels", "Disconnected", "attachments", ...). A webhook token drawn that way equals an
ordinary word of every bot's log, and the suite's secret watch (tests/secret_watch.py) then
reports a leak that is none (4 of 31 full runs failed so). Tokens are built here from
characters picked by a seeded `Random` (hypothesis still controls and shrinks the seed), which
reproduces the real thing: a token is random or an admin's secret, never a word.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

TOKEN_ALPHABET = string.ascii_letters + string.digits


def webhook_tokens(*, min_size: int, max_size: int, alphabet: str = TOKEN_ALPHABET) -> st.SearchStrategy[str]:
    return st.builds(
        lambda rng, size: "".join(rng.choice(alphabet) for _ in range(size)),
        st.randoms(use_true_random=False),
        st.integers(min_size, max_size),
    )
