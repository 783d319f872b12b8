"""Request validation with Rocket.Chat's own JSON Schemas, answering exactly as ajv does.

Theory of operation
-------------------
Rocket.Chat validates request parameters with ajv (`allErrors: false`) and joins the messages of
`validator.errors` with `"\\n "` (contract §1.4). Clients see those texts, and the contract lists
them verbatim (§2.4.1), so the sandbox must reproduce ajv's *error selection*, not just a
yes/no answer. jsonschema's own traversal reports every error in schema-key order; ajv instead:

* evaluates keywords in a fixed order: the type check first, then the type-independent keywords
  (`const, enum, not, anyOf, oneOf, allOf`), then the number, string, array and object keywords
  (for objects: `required`, then `additionalProperties`, then `properties` in schema order);
* stops at the first failing keyword of a schema (and at the first failing property or item);
* for `oneOf`/`anyOf` keeps the first error of every failing branch, then adds its own error
  ("must match exactly one schema in oneOf") — which is why an incoming update body complains
  about `username`, a property only the *outgoing* branch requires;
* with `coerceTypes` rewrites scalars in place (`"false"` -> `false`, `"5"` -> `5`, `null` -> `""`
  for a non-nullable string) before the remaining keywords look at them, even inside a branch
  that fails later; the 8.x query validator (`coerceTypes: "array"`) also unwraps one-element
  arrays (a repeated query parameter).

So this module builds a jsonschema validator class (`jsonschema.validators.create`) whose
keyword callables implement ajv's semantics and messages, and walks each schema object in ajv's
order itself. Every schema is checked against the Draft 2020-12 meta-schema and against the list
of keywords implemented here when it is loaded, so a schema using an unimplemented keyword fails
loudly instead of being half-validated.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping, MutableSequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

from jsonschema import Draft202012Validator, TypeChecker, ValidationError, validators
from jsonschema.protocols import Validator

Coercion = Literal["none", "scalar", "array"]
"""`none`: plain `new Ajv()` (6.x/7.x); `scalar`: `coerceTypes: true` (8.x body validator);
`array`: `coerceTypes: "array"` (8.x query validator)."""

# --- keyword groups in ajv's evaluation order ------------------------------------------------------

_ANY_GROUP: Final = ("const", "enum", "not", "anyOf", "oneOf", "allOf")
_TYPED_GROUPS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("number", ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum", "multipleOf")),
    ("string", ("maxLength", "minLength", "pattern")),
    ("array", ("maxItems", "minItems", "uniqueItems", "items")),
    ("object", ("maxProperties", "minProperties", "required", "additionalProperties", "properties")),
)
_GROUP_KEYWORDS: Final = dict(_TYPED_GROUPS)
_ANNOTATIONS: Final = frozenset({"type", "nullable", "description", "title", "$schema", "$id", "examples"})
_IMPLEMENTED: Final = frozenset(_ANY_GROUP) | {k for _t, ks in _TYPED_GROUPS for k in ks} | _ANNOTATIONS
_COERCIBLE: Final = ("string", "number", "integer", "boolean", "null")


def _is_number(value: object) -> bool:
    # ajv's strictNumbers: a JS number that is finite; JSON booleans are not numbers.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: object) -> bool:
    return _is_number(value) and float(value).is_integer()  # type: ignore[arg-type]


_TYPE_TESTS: Final[dict[str, Callable[[object], bool]]] = {
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": _is_integer,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _type_checker() -> TypeChecker:
    checker = TypeChecker()
    for name, test in _TYPE_TESTS.items():
        checker = checker.redefine(name, lambda _checker, value, test=test: test(value))
    return checker


AJV_TYPES: Final = _type_checker()


# --- per-call state (the keyword protocol of jsonschema only passes validator/value/instance/schema)

_COERCION: ContextVar[Coercion] = ContextVar("ajv_coercion", default="none")
# Inside oneOf/anyOf branches ajv collects errors instead of returning at the first one.
_COMPOSITE: ContextVar[bool] = ContextVar("ajv_composite", default=False)


class _Missing:
    pass


_MISSING: Final = _Missing()

# --- JavaScript conversions used by coercion ----------------------------------------------------------

_JS_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_JS_RADIX = re.compile(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+")


def _js_number(text: str) -> float | None:
    """JavaScript `+text` (Number(text)); None for NaN."""
    stripped = text.strip(" \t\n\r\v\f\u00a0\ufeff\u2028\u2029")
    if stripped == "":
        return 0.0
    if _JS_DECIMAL.fullmatch(stripped):
        return float(stripped)
    if _JS_RADIX.fullmatch(stripped):
        return float(int(stripped, 0))
    if stripped in ("Infinity", "+Infinity"):
        return math.inf
    if stripped == "-Infinity":
        return -math.inf
    return None


def _js_string(value: object) -> str:
    """JavaScript `"" + value` for a number or boolean."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _as_json_number(value: float) -> int | float:
    # JS has one number type; keep integral results as ints so they render as `5`, not `5.0`.
    return int(value) if math.isfinite(value) and value.is_integer() else value


