"""Route edits for the admin UI and API: list, create, change and delete the model routes of
config.yaml (``routes:``), validated by config.py like every other config edit, applied at once."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any

from aigateway.admin.errors import AdminError, bad_fields
from aigateway.admin.service import field_of, save_config
from aigateway.config import ROUTE_FIELDS

if TYPE_CHECKING:
    from aigateway.app import Gateway

log = logging.getLogger("aigateway.admin")
_FIELDS = tuple(f.name for f in ROUTE_FIELDS)


def route_out(gw: Gateway, name: str) -> dict:
    """A route as the admin API shows it, with how many clients may use it."""
    route = gw.config.routes[name]
    return {"name": name, "targets": [{"provider": t.provider, "model": t.model} for t in route.targets],
            "fallback_on": sorted(route.fallback_statuses), "retries": route.retries,
            "retry_max_seconds": route.retry_max_seconds,
            "clients": sum(1 for c in gw.keys.clients() if name in (c.get("allowed_routes") or ()))}


def list_routes(gw: Gateway) -> list[dict]:
    return [route_out(gw, name) for name in gw.config.routes]


async def save_route(gw: Gateway, name: str | None, body: dict) -> dict:
    """Create (``name`` None: it comes in the body) or change a route. A request in flight keeps
    the targets it started with; the next one uses the new ones."""
    creating = name is None
    errors = {k: "unknown field" for k in body.keys() - {"name", *_FIELDS}}
    if creating:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_fields({"name": "required: the model name clients will ask for"})
        name = name.strip()
        if name in gw.config.routes:
            raise bad_fields({"name": f"a route named {name!r} already exists"})
    elif name not in gw.config.routes:
        raise AdminError(404, f"no route named {name!r}")
    elif body.get("name", name) != name:
        raise bad_fields({"name": "a route cannot be renamed (clients refer to it by name)"})
    data = copy.deepcopy(gw.config.data)
    routes = data.setdefault("routes", {}) or {}
    data["routes"] = routes
    raw: dict[str, Any] = dict(routes.get(name) or {})
    raw.update({k: body[k] for k in _FIELDS if k in body and body[k] is not None})
    for k in _FIELDS:
        if k in body and body[k] is None:
            raw.pop(k, None)  # null: back to the default
    routes[name] = raw
    await save_config(gw, data, _form_field(name), errors)
    log.info("admin: %s route %r", "added" if creating else "updated", name)
    return route_out(gw, name)


def _form_field(name: str) -> Any:
    """``routes.NAME.targets.1.provider`` -> ``targets`` (the form's field; the message says which)."""
    inner = field_of("routes", name)
    return lambda key: inner(key).split(".", 1)[0] if key.startswith(f"routes.{name}.") else key


async def delete_route(gw: Gateway, name: str) -> dict:
    """Remove a route no client may use (its requests would suddenly go elsewhere)."""
    if name not in gw.config.routes:
        raise AdminError(404, f"no route named {name!r}")
    users = sorted(c["name"] for c in gw.keys.clients() if name in (c.get("allowed_routes") or ()))
    if users:
        raise AdminError(409, f"route {name!r} is allowed to {len(users)} client(s): {', '.join(users[:10])}."
                              " Take it off them first.")
    data = copy.deepcopy(gw.config.data)
    del data["routes"][name]
    await save_config(gw, data)
    log.info("admin: deleted route %r", name)
    return {"name": name, "deleted": True}
