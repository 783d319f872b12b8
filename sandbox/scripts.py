"""A stand-in for Rocket.Chat's integration script compiler (Babel + isolated-vm).

The sandbox never runs integration scripts. What clients observe is only whether a script
"compiled": the stored document then carries `scriptCompiled`, otherwise `scriptError`
(`{name, message, stack}`), never both (contract §2.1). So a script counts as compiling unless
it is obviously broken: unbalanced brackets, or an unterminated string, template or comment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class CompiledScript:
    """`scriptCompiled` or `scriptError`, never both (contract §2.1)."""

    code: str | None
    error: dict[str, str] | None


_CLOSERS: Final = {")": "(", "]": "[", "}": "{"}


def compile_script(script: str) -> CompiledScript:
    """`scriptCompiled` (the script itself) or a Babel-like `SyntaxError` with line:column."""
    stack: list[tuple[str, int, int]] = []
    line, col = 1, 0
    i = 0
    quote: str | None = None
    comment: str | None = None
    while i < len(script):
        char, nxt = script[i], script[i + 1 : i + 2]
        col += 1
        if char == "\n":
            line, col = line + 1, 0
            if comment == "//":
                comment = None
            if quote in ("'", '"'):
                return _syntax_error("Unterminated string constant", line - 1, col)
        elif comment == "/*":
            if char == "*" and nxt == "/":
                comment, i, col = None, i + 1, col + 1
        elif comment is None and quote is not None:
            if char == "\\":
                i, col = i + 1, col + 1
            elif char == quote:
                quote = None
        elif comment is None:
            if char == "/" and nxt in ("/", "*"):
                comment, i, col = "/" + nxt, i + 1, col + 1
            elif char in ("'", '"', "`"):
                quote = char
            elif char in "([{":
                stack.append((char, line, col))
            elif char in _CLOSERS:
                if not stack or stack[-1][0] != _CLOSERS[char]:
                    return _syntax_error("Unexpected token", line, col - 1)
                stack.pop()
        i += 1
    if quote is not None:
        return _syntax_error("Unterminated string constant", line, col)
    if comment == "/*":
        return _syntax_error("Unterminated comment", line, col)
    if stack:
        return _syntax_error("Unexpected token", line, col)
    return CompiledScript(code=script.strip(), error=None)


def _syntax_error(what: str, line: int, col: int) -> CompiledScript:
    message = f"{what} ({line}:{col})"
    stack = f"SyntaxError: {message}\n    at <sandbox>"
    return CompiledScript(code=None, error={"name": "SyntaxError", "message": message, "stack": stack})
