"""REST endpoints for logging in and for users, roles and permissions (contract §1.1, §1.2, §3.3).

Login follows `ApiClass._initAuth`: the body goes through Rocket.Chat's "login compatibility"
translation into a Meteor `login` call, so the accepted shapes are exactly those of §1.2
(`user` string or object, `username`, `email`, optional `code`, or `{resume}`); every failure
is the same ambiguous 401 "Unauthorized" because Rocket.Chat rewrites login errors to
"User not found".
"""

from __future__ import annotations

from typing import Any, Final

from starlette.responses import Response

from sandbox.errors import MeteorError, PlainError
from sandbox.jsvalues import parse_js_date
from sandbox.restlib import ApiFailure, Call, Endpoint, json_response
from sandbox.store import Store, User

_LOGIN_KEYS: Final = frozenset({"user", "username", "email", "password", "code"})
_PAT_METHOD: Final = {"method": "personalAccessTokens:generateToken"}
# `users.info` for someone else without `view-full-other-user-info` (contract §3.3).
_PUBLIC_USER_FIELDS: Final = ("_id", "type", "status", "active", "name", "username", "utcOffset")


def _login_unauthorized() -> Response:
    return json_response(401, {"success": False, "error": "Unauthorized", "status": "error", "message": "Unauthorized"})


def _user_by_login_selector(store: Store, selector: Any) -> User | None:
    """Meteor's `Accounts._findUserByQuery` for `{username}`, `{email}` or `{id}`."""
    if not isinstance(selector, dict) or len(selector) != 1:
        return None
    (kind, value), *_ = selector.items()
    if not isinstance(value, str) or not value:
        return None
    if kind == "id":
        return store.users.get(value)
    if kind == "email":
        return store.find_user_by_email(value)
    if kind == "username":
        user = store.find_user(value)
        if user is not None and user.username == value:
            return user
        # Meteor falls back to a case-insensitive match when it is unambiguous.
        matches = [u for u in store.users.values() if u.username.lower() == value.lower()]
        return matches[0] if len(matches) == 1 else None
    return None


def _password_matches(store: Store, user: User, password: Any) -> bool:
    if isinstance(password, str):
        return store.check_password(user, plaintext=password)
    if isinstance(password, dict) and password.get("algorithm") == "sha-256":
        digest = password.get("digest")
        return isinstance(digest, str) and store.check_password(user, digest=digest)
    return False


def _login_args(body: dict[str, Any]) -> dict[str, Any]:
    """`loginCompatibility`: what Rocket.Chat passes to the Meteor `login` method."""
    password = body.get("password")
    if password is None or set(body) - _LOGIN_KEYS:
        return body
    user, username, email = body.get("user"), body.get("username"), body.get("email")
    if isinstance(user, str):
        selector: dict[str, Any] = {"email": user} if "@" in user else {"username": user}
    elif username:
        selector = {"username": username}
    elif email:
        selector = {"email": email}
    else:
        return body
    # A 2FA `code` wraps this in `{totp: {code, login}}`; sandbox users have no 2FA, so the
    # inner login decides.
    return {"user": selector, "password": password}


def me_document(store: Store, user: User) -> dict[str, Any]:
    """`getUserInfo(user)`: the `me` object of login and `GET /api/v1/me`."""
    verified = next((e for e in user.emails if e.get("verified")), None)
    site_url = str(store.get_setting("Site_Url", "")).rstrip("/")
    doc: dict[str, Any] = {
        "_id": user._id,
        "type": user.type,
        "status": user.status,
        "active": user.active,
        "name": user.name,
        "username": user.username,
        "emails": [dict(e) for e in user.emails],
        "roles": list(user.roles),
        "utcOffset": 0,
        "statusConnection": user.status,
        "_updatedAt": user.updated_at or user.created_at,
        "settings": {"preferences": {}},
        "avatarUrl": f"{site_url}/avatar/{user.username}",
    }
    if verified is not None:
        doc["email"] = verified.get("address")
    return doc


async def login(call: Call) -> Any:
    store = call.store
    body = call.body if isinstance(call.body, dict) else {}
    args = _login_args(body)
    with store.lock:
        if set(args) == {"resume"} and isinstance(args["resume"], str):
            user = store.user_by_resume_token(args["resume"])
            if user is None:
                return _login_unauthorized()
            token = args["resume"]  # a resume login answers with the token it was given
        elif set(args) == {"user", "password"}:
            user = _user_by_login_selector(store, args["user"])
            if user is None or not _password_matches(store, user, args["password"]):
                return _login_unauthorized()
            token = store.create_login_token(user._id)
        else:
            return _login_unauthorized()  # no login handler accepts these options
        return {"status": "success", "data": {"userId": user._id, "authToken": token, "me": me_document(store, user)}}


async def logout(call: Call) -> Any:
    call.store.revoke_login_token(call.me._id, call.token or "")
    return {"status": "success", "data": {"message": "You've been logged out!"}}


