"""REST endpoints `integrations.*` (contract §2): request shapes and envelopes around the
semantics in `sandbox.integrations`.

Which wrapper options each route has decides the status codes a client sees: `list` and
`remove` declare route permissions (403 without any of the four manage permissions), `get` and
`update` do not (their permission errors are 400s from the handler), `create` is a typed route
(its validation errors carry no ` [invalid-params]` suffix). `history` declares the two outgoing
permissions (403 without either).
"""

from __future__ import annotations

from typing import Any, Final

from sandbox.errors import PlainError
from sandbox.integration_history import history_for
from sandbox.integrations import (
    ALL_OUTGOING,
    MANAGE_ANY,
    OWN_OUTGOING,
    ListQuery,
    create_integration,
    get_integration,
    list_integrations,
    remove_integration,
    update_integration,
)
from sandbox.restlib import Call, Endpoint, pagination, parse_sort


async def integrations_list(call: Call) -> Any:
    params = call.query
    page = pagination(call.store, params)
    name, kind = params.get("name"), params.get("type")
    query = ListQuery(
        offset=page.offset,
        count=page.count,
        name=name if isinstance(name, str) else None,
        type=kind if isinstance(kind, str) else None,
        sort=parse_sort(params),
    )
    found = list_integrations(call.store, call.me, query)
    items = len(found.integrations)
    return {
        "integrations": found.integrations,
        "offset": page.offset,
        "items": items,
        "count": items,
        "total": found.total,
    }


async def integrations_get(call: Call) -> Any:
    integration_id = call.query.get("integrationId")
    if not integration_id:
        raise PlainError('The query parameter "integrationId" is required.')
    created_by = call.query.get("createdBy")
    found = get_integration(
        call.store, call.me, str(integration_id), created_by if isinstance(created_by, str) else None
    )
    return {"integration": found}


async def integrations_create(call: Call) -> Any:
    return {"integration": create_integration(call.store, call.me, call.body)}


async def integrations_update(call: Call) -> Any:
    return {"integration": update_integration(call.store, call.config, call.me, call.body)}


async def integrations_remove(call: Call) -> Any:
    return {"integration": remove_integration(call.store, call.me, call.body)}


async def integrations_history(call: Call) -> Any:
    """`integrations.history` (sandbox.integration_history has the details)."""
    params = call.query
    integration_id = params.get("id")
    if not isinstance(integration_id, str) or integration_id.strip() == "":
        raise PlainError("Invalid integration id.")
    page = pagination(call.store, params)
    found = history_for(
        call.store, call.me, integration_id, offset=page.offset, count=page.count, sort=parse_sort(params)
    )
    items = len(found.history)
    return {"history": found.history, "offset": page.offset, "items": items, "count": items, "total": found.total}


ENDPOINTS: Final = (
    Endpoint("integrations.list", "GET", integrations_list, schema="integrations.list", permissions_any=MANAGE_ANY),
    Endpoint("integrations.get", "GET", integrations_get, schema="integrations.get"),
    Endpoint(
        "integrations.history",
        "GET",
        integrations_history,
        schema="integrations.history",
        permissions_any=(ALL_OUTGOING, OWN_OUTGOING),
        legacy_coercion="scalar",
    ),
    Endpoint("integrations.create", "POST", integrations_create, schema="integrations.create", typed=True),
    Endpoint("integrations.update", "PUT", integrations_update, schema="integrations.update"),
    Endpoint(
        "integrations.remove", "POST", integrations_remove, schema="integrations.remove", permissions_any=MANAGE_ANY
    ),
)
