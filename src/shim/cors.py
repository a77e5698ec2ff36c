"""CORS for the browser-facing routes of the shim.

The shim holds no business state, so it does not know an organisation's allowed origins:
the *core* decides. A publishable (widget) key used from an Origin that is not on its
organisation's allow-list is refused there with PERMISSION_DENIED / origin_not_allowed,
and the dialect renders its 403. What the shim does here is the HTTP part of CORS:

- Preflights (`OPTIONS`) cannot carry the key, so they are answered generically for every
  route registered with `allow()`: the requesting Origin is reflected, the route's methods
  and the headers clients send (`Authorization`, `Content-Type`, `Idempotency-Key`,
  `Last-Event-ID`) are allowed, and the answer may be cached for `PREFLIGHT_MAX_AGE_S`.
- Actual responses of those routes (successes *and* errors, so a page can read the error
  body) reflect the Origin in `Access-Control-Allow-Origin` and expose the route's
  headers (e.g. `X-Session-Id, X-Agent-Id`). `Vary: Origin` keeps caches honest.

Credentials (cookies) are never allowed: the keys travel in `Authorization`, so reflecting
the Origin grants a page nothing it did not already hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import hdrs, web

PREFLIGHT_MAX_AGE_S = 600
ALLOWED_REQUEST_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID")


@dataclass(frozen=True, slots=True)
class CorsRoute:
    methods: tuple[str, ...]
    expose: tuple[str, ...] = ()


CORS_ROUTES = web.AppKey("cors_routes", dict[str, CorsRoute])


def _route_key(request: web.Request) -> str | None:
    """The canonical path of the route that matched (`/chat/{slug}`, not `/chat/x`)."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else None


async def preflight(request: web.Request) -> web.StreamResponse:
    """Answer a CORS preflight for a registered route (the signal adds the headers)."""
    return web.Response(status=204)


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    routes = request.app.get(CORS_ROUTES)
    key = _route_key(request)
    if not routes or key is None or key not in routes:
        return
    cors = routes[key]
    origin = request.headers.get(hdrs.ORIGIN)
    vary = response.headers.get(hdrs.VARY)
    if not vary or "origin" not in vary.lower():
        response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"
    if not origin:
        return
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
    if request.method == hdrs.METH_OPTIONS:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ", ".join(
            (*cors.methods, hdrs.METH_OPTIONS)
        )
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(ALLOWED_REQUEST_HEADERS)
        response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(PREFLIGHT_MAX_AGE_S)
    elif cors.expose:
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(cors.expose)


def allow(
    app: web.Application, path: str, *, methods: Iterable[str] = (hdrs.METH_POST,),
    expose: Iterable[str] = (),
) -> None:
    """Make `path` (a route registered on `app`, or about to be) callable from browsers:
    adds its preflight route and the CORS headers on its responses."""
    if CORS_ROUTES not in app:
        app[CORS_ROUTES] = {}
        app.on_response_prepare.append(_on_prepare)
    app[CORS_ROUTES][path] = CorsRoute(tuple(methods), tuple(expose))
    app.router.add_route(hdrs.METH_OPTIONS, path, preflight)
