"""Rocket.Chat's own message parser (npm @rocket.chat/message-parser), asked from the tests.

The clients render a message from the tree this parser makes of its text (the `md` field), so
"echoed user text never renders as a link or formatting" is checked against it, not against a
re-implementation. One node process (tests/markdown_js/parse-lines.mjs, installed by `make jsdeps`)
answers one JSON line per text; every optional syntax is on (KaTeX, colors, emoticons).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

JS_DIR: Final = Path(__file__).resolve().parent / "markdown_js"

# What plain text becomes: paragraphs of plain text, line breaks, and emoji (`:smile:`, `:)`).
PLAIN_NODES: Final = frozenset({"PARAGRAPH", "PLAIN_TEXT", "LINE_BREAK", "EMOJI", "BIG_EMOJI"})


class MessageParser:
    def __init__(self) -> None:
        node = shutil.which("node")
        assert node is not None, "node is required to run Rocket.Chat's message parser"
        assert (JS_DIR / "node_modules" / "@rocket.chat" / "message-parser").is_dir(), "run `make jsdeps` first"
        self._process = subprocess.Popen(
            [node, str(JS_DIR / "parse-lines.mjs")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._lock = threading.Lock()

    def parse(self, text: str) -> list[dict[str, Any]]:
        """The parser's tree of `text` (a list of blocks); it refuses an empty text."""
        if not text:
            return []
        with self._lock:
            assert self._process.stdin is not None and self._process.stdout is not None
            self._process.stdin.write(json.dumps(text) + "\n")
            self._process.stdin.flush()
            answer = json.loads(self._process.stdout.readline())
        assert "error" not in answer, answer
        tree: list[dict[str, Any]] = answer["ast"]
        return tree

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(10)


def node_types(tree: Any) -> Iterator[str]:
    """Every node type in a parsed tree, depth first."""
    if isinstance(tree, list):
        for item in tree:
            yield from node_types(item)
    elif isinstance(tree, dict):
        if isinstance(tree.get("type"), str):
            yield tree["type"]
        for key, value in tree.items():
            if key != "type":
                yield from node_types(value)


def formatting(tree: Any) -> set[str]:
    """The node types in `tree` that are more than plain text: links, emphasis, code, quotes..."""
    return set(node_types(tree)) - PLAIN_NODES
