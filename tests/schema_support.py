"""Rocket.Chat's own request schemas (copied into tests/schemas), as plain JSON Schema.

Shared by the unit tests of the bodies the bot builds (tests/bot) and the end-to-end checks of
every request the real bot process sends (tests/e2e).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parent / "schemas"


def ajv_to_json_schema(schema: Any) -> Any:
    """AJV's `nullable: true` ("null is accepted too") in plain JSON Schema: add "null" to `type`."""
    if isinstance(schema, list):
        return [ajv_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: ajv_to_json_schema(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("nullable") is True and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = types if "null" in types else [*types, "null"]
    return out
