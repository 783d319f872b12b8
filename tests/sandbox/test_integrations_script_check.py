"""The sandbox's stand-in for script compilation: compiling scripts yield `scriptCompiled`,
obviously broken ones a Babel-like `scriptError`."""

from __future__ import annotations

import pytest

from sandbox.scripts import compile_script

COMPILING = [
    "class Script { process_incoming_request({ request }) { return { content: { text: request.content.text } }; } }",
    "const s = '}'; const t = \"{(\"; const u = `]`;",
    "// a comment with an unbalanced { brace\nconst a = [1, 2];",
    "/* ( [ { */ const b = (1);",
    "const e = 'it\\'s';",
    "",
]
BROKEN = [
    ("class Script {", "Unexpected token"),
    ("function f() { return (1; }", "Unexpected token"),
    ("const a = ];", "Unexpected token"),
    ("const s = 'open\nconst t = 1;", "Unterminated string constant"),
    ("const t = `never closed", "Unterminated string constant"),
    ("/* never closed", "Unterminated comment"),
]


@pytest.mark.parametrize("script", COMPILING)
def test_compiling_scripts(script: str) -> None:
    compiled = compile_script(script)
    assert compiled.error is None
    assert compiled.code == script.strip()


@pytest.mark.parametrize(("script", "what"), BROKEN)
def test_broken_scripts_give_a_syntax_error(script: str, what: str) -> None:
    compiled = compile_script(script)
    assert compiled.code is None
    assert compiled.error is not None
    assert compiled.error["name"] == "SyntaxError"
    assert compiled.error["message"].startswith(what)
    assert compiled.error["stack"].startswith(f"SyntaxError: {compiled.error['message']}")


def test_the_error_points_at_the_offending_line() -> None:
    compiled = compile_script("const a = 1;\nconst b = (2;\n")
    assert compiled.error is not None
    assert compiled.error["message"] == "Unexpected token (3:0)"
    assert compile_script("a;\nb);").error == {
        "name": "SyntaxError",
        "message": "Unexpected token (2:1)",
        "stack": "SyntaxError: Unexpected token (2:1)\n    at <sandbox>",
    }
