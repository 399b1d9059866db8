"""Admin UI pages and the /admin/api/* JSON API (mitmweb's RequestHandler, jupyter's APIHandler):
one AdminHandler base owns the session check, XSRF, security headers and JSON errors; the handlers
below parse, call one function of aigateway/admin.py and write."""

from __future__ import annotations

import math
from typing import Any

import orjson
import tornado.web
from tornado.escape import url_escape

from aigateway import web
from aigateway.admin import login, routing, service
from aigateway.admin.errors import AdminError
from aigateway.admin.sessions import COOKIE, MAX_AGE_DAYS, check_session, make_session, session_id
from aigateway.web import BaseHandler

# No inline script or style anywhere: every page loads its own file from /static/.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# Everything the admin UI serves (pages, API answers, static files) carries these besides the common ones.
ADMIN_HEADERS = (("Content-Security-Policy", CSP), ("Cross-Origin-Opener-Policy", "same-origin"),
                 ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"))
COOKIE_PATH = "/admin"
PAGES = ("clients", "teams", "providers", "routes", "settings", "usage")
_ERROR_TYPES = {400: "invalid_request", 401: "authentication", 403: "permission", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 429: "rate_limited"}


def current_admin(handler: tornado.web.RequestHandler) -> str | None:
    """The logged-in admin's name from the signed session cookie, or None. Any handler can call it
    (the dashboard's WebSocket does, in ``prepare``, before the upgrade)."""
    gw = web.gateway_of(handler)
    return check_session(gw.config, handler.get_cookie(COOKIE), gw.revoked_sessions)


class AdminHandler(BaseHandler):
    """Base of every admin page and API handler. ``prepare`` refuses a request without a valid
    session (API: 401 JSON; page: redirect to the login page), then checks Tornado's XSRF token
    (``_xsrf`` cookie echoed in an ``X-XSRFToken`` header) on every state-changing method."""

    login_required = True
    page = False  # pages redirect to the login page; API routes answer 401 JSON
    admin_name: str | None = None
    header_policy: tuple[tuple[str, str], ...] = ADMIN_HEADERS

    def check_request(self) -> None:
        """Session first (so an anonymous call learns it must log in), then the XSRF token."""
        self.admin_name = current_admin(self)
        if self.login_required and self.admin_name is None:
            if self.page:
                self.redirect(f"{COOKIE_PATH}?next={url_escape(self.request.uri)}")
                return
            raise AdminError(401, "Not logged in: log in at /admin first (no valid admin session).")
        if self.request.method not in ("GET", "HEAD", "OPTIONS"):
            if self.request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site"):
                raise AdminError(403, "Refused: a state-changing admin call from another site.")
            self.check_xsrf_cookie()

    # -- helpers
    @property
    def remote_ip(self) -> str:
        """The client's address as the socket sees it (the login throttle counts per address)."""
        return self.request.remote_ip or ""

    def json_body(self) -> dict:
        """The request body as a JSON object ({} when empty)."""
        if not self.request.body:
            return {}
        try:
            data = orjson.loads(self.request.body)
        except orjson.JSONDecodeError:
            raise AdminError(400, "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise AdminError(400, "The request body must be a JSON object.")
        return data

    def query_args(self) -> dict[str, str]:
        """The query string as a plain dict (last value of each name)."""
        return {name: self.get_query_argument(name) for name in self.request.query_arguments}

    def write_json(self, data: Any, status: int = 200) -> None:
        """Finish with JSON. Provider keys are scrubbed from every admin answer, whatever it holds."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(service.scrub(orjson.dumps(data).decode(), self.gateway.config))

    def start_session(self) -> None:
        """Set the signed session cookie for the configured admin (and current password)."""
        self.set_cookie(COOKIE, make_session(self.gateway.config).decode(), path=COOKIE_PATH, httponly=True,
                        samesite="Strict", secure=self.request.protocol == "https", expires_days=MAX_AGE_DAYS)

    def send_page(self, name: str) -> None:
        """An admin page: templates/{name}.html inside templates/_page.html (head, header, navigation);
        its script fetches the data. Also sets the ``_xsrf`` cookie."""
        self.xsrf_token  # noqa: B018 -- reading it sets the cookie the page's api.js sends back
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.render_string(f"{name}.html", page=name))

    # -- errors
    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every admin error as ``{"error": {"message", "type", "status", "fields"?}}``."""
        exc = kwargs.get("exc_info", (None, None))[1]
        err = exc if isinstance(exc, AdminError) else AdminError(*web.tornado_error(self, status_code, exc))
        self.clear_header("Content-Type")
        if err.retry_after is not None:
            self.set_header("Retry-After", str(math.ceil(err.retry_after)))
        body: dict[str, Any] = {"message": err.message, "type": _ERROR_TYPES.get(err.status, "server_error"),
                                "status": err.status}
        if err.fields:
            body["fields"] = err.fields
        self.write_json({"error": body}, err.status)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, AdminError):  # an expected refusal is an answer, not a crash
            super().log_exception(typ, value, tb)


class StaticHandler(tornado.web.StaticFileHandler):
    """/static/: Tornado's file handler (ETag, caching) with the admin UI's security headers."""

    def set_default_headers(self) -> None:
        """The admin UI's headers, but cacheable: Tornado's ETag and Last-Modified do their job."""
        web.security_headers(self, ADMIN_HEADERS, no_store=False)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        """A path the OS cannot even look up (a NUL byte, a name too long) is simply not found."""
        try:
            return super().validate_absolute_path(root, absolute_path)
        except (ValueError, OSError):
            raise tornado.web.HTTPError(404) from None


# -- pages


class LoginPageHandler(AdminHandler):
    login_required = False

    def get(self) -> None:
        """The login page; a logged-in admin goes straight to the clients page."""
        if self.admin_name:
            self.redirect(f"{COOKIE_PATH}/clients")
        else:
            self.send_page("login")


class PageHandler(AdminHandler):
    page = True

    def get(self, name: str) -> None:
        """One admin page (the route's pattern names the allowed pages)."""
        self.send_page(name)


# -- session


class LoginHandler(AdminHandler):
    login_required = False

    async def post(self) -> None:
        """``{"username", "password"}`` → session cookie. Throttled per IP and per user name."""
        username = await login.log_in(self.gateway, self.json_body(), self.remote_ip)
        self.start_session()
        self.write_json({"username": username})


class LogoutHandler(AdminHandler):
    async def post(self) -> None:
        """End this session, on the server too: its cookie is refused from now on, wherever it is."""
        sid = session_id(self.gateway.config, self.get_cookie(COOKIE))
        if sid:
            await self.gateway.revoke_session(sid)
        self.clear_cookie(COOKIE, path=COOKIE_PATH)
        self.write_json({"logged_out": True})


class PasswordHandler(AdminHandler):
    async def post(self) -> None:
        """``{"current_password", "new_password"}``: every other session ends; this one continues."""
        await service.change_password(self.gateway, self.json_body(), self.remote_ip)
        self.start_session()
        self.write_json({"changed": True})


class MetaHandler(AdminHandler):
    def get(self) -> None:
        """Who is logged in, and the choices the forms offer (key types, limits, provider types)."""
        self.write_json(service.meta(self.gateway, self.admin_name or ""))


# -- clients


class ClientsHandler(AdminHandler):
    async def get(self) -> None:
        """Every client with today's usage."""
        self.write_json({"clients": await service.list_clients(self.gateway)})

    async def post(self) -> None:
        """Create a client; the answer's ``api_key`` is shown this once."""
        self.write_json(await service.create_client(self.gateway, self.json_body()), 201)


class ClientHandler(AdminHandler):
    async def get(self, client_id: str) -> None:
        """One client."""
        self.write_json(await service.get_client(self.gateway, int(client_id)))

    async def patch(self, client_id: str) -> None:
        """Change some of a client's settings (limits: null = the configured default)."""
        self.write_json(await service.update_client(self.gateway, int(client_id), self.json_body()))

    async def delete(self, client_id: str) -> None:
        """Delete a client: its key is refused at once."""
        self.write_json(await service.delete_client(self.gateway, int(client_id)))


class RotateKeyHandler(AdminHandler):
    async def post(self, client_id: str) -> None:
        """A new key (``{"key_type"}`` optional); the old one stops working at once."""
        self.write_json(await service.rotate_key(self.gateway, int(client_id), self.json_body()))


class ResetUsageHandler(AdminHandler):
    async def post(self, client_id: str) -> None:
        """Start the client's limits and quotas afresh from now."""
        self.write_json(await service.reset_usage(self.gateway, int(client_id)))


# -- teams


class TeamsHandler(AdminHandler):
    async def get(self) -> None:
        """Every team with its limits and how many clients it has."""
        self.write_json({"teams": await service.list_teams(self.gateway)})

    async def post(self) -> None:
        """Create a team: ``{"name", <limit>: value...}``."""
        self.write_json(await service.save_team(self.gateway, None, self.json_body()), 201)


class TeamHandler(AdminHandler):
    async def patch(self, team_id: str) -> None:
        """Change a team (a limit set to null no longer applies)."""
        self.write_json(await service.save_team(self.gateway, int(team_id), self.json_body()))

    async def delete(self, team_id: str) -> None:
        """Delete a team; its clients stay, in no team."""
        self.write_json(await service.delete_team(self.gateway, int(team_id)))


# -- providers


class ProvidersHandler(AdminHandler):
    def get(self) -> None:
        """Every provider, keys never included (only ``api_key_set``)."""
        self.write_json({"providers": service.list_providers(self.gateway)})

    async def post(self) -> None:
        """Add a provider; saved to config.yaml and live at once."""
        self.write_json(await service.save_provider(self.gateway, None, self.json_body()), 201)


class ProviderHandler(AdminHandler):
    def get(self, name: str) -> None:
        """One provider."""
        if name not in self.gateway.config.providers:
            raise AdminError(404, f"no provider named {name!r}")
        self.write_json(service.provider_out(self.gateway, name))

    async def patch(self, name: str) -> None:
        """Change a provider (``api_key``: omit to keep, null to remove)."""
        self.write_json(await service.save_provider(self.gateway, name, self.json_body()))

    async def delete(self, name: str) -> None:
        """Delete a provider that no client uses (409 otherwise)."""
        self.write_json(await service.delete_provider(self.gateway, name))


class ProviderTestHandler(AdminHandler):
    async def post(self, name: str) -> None:
        """List the upstream's models with this provider (the body may override unsaved fields)."""
        self.write_json(await service.test_provider(self.gateway, name, self.json_body()))


# -- routes


class RoutesHandler(AdminHandler):
    def get(self) -> None:
        """Every model route, in config order."""
        self.write_json({"routes": routing.list_routes(self.gateway)})

    async def post(self) -> None:
        """Create a route: ``{"name", "targets": [{"provider", "model"}], "fallback_on"?, "retries"?}``."""
        self.write_json(await routing.save_route(self.gateway, None, self.json_body()), 201)


class RouteHandler(AdminHandler):
    def get(self, name: str) -> None:
        """One route."""
        if name not in self.gateway.config.routes:
            raise AdminError(404, f"no route named {name!r}")
        self.write_json(routing.route_out(self.gateway, name))

    async def patch(self, name: str) -> None:
        """Change a route (a field set to null goes back to its default)."""
        self.write_json(await routing.save_route(self.gateway, name, self.json_body()))

    async def delete(self, name: str) -> None:
        """Delete a route that no client may use (409 otherwise)."""
        self.write_json(await routing.delete_route(self.gateway, name))


# -- settings and usage


class SettingsHandler(AdminHandler):
    def get(self) -> None:
        """Client defaults, time zone, logging level and server facts."""
        self.write_json(service.settings_out(self.gateway))

    async def patch(self) -> None:
        """Change settings by dotted name; saved to config.yaml and applied at once."""
        self.write_json(await service.save_settings(self.gateway, self.json_body()))


class UsageHandler(AdminHandler):
    async def get(self) -> None:
        """Daily usage per day, client and model between ``from`` and ``to``."""
        self.write_json(await service.usage_report(self.gateway, self.query_args()))


class UsageCsvHandler(AdminHandler):
    async def get(self) -> None:
        """The same range as a CSV download, one row per day, client and model."""
        name, text = await service.usage_csv(self.gateway, self.query_args())
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.finish(text)


class RequestLogHandler(AdminHandler):
    async def get(self) -> None:
        """A page of the request log, newest first (keyset paging with ``before``)."""
        self.write_json(await service.request_log(self.gateway, self.query_args()))


routes = [
    (r"/admin/?", LoginPageHandler),
    (rf"/admin/({'|'.join(PAGES)})", PageHandler),
    (r"/admin/api/login", LoginHandler),
    (r"/admin/api/logout", LogoutHandler),
    (r"/admin/api/password", PasswordHandler),
    (r"/admin/api/meta", MetaHandler),
    (r"/admin/api/clients", ClientsHandler),
    (r"/admin/api/clients/(\d+)", ClientHandler),
    (r"/admin/api/clients/(\d+)/rotate-key", RotateKeyHandler),
    (r"/admin/api/clients/(\d+)/reset-usage", ResetUsageHandler),
    (r"/admin/api/teams", TeamsHandler),
    (r"/admin/api/teams/(\d+)", TeamHandler),
    (r"/admin/api/providers", ProvidersHandler),
    (r"/admin/api/providers/([^/]+)", ProviderHandler),
    (r"/admin/api/providers/([^/]+)/test", ProviderTestHandler),
    (r"/admin/api/routes", RoutesHandler),
    (r"/admin/api/routes/([^/]+)", RouteHandler),
    (r"/admin/api/settings", SettingsHandler),
    (r"/admin/api/usage", UsageHandler),
    (r"/admin/api/usage\.csv", UsageCsvHandler),
    (r"/admin/api/requests", RequestLogHandler),
]
