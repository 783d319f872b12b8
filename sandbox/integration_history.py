"""Outgoing-webhook call history (`rocketchat_integration_history`) and `GET integrations.history`.

Theory of operation
-------------------
Rocket.Chat writes one history document per call of an outgoing webhook's URL and updates it as
the call goes (`updateHistory` in the trigger handler): `start-execute-trigger-url` inserts it
with a copy of the integration document and the event, then `mapped-args-to-data` adds `data`
(the request payload, *including the outgoing token*) and `triggerWord`, `pre-http-call` adds
`url` and `httpCallData`, `after-http-call` adds `httpResult`/`httpError`, and a failing status
moves `step` on with `error: true`. The sandbox does not make HTTP calls: `record_outgoing_call`
writes the document as it stands when such a call has finished, with what a test says happened.

How the 8.x handler (fetch) leaves a document, which `record_outgoing_call` reproduces:

* a response: `httpResult` is `JSON.stringify(body_text, null, 2)` — the response *body*,
  JSON-quoted, never the status (the pre-7 `HTTP.call` handler stored the whole result object,
  `{"statusCode": ..., "content": ...}`; `insert_history` can store such old shapes as given);
  `httpError` is left out (`null` is not stored);
* a 2xx status with a body: step `after-http-call`, no error;
* status 410 with a body: step `after-process-http-status-410`, `error: true`, and the handler
  disables the integration (`enabled: false`); status 500 with a body: step
  `after-process-http-status-500`, `error: true`;
* any other failing status, or an empty body: `failed-and-not-configured-to-retry`, or with
  `retryFailedCalls` the last retry's `too-many-retries`, both with `error: true`;
* no response (refused, DNS, timeout): step `after-http-call`, `httpResult: "null"` and
  `httpError` the fetch error's enumerable fields (`message` names the URL, `type`, `errno`, `code`).

`_updatedAt` is the model's own stamp of the last write; the route sorts on it, newest first.

The route (`apps/meteor/app/api/server/v1/integrations.ts`, 8.x): legacy `addRoute` with
`validateParams` (`id` a non-empty string; `offset`/`count` numbers; `sort`/`query` strings; no
other key) and route permissions (any of the two outgoing ones, 403 otherwise); a blank `id` is
`API.v1.failure('Invalid integration id.')`; callers with only `manage-own-outgoing-integrations`
see entries whose `integration._createdBy._id` is theirs; an unknown id is an empty page.
The `query` parameter is accepted and ignored, as the sandbox's `integrations.list` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from sandbox.docsort import SortSpec, sort_documents
from sandbox.errors import MeteorError
from sandbox.integrations import ALL_OUTGOING, OUTGOING
from sandbox.store import Store, User

HISTORY_TYPE: Final = "outgoing-webhook"
DEFAULT_SORT: Final[SortSpec] = (("_updatedAt", -1),)
SUCCESS_STATUSES: Final = (200, 201, 202)  # the trigger handler's `successResults`


@dataclass(frozen=True)
class HistoryPage:
    history: list[dict[str, Any]]
    total: int


def history_for(
    store: Store, caller: User, integration_id: str, *, offset: int, count: int | None, sort: SortSpec = ()
) -> HistoryPage:
    """`integrations.history` after validation and the route permission."""
    with store.lock:
        entries = store.find_integration_history(integration_id)
        if not store.has_permission(caller._id, ALL_OUTGOING):
            # `mountIntegrationHistoryQueryBasedOnPermissions`: own-only callers see their own.
            entries = [e for e in entries if _creator(e) == caller._id]
    ordered = sort_documents(entries, sort or DEFAULT_SORT)
    page = ordered[offset:]
    if count is not None:
        page = page[:count]
    return HistoryPage(page, len(ordered))


def _creator(entry: Mapping[str, Any]) -> Any:
    integration = entry.get("integration")
    created_by = integration.get("_createdBy") if isinstance(integration, dict) else None
    return created_by.get("_id") if isinstance(created_by, dict) else None


# --- writing entries (the control API's side) ------------------------------------------------------


@dataclass(frozen=True)
class CallOutcome:
    """What happened to one call: a response (`status`, `body`) or none (`error_code`)."""

    status: int | None = None
    body: str = ""
    error_code: str | None = None  # e.g. ECONNREFUSED, ENOTFOUND, ETIMEDOUT


def _fetch_error(url: str, code: str) -> dict[str, Any]:
    """node-fetch's `FetchError` as MongoDB stores it (its own enumerable fields); the reason is
    Node's system error text (the address is the host here: the sandbox resolves nothing)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host, port = "", 80
    reasons = {
        "ECONNREFUSED": f"connect ECONNREFUSED {host}:{port}",
        "ENOTFOUND": f"getaddrinfo ENOTFOUND {host}",
        "ETIMEDOUT": f"connect ETIMEDOUT {host}:{port}",
        "ECONNRESET": "socket hang up",
    }
    return {
        "message": f"request to {url} failed, reason: {reasons.get(code, code)}",
        "type": "system",
        "errno": code,
        "code": code,
    }