async def me(call: Call) -> Any:
    return me_document(call.store, call.me)


def _users_info_target(store: Store, params: dict[str, Any]) -> User | None:
    for key in ("userId", "username", "importId", "email", "freeSwitchExtension"):
        if key not in params:
            continue
        value = params[key]
        if not value:
            raise PlainError("Invalid search query.")
        if key == "userId":
            return store.users.get(value)
        if key == "username":
            return _user_by_login_selector(store, {"username": value})
        if key == "email":
            return store.find_user_by_email(value)
        return None  # import ids and FreeSwitch extensions are not modelled
    raise PlainError("Invalid search query.")


async def users_info(call: Call) -> Any:
    store, caller, params = call.store, call.me, call.query
    with store.lock:
        target = _users_info_target(store, params)
        if target is None:
            raise PlainError("User not found.")
        myself = target._id == caller._id
        full = myself or store.has_permission(caller._id, "view-full-other-user-info")
        doc = {key: value for key, value in me_document(store, target).items() if key in _PUBLIC_USER_FIELDS}
        if full:
            doc.update(
                emails=[dict(e) for e in target.emails],
                roles=list(target.roles),
                createdAt=target.created_at,
                _updatedAt=target.updated_at or target.created_at,
                requirePasswordChange=False,
            )
        doc["canViewAllInfo"] = full
        if params.get("includeUserRooms") == "true" and (
            myself or store.has_permission(caller._id, "view-other-user-channels")
        ):
            subs = sorted(store.user_subscriptions(target._id), key=lambda s: (s["t"], s.get("name", "")))
            doc["rooms"] = [
                {"rid": s["rid"], "name": s.get("name"), "t": s["t"], "unread": s.get("unread", 0)}
                | ({"roles": s["roles"]} if s.get("roles") else {})
                for s in subs
            ]
        return {"user": doc}


async def generate_personal_access_token(call: Call) -> Any:
    store, caller = call.store, call.me
    body = call.body if isinstance(call.body, dict) else {}
    name = body.get("tokenName")
    if not name:
        raise PlainError("The 'tokenName' param is required")
    with store.lock:
        if not store.has_permission(caller._id, "create-personal-access-tokens"):
            raise MeteorError("not-authorized", "Not Authorized", _PAT_METHOD)
        if any(entry.get("name") == name for entry in store.users[caller._id].login_tokens.values()):
            raise MeteorError("error-token-already-exists", "A token with this name already exists", _PAT_METHOD)
        token = store.create_login_token(caller._id, kind="personalAccessToken", name=str(name))
    return {"token": token}


async def permissions_list_all(call: Call) -> Any:
    store = call.store
    raw = call.query.get("updatedSince")
    since = None
    if raw:
        since = parse_js_date(raw)
        if since is None:
            raise MeteorError("error-roomId-param-invalid", 'The "updatedSince" query parameter must be a valid date.')
    with store.lock:
        docs = [dict(doc) for doc in store.permissions.values()]
    if since is not None:
        docs = [doc for doc in docs if doc["_updatedAt"] > since]
    # The sandbox never deletes permissions, so `remove` stays empty.
    return {"update": docs, "remove": []}


async def permissions_update(call: Call) -> Any:
    store = call.store
    changes = call.body["permissions"]
    with store.lock:
        if any(change["_id"] not in store.permissions for change in changes):
            raise ApiFailure("Invalid permission", "error-invalid-permission")
        if any(role not in store.roles for change in changes for role in change["roles"]):
            raise ApiFailure("Invalid role", "error-invalid-role")
        for change in changes:
            store.set_permission_roles(change["_id"], change["roles"])  # emits permissions-changed
        return {"permissions": [dict(doc) for doc in store.permissions.values()]}


async def roles_list(call: Call) -> Any:
    with call.store.lock:
        return {"roles": [dict(role) for role in call.store.roles.values()]}


async def info(call: Call) -> Any:
    return {"version": call.config.version}


ENDPOINTS: Final = (
    Endpoint("info", "GET", info, auth_required=False, prefix="/api", rate_limited=False),
    Endpoint("login", "POST", login, auth_required=False),
    Endpoint("logout", "POST", logout, envelope=False),
    Endpoint("logout", "GET", logout, envelope=False),  # deprecated, still served
    Endpoint("me", "GET", me),
    Endpoint("users.info", "GET", users_info, schema="users.info"),
    Endpoint("users.generatePersonalAccessToken", "POST", generate_personal_access_token),
    Endpoint("permissions.listAll", "GET", permissions_list_all, schema="permissions.listAll", typed=True),
    Endpoint(
        "permissions.update",
        "POST",
        permissions_update,
        schema="permissions.update",
        typed=True,
        permissions_any=("access-permissions",),
    ),
    Endpoint("roles.list", "GET", roles_list),
)