def _coerce(value: object, types: list[str], mode: Coercion) -> object:
    """ajv's `coerceData`: the coerced value, or _MISSING when no rule applies."""
    if mode == "array" and isinstance(value, list) and len(value) == 1:
        if any(_TYPE_TESTS[t](value[0]) for t in types):
            return value[0]
        value = value[0]
    targets = [t for t in types if t in _COERCIBLE or (mode == "array" and t == "array")]
    for target in targets:
        if target == "string":
            if _is_number(value) or isinstance(value, bool):
                return _js_string(value)
            if value is None:
                return ""
        elif target in ("number", "integer"):
            if isinstance(value, bool):
                return int(value)
            if value is None:
                return 0
            if isinstance(value, str) and value:
                number = _js_number(value)
                if number is not None and (target == "number" or (math.isfinite(number) and number.is_integer())):
                    return _as_json_number(number)
        elif target == "boolean":
            if value == "false" or value is None or (_is_number(value) and value == 0):
                return False
            if value == "true" or (_is_number(value) and value == 1):
                return True
        elif target == "null":
            if value == "" or value is False or (_is_number(value) and value == 0):
                return None
        elif target == "array" and (isinstance(value, str | bool) or _is_number(value) or value is None):
            return [value]
    return _MISSING


# --- the walk over one schema object --------------------------------------------------------------


def _schema_types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or [])
    if schema.get("nullable") is True and "null" not in types:
        types.append("null")
    return types


def _type_error(schema: Mapping[str, Any], instance: object) -> ValidationError:
    declared = schema["type"]
    shown = declared if isinstance(declared, str) else ",".join(declared)
    return ValidationError(f"must be {shown}", validator="type", validator_value=declared, instance=instance)


def schema_errors(
    validator: Validator, schema: Mapping[str, Any], holder: MutableMapping[Any, Any] | MutableSequence[Any], key: Any
) -> list[ValidationError]:
    """ajv's code for one schema object applied to `holder[key]` (replaced in place when coerced)."""
    composite = _COMPOSITE.get()
    mode = _COERCION.get()
    errors: list[ValidationError] = []
    instance = holder[key]
    types = _schema_types(schema)
    coerce_to = [t for t in types if t in _COERCIBLE or (mode == "array" and t == "array")] if mode != "none" else []
    # ajv defers the check of a single type to that type's keyword group when there is one
    # (`integer`, `boolean` and `null` have no group of their own).
    has_rules_for_only_type = (
        len(types) == 1 and types[0] in _GROUP_KEYWORDS and any(k in schema for k in _GROUP_KEYWORDS[types[0]])
    )
    check_up_front = bool(types) and not (not coerce_to and has_rules_for_only_type)
    if check_up_front and not any(_TYPE_TESTS[t](instance) for t in types):
        coerced = _coerce(instance, types, mode) if coerce_to else _MISSING
        if isinstance(coerced, _Missing):
            errors.append(_type_error(schema, instance))
            if not composite:
                return errors
        else:
            holder[key] = instance = coerced
    # The type-independent group runs even after a failed up-front type check (no gate before it).
    errors.extend(_run_keywords(validator, schema, instance, _ANY_GROUP))
    if errors:
        return errors
    for group_type, keywords in _TYPED_GROUPS:
        if not any(k in schema for k in keywords):
            continue
        if _TYPE_TESTS[group_type](instance):
            errors.extend(_run_keywords(validator, schema, instance, keywords))
        elif not check_up_front and types == [group_type]:
            errors.append(_type_error(schema, instance))  # the deferred single-type check
        if errors:
            return errors
    return errors


