"""FastAPI / Starlette integration: an APIRouter serving a
:class:`~mailparity.webhooks.WebhookHandler`.

::

    from mailparity.contrib.fastapi import webhook_router

    app.include_router(webhook_router(handler), prefix="/mail")

The handler talks to the host's stores synchronously, so it runs in Starlette's thread pool and
never blocks the event loop.

And the web connect flow (:mod:`mailparity.webconnect`) as a second router::

    from mailparity.contrib.fastapi import connect_router

    app.include_router(connect_router(web_connect, owner=current_user_id), prefix="/mail")
    # -> /mail/connect/{provider}, /mail/connect/callback, /mail/connect/{id}/disconnect ...
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

try:
    from fastapi import APIRouter
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
except ImportError as exc:
    from ..errors import missing_extra

    raise missing_extra("fastapi", "mailparity.contrib.fastapi") from exc

from ..health import HEALTH_PATH, READY_PATH, HealthCheck, check_for
from ..webhooks import (
    DEFAULT_PREFIX,
    WebhookHandler,
    WebhookRequest,
    WebhookResponse,
    notify_hook,
    push_routes,
)

if TYPE_CHECKING:
    from ..webconnect import ConnectResult, WebConnect

__all__ = ["connect_router", "webhook_router"]


def _too_large() -> Response:
    return Response(b"request body too large\n", status_code=413, media_type="text/plain")


def _to_starlette(response: WebhookResponse) -> Response:
    return Response(
        content=response.body, status_code=response.status, headers=dict(response.headers)
    )


async def _from_starlette(request: Request, limit: int) -> WebhookRequest | Response:
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        return _too_large()
    # Stream with a running total so an undeclared (chunked) body cannot exceed the limit.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return _too_large()
        chunks.append(chunk)
    first_values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        first_values.setdefault(name, value)
    return WebhookRequest(
        method=request.method,
        query=first_values,
        headers=dict(request.headers.items()),
        body=b"".join(chunks),
    )


def _endpoint(
    handler: WebhookHandler,
    handle: Callable[[WebhookRequest], WebhookResponse],
    hook: Callable[[WebhookResponse], None] | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    def handle_and_notify(request: WebhookRequest) -> WebhookResponse:
        response = handle(request)
        if hook is not None:
            hook(response)  # sending a Celery message blocks: in the thread pool too
        return response

    async def endpoint(request: Request) -> Response:
        converted = await _from_starlette(request, handler.max_body_bytes)
        if isinstance(converted, Response):
            return converted
        return _to_starlette(await run_in_threadpool(handle_and_notify, converted))

    return endpoint


def webhook_router(
    handler: WebhookHandler,
    *,
    prefix: str = DEFAULT_PREFIX,
    health: HealthCheck | None = None,
    notify: object | None = None,
    **paths: str,
) -> APIRouter:
    """An APIRouter with the push endpoint of every provider ``handler`` takes pushes for:
    ``{prefix}/{key}`` (``/webhooks/microsoft``, ``/webhooks/google``) or the path given as
    ``<key>_path=``.

    The routes are left out of the OpenAPI schema: providers, not API clients, call them.

    ``GET /healthz`` and ``GET /readyz`` answer from ``health``, a
    :class:`~mailparity.health.HealthCheck` of the handler's store by default (readiness reads the
    store, so it runs in the thread pool).

    ``notify``: the Celery integration (``configure(celery_app, ...)``), or a function, called
    with each answer; with Celery, a Celery worker starts on a push's jobs at once (see
    :func:`~mailparity.webhooks.notify_hook`).
    """
    router = APIRouter()
    hook = notify_hook(notify)
    for key, path in push_routes(handler, prefix=prefix, paths=paths).items():
        router.add_api_route(
            path,
            _endpoint(handler, getattr(handler, f"handle_{key}"), hook),
            methods=["GET", "POST"],
            include_in_schema=False,
        )
    checks = check_for(handler, health)
    if checks is None:
        return router

    async def healthz() -> Response:
        return _to_starlette(checks.liveness())

    async def readyz() -> Response:
        return _to_starlette(await run_in_threadpool(checks.readiness))

    router.add_api_route(HEALTH_PATH, healthz, methods=["GET"], include_in_schema=False)
    router.add_api_route(READY_PATH, readyz, methods=["GET"], include_in_schema=False)
    return router


#: The host's "who is signed in" hook: the request's user or tenant, or None (sync or async).
OwnerHook = Callable[[Request], "str | Awaitable[str | None] | None"]


def connect_router(
    connect: WebConnect,
    *,
    owner: OwnerHook,
    prefix: str | None = None,
    on_connected: Callable[[ConnectResult], None] | None = None,
) -> APIRouter:
    """An APIRouter with the web connect routes (see :mod:`mailparity.webconnect_routes`):
    ``GET {prefix}/{provider}``, ``GET {prefix}/{provider}/admin-consent``,
    ``GET {prefix}/callback`` and ``POST {prefix}/{provider_id}/disconnect``; ``prefix`` is
    ``/connect`` by default. Register ``https://<host><router prefix>{prefix}/callback`` as the
    ``redirect_uri`` of ``connect`` and with each provider.

    ``owner(request)`` (a function, run in the thread pool, or a coroutine function) returns the
    current user or tenant (from your session or authentication), or None when nobody is signed
    in (401). The flow talks to the providers and the store synchronously, so it runs in the
    thread pool.
    Disconnect is a POST refused when it comes from another site (``Origin`` /
    ``Sec-Fetch-Site``). The routes are left out of the OpenAPI schema.
    """
    from ..webconnect_routes import CALLBACK_PATH, DEFAULT_CONNECT_PREFIX, ConnectRoutes

    routes = ConnectRoutes(connect, on_connected=on_connected)
    base = (DEFAULT_CONNECT_PREFIX if prefix is None else prefix).rstrip("/")
    router = APIRouter()

    async def who(request: Request) -> str | None:
        # A plain function may read a database: it runs in the thread pool, as the flow does.
        if inspect.iscoroutinefunction(owner):
            found: Any = await owner(request)
        else:
            found = await run_in_threadpool(owner, request)
            if inspect.isawaitable(found):
                found = await found
        return found if isinstance(found, str) and found else None

    def query(request: Request) -> dict[str, str]:
        first: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            first.setdefault(name, value)
        return first

    async def callback(request: Request) -> Response:
        answer = await run_in_threadpool(
            routes.callback, query(request), await who(request),
            request.headers.get("accept", ""),
        )
        return _to_starlette(answer)

    async def start(request: Request, provider: str) -> Response:
        answer = await run_in_threadpool(
            routes.start, provider, query(request), await who(request),
            accept=request.headers.get("accept", ""),
        )
        return _to_starlette(answer)

    async def admin_consent(request: Request, provider: str) -> Response:
        answer = await run_in_threadpool(
            routes.start, provider, query(request), await who(request),
            accept=request.headers.get("accept", ""), admin=True,
        )
        return _to_starlette(answer)

    async def disconnect(request: Request, provider_id: str) -> Response:
        return_to = None
        if request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            body = (await request.body())[:4096].decode("utf-8", "replace")
            return_to = dict(parse_qsl(body)).get("return_to")
        answer = await run_in_threadpool(
            routes.disconnect, provider_id, await who(request),
            headers=dict(request.headers.items()),
            host=request.headers.get("host", request.url.netloc), return_to=return_to,
        )
        return _to_starlette(answer)

    router.add_api_route(
        f"{base}{CALLBACK_PATH}", callback, methods=["GET"], include_in_schema=False
    )
    router.add_api_route(f"{base}/{{provider}}", start, methods=["GET"], include_in_schema=False)
    router.add_api_route(
        f"{base}/{{provider}}/admin-consent", admin_consent, methods=["GET"],
        include_in_schema=False,
    )
    router.add_api_route(
        f"{base}/{{provider_id}}/disconnect", disconnect, methods=["POST"],
        include_in_schema=False,
    )
    return router