def _final_step(integration: Mapping[str, Any], outcome: CallOutcome) -> tuple[str, bool]:
    """(step, error) after the response was processed (no response script; see module doc)."""
    status = outcome.status
    if outcome.body and status in SUCCESS_STATUSES:
        return "after-http-call", False
    if outcome.body and status == 410:
        return "after-process-http-status-410", True
    if outcome.body and status == 500:
        return "after-process-http-status-500", True
    if integration.get("retryFailedCalls") is True:
        return "too-many-retries", True
    return "failed-and-not-configured-to-retry", True


def call_data(
    integration: Mapping[str, Any], *, message: Mapping[str, Any], room: Mapping[str, Any], site_url: str
) -> dict[str, Any]:
    """`data` of a `sendMessage` call (`mapEventArgsToData`), with the token and trigger word."""
    data: dict[str, Any] = {"token": integration.get("token"), "bot": False}
    text = str(message.get("msg") or "")
    words = integration.get("triggerWords") or []
    anywhere = integration.get("triggerWordAnywhere") is True
    word = next((w for w in words if (w in text if anywhere else text.startswith(w))), None)
    if word:
        data["trigger_word"] = word
    author = message.get("u")
    user: Mapping[str, Any] = author if isinstance(author, dict) else {}
    data.update(
        {
            "channel_id": room.get("_id"),
            "channel_name": room.get("name"),
            "message_id": message.get("_id"),
            "timestamp": message.get("ts"),
            "user_id": user.get("_id"),
            "user_name": user.get("username"),
            "text": text,
            "siteUrl": site_url,
        }
    )
    return data


def outgoing_call_entry(
    integration: Mapping[str, Any],
    outcome: CallOutcome,
    *,
    at: datetime,
    url: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The history document of one finished call of `integration` (an outgoing webhook)."""
    if integration.get("type") != OUTGOING:
        raise ValueError("only outgoing webhooks have a call history")
    urls = integration.get("urls") or []
    target = url if url is not None else (str(urls[0]) if urls else "")
    payload = dict(data) if data is not None else {"token": integration.get("token"), "bot": False}
    entry: dict[str, Any] = {
        "type": HISTORY_TYPE,
        "integration": dict(integration),
        "event": integration.get("event"),
        "_createdAt": at,
        "_updatedAt": at,
        "data": payload,
        "ranPrepareScript": True,
        "url": target,
        "httpCallData": payload,
    }
    if isinstance(payload.get("trigger_word"), str):
        entry["triggerWord"] = payload["trigger_word"]
    if outcome.status is None:
        entry["step"] = "after-http-call"
        entry["httpError"] = _fetch_error(target, outcome.error_code or "ECONNREFUSED")
        entry["httpResult"] = json.dumps(None)
        return entry
    entry["httpResult"] = json.dumps(outcome.body, indent=2)
    step, error = _final_step(integration, outcome)
    entry["step"] = step
    if error:
        entry["error"] = True
    return entry


def record_outgoing_call(
    store: Store,
    integration_id: str,
    outcome: CallOutcome,
    *,
    at: datetime | None = None,
    url: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Store the history of one finished call (and disable the webhook on a 410, as Rocket.Chat does)."""
    with store.lock:
        integration = store.get_integration(integration_id)
        if integration is None:
            raise MeteorError("error-invalid-integration", "Invalid integration")
        entry = outgoing_call_entry(integration, outcome, at=at or store.clock(), url=url, data=data)
        stored = store.insert_integration_history(entry)
        if entry["step"] == "after-process-http-status-410":
            store.update_integration(integration_id, {"enabled": False})
        return stored