def _run_keywords(
    validator: Validator, schema: Mapping[str, Any], instance: object, keywords: tuple[str, ...]
) -> list[ValidationError]:
    for keyword in keywords:
        if keyword not in schema:
            continue
        check = validator.VALIDATORS[keyword]
        found = list(check(validator, schema[keyword], instance, schema) or ())
        if found:
            return found  # the first failing keyword ends the group
    return []


# --- keyword implementations (jsonschema's keyword protocol, ajv's semantics and messages) --------


def _json_equal(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _const(_v: Validator, const: object, instance: object, _s: Mapping[str, Any]) -> Iterator[ValidationError]:
    if not _json_equal(const, instance):
        yield ValidationError("must be equal to constant")


def _enum(_v: Validator, enum: list[object], instance: object, _s: Mapping[str, Any]) -> Iterator[ValidationError]:
    if not any(_json_equal(option, instance) for option in enum):
        yield ValidationError("must be equal to one of the allowed values")


def _branch_errors(
    validator: Validator, branches: list[Mapping[str, Any]], instance: object, *, stop_at_pass: bool
) -> list[list[ValidationError]]:
    """Each branch's errors; branches see (and coerce) the same data object, as in ajv's code."""
    token = _COMPOSITE.set(True)
    try:
        results: list[list[ValidationError]] = []
        holder = [instance]
        for branch in branches:
            results.append(schema_errors(validator, branch, holder, 0))
            if stop_at_pass and not results[-1]:
                break
        return results
    finally:
        _COMPOSITE.reset(token)


def _one_of(
    validator: Validator, branches: list[Mapping[str, Any]], instance: object, _s: Mapping[str, Any]
) -> Iterator[ValidationError]:
    results = _branch_errors(validator, branches, instance, stop_at_pass=False)
    collected = [error for errors in results for error in errors]
    passing = sum(1 for errors in results if not errors)
    if passing != 1:
        # Exactly one passing branch resets the branch errors; otherwise they are reported first.
        yield from collected
        yield ValidationError("must match exactly one schema in oneOf")


def _any_of(
    validator: Validator, branches: list[Mapping[str, Any]], instance: object, _s: Mapping[str, Any]
) -> Iterator[ValidationError]:
    results = _branch_errors(validator, branches, instance, stop_at_pass=True)  # ajv stops at a passing branch
    if all(results):
        yield from (error for errors in results for error in errors)
        yield ValidationError("must match a schema in anyOf")


def _not(
    validator: Validator, sub: Mapping[str, Any], instance: object, _s: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not _branch_errors(validator, [sub], instance, stop_at_pass=False)[0]:
        yield ValidationError("must NOT be valid")


def _all_of(
    validator: Validator, branches: list[Mapping[str, Any]], instance: object, _s: Mapping[str, Any]
) -> Iterator[ValidationError]:
    holder = [instance]
    for branch in branches:
        errors = schema_errors(validator, branch, holder, 0)
        if errors:
            yield from errors
            return


def _limit(message: str, compare: Callable[[float, float], bool], size: Callable[[Any], float]) -> Any:
    def check(_v: Validator, bound: float, instance: Any, _s: Mapping[str, Any]) -> Iterator[ValidationError]:
        if not compare(size(instance), bound):
            yield ValidationError(message.format(bound=_js_string(bound)))

    return check


def _pattern(_v: Validator, pattern: str, instance: str, _s: Mapping[str, Any]) -> Iterator[ValidationError]:
    # ajv: `new RegExp(pattern, "u").test(data)`: unanchored (contract §2.4.1).
    if re.search(pattern, instance) is None:
        yield ValidationError(f'must match pattern "{pattern}"')


def _multiple_of(_v: Validator, divisor: float, instance: float, _s: Mapping[str, Any]) -> Iterator[ValidationError]:
    quotient = instance / divisor
    if not float(quotient).is_integer():
        yield ValidationError(f"must be multiple of {_js_string(divisor)}")


def _unique_items(_v: Validator, unique: bool, instance: list[Any], _s: Mapping[str, Any]) -> Iterator[ValidationError]:
    if not unique:
        return
    seen: dict[str, int] = {}
    for i in range(len(instance) - 1, -1, -1):  # ajv walks from the end
        canonical = json.dumps(instance[i], sort_keys=True)
        if canonical in seen:
            yield ValidationError(f"must NOT have duplicate items (items ## {seen[canonical]} and {i} are identical)")
            return
        seen[canonical] = i


def _items(
    validator: Validator, items: Mapping[str, Any], instance: list[Any], _s: Mapping[str, Any]
) -> Iterator[ValidationError]:
    for index in range(len(instance)):
        errors = schema_errors(validator, items, instance, index)
        if errors:
            yield from errors
            return


def _required(
    _v: Validator, required: list[str], instance: dict[str, Any], _s: Mapping[str, Any]
) -> Iterator[ValidationError]:
    for name in required:
        if name not in instance:
            yield ValidationError(f"must have required property '{name}'")
            return


def _additional_properties(
    _v: Validator, allowed: bool, instance: dict[str, Any], schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if allowed is False and any(name not in schema.get("properties", {}) for name in instance):
        yield ValidationError("must NOT have additional properties")


def _properties(
    validator: Validator, properties: Mapping[str, Mapping[str, Any]], instance: dict[str, Any], _s: Mapping[str, Any]
) -> Iterator[ValidationError]:
    for name, subschema in properties.items():
        if name in instance:
            errors = schema_errors(validator, subschema, instance, name)
            if errors:
                yield from errors
                return


_KEYWORDS: Final[dict[str, Any]] = {
    "const": _const,
    "enum": _enum,
    "not": _not,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "allOf": _all_of,
    "maximum": _limit("must be <= {bound}", lambda a, b: a <= b, float),
    "minimum": _limit("must be >= {bound}", lambda a, b: a >= b, float),
    "exclusiveMaximum": _limit("must be < {bound}", lambda a, b: a < b, float),
    "exclusiveMinimum": _limit("must be > {bound}", lambda a, b: a > b, float),
    "multipleOf": _multiple_of,
    "maxLength": _limit("must NOT have more than {bound} characters", lambda a, b: a <= b, len),
    "minLength": _limit("must NOT have fewer than {bound} characters", lambda a, b: a >= b, len),
    "pattern": _pattern,
    "maxItems": _limit("must NOT have more than {bound} items", lambda a, b: a <= b, len),
    "minItems": _limit("must NOT have fewer than {bound} items", lambda a, b: a >= b, len),
    "uniqueItems": _unique_items,
    "items": _items,
    "maxProperties": _limit("must NOT have more than {bound} properties", lambda a, b: a <= b, len),
    "minProperties": _limit("must NOT have fewer than {bound} properties", lambda a, b: a >= b, len),
    "required": _required,
    "additionalProperties": _additional_properties,
    "properties": _properties,
}

AjvValidator = validators.create(
    meta_schema=Draft202012Validator.META_SCHEMA,
    validators=_KEYWORDS,
    type_checker=AJV_TYPES,
)


# --- public API ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Result of validating one request: the (possibly coerced) data and ajv's messages."""

    data: Any
    messages: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.messages

    @property
    def text(self) -> str:
        """The messages joined the way Rocket.Chat joins them (contract §1.4)."""
        return "\n ".join(self.messages)


class SchemaError(Exception):
    """A schema uses a keyword this module does not implement (a programming error)."""


def _check_keywords(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        return
    unknown = set(schema) - _IMPLEMENTED
    if unknown:
        raise SchemaError(f"{where}: unsupported keywords {sorted(unknown)}")
    if not isinstance(schema.get("additionalProperties", False), bool):
        raise SchemaError(f"{where}: only boolean additionalProperties is implemented")
    for name, sub in schema.get("properties", {}).items():
        _check_keywords(sub, f"{where}.properties.{name}")
    for keyword in ("oneOf", "anyOf", "allOf"):
        for index, sub in enumerate(schema.get(keyword, [])):
            _check_keywords(sub, f"{where}.{keyword}[{index}]")
    for keyword in ("items", "not"):
        _check_keywords(schema.get(keyword), f"{where}.{keyword}")


class RequestValidator:
    """An ajv-compiled schema: call it with a request's parameters."""

    def __init__(self, schema: Mapping[str, Any], *, coercion: Coercion, name: str = "schema") -> None:
        AjvValidator.check_schema(schema)
        _check_keywords(schema, name)
        self.schema = schema
        self.coercion = coercion
        self._validator = AjvValidator(schema)

    def __call__(self, instance: object) -> Outcome:
        holder = [copy.deepcopy(instance)]
        coercion_token = _COERCION.set(self.coercion)
        composite_token = _COMPOSITE.set(False)
        try:
            errors = schema_errors(self._validator, self.schema, holder, 0)
        finally:
            _COMPOSITE.reset(composite_token)
            _COERCION.reset(coercion_token)
        return Outcome(holder[0], tuple(e.message for e in errors))


# --- the schemas -------------------------------------------------------------------------------------

# Rocket.Chat's request schemas that the shared schema directory does not carry, transcribed from
# @rocket.chat/rest-typings (8.x) and the route files named next to each.
INLINE_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    # rest-typings v1/integrations/IntegrationsRemoveProps
    "integrations.remove": {
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "nullable": False, "pattern": "webhook-incoming"},
                    "integrationId": {"type": "string", "nullable": False},
                },
                "required": ["type", "integrationId"],
            },
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "nullable": False, "pattern": "webhook-outgoing"},
                    "target_url": {"type": "string", "nullable": False},
                },
                "required": ["type", "target_url"],
            },
            {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "nullable": False, "pattern": "webhook-outgoing"},
                    "integrationId": {"type": "string", "nullable": False},
                },
                "required": ["type", "integrationId"],
            },
        ]
    },
    # rest-typings v1/integrations/IntegrationsHistoryProps
    "integrations.history": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "nullable": False, "minLength": 1},
            "offset": {"type": "number", "nullable": True},
            "count": {"type": "number", "nullable": True},
            "sort": {"type": "string", "nullable": True},
            "query": {"type": "string", "nullable": True},
        },
        "required": ["id"],
        "additionalProperties": False,
    },
    # rest-typings v1/chat (ChatSyncMessagesSchema, newest form with the cursor parameters)
    "chat.syncMessages": {
        "type": "object",
        "properties": {
            "roomId": {"type": "string"},
            "lastUpdate": {"type": "string", "nullable": True},
            "count": {"type": "number", "nullable": True},
            "next": {"type": "string", "nullable": True},
            "previous": {"type": "string", "nullable": True},
            "type": {"type": "string", "enum": ["UPDATED", "DELETED"], "nullable": True},
        },
        "required": ["roomId"],
        "additionalProperties": False,
    },
    "chat.getMessage": {
        "type": "object",
        "properties": {"msgId": {"type": "string"}},
        "required": ["msgId"],
        "additionalProperties": False,
    },
    "chat.update": {
        "type": "object",
        "properties": {
            "roomId": {"type": "string"},
            "msgId": {"type": "string"},
            "text": {"type": "string"},
            "previewUrls": {"type": "array", "items": {"type": "string"}, "nullable": True},
            "customFields": {"type": "object", "nullable": True},
        },
        "required": ["roomId", "msgId", "text"],
        "additionalProperties": False,
    },
    # apps/meteor/app/api/server/v1/im.ts (isDmCreateProps, newer comma-separated `usernames`)
    "im.create": {
        "oneOf": [
            {
                "type": "object",
                "properties": {"username": {"type": "string"}, "excludeSelf": {"type": "boolean"}},
                "required": ["username"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"usernames": {"type": "string"}, "excludeSelf": {"type": "boolean"}},
                "required": ["usernames"],
                "additionalProperties": False,
            },
        ]
    },
    # apps/meteor/app/api/server/v1/permissions.ts
    "permissions.listAll": {
        "type": "object",
        "properties": {"updatedSince": {"type": "string", "nullable": True}},
        "required": [],
        "additionalProperties": False,
    },
    "permissions.update": {
        "type": "object",
        "properties": {
            "permissions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "_id": {"type": "string"},
                        "roles": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                    },
                    "additionalProperties": False,
                    "required": ["_id", "roles"],
                },
            }
        },
        "required": ["permissions"],
        "additionalProperties": False,
    },
}

SHARED_SCHEMAS: Final = (
    "chat.postMessage",
    "chat.sendMessage",
    "integrations.create",
    "integrations.get",
    "integrations.list",
    "integrations.update",
    "login",
    "users.info",
)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A request schema by endpoint name: the shared copy in sandbox/schemas/ or an inline one."""
    if name in INLINE_SCHEMAS:
        return INLINE_SCHEMAS[name]
    if name not in SHARED_SCHEMAS:
        raise KeyError(name)
    text = resources.files("sandbox").joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def validator_for(name: str, coercion: Coercion) -> RequestValidator:
    return RequestValidator(load_schema(name), coercion=coercion, name=name)


def validate(name: str, instance: object, coercion: Coercion) -> Outcome:
    """Validate `instance` against the named endpoint schema with the given ajv coercion."""
    return validator_for(name, coercion)(instance)
