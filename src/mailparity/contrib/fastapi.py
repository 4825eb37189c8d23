"""FastAPI / Starlette integration: an APIRouter serving a
:class:`~mailparity.webhooks.WebhookHandler`.

::

    from mailparity.contrib.fastapi import webhook_router

    app.include_router(webhook_router(handler), prefix="/mail")

The handler talks to the host's stores synchronously, so it runs in Starlette's thread pool and
never blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

try:
    from fastapi import APIRouter
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
except ImportError as exc:
    from ..errors import missing_extra

    raise missing_extra("fastapi", "mailparity.contrib.fastapi") from exc

from ..health import HEALTH_PATH, READY_PATH, HealthCheck, check_for
from ..webhooks import DEFAULT_PREFIX, WebhookHandler, WebhookRequest, WebhookResponse, push_routes

__all__ = ["webhook_router"]


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
    handler: WebhookHandler, handle: Callable[[WebhookRequest], WebhookResponse]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        converted = await _from_starlette(request, handler.max_body_bytes)
        if isinstance(converted, Response):
            return converted
        return _to_starlette(await run_in_threadpool(handle, converted))

    return endpoint


def webhook_router(
    handler: WebhookHandler,
    *,
    prefix: str = DEFAULT_PREFIX,
    health: HealthCheck | None = None,
    **paths: str,
) -> APIRouter:
    """An APIRouter with the push endpoint of every provider ``handler`` takes pushes for:
    ``{prefix}/{key}`` (``/webhooks/microsoft``, ``/webhooks/google``) or the path given as
    ``<key>_path=``.

    The routes are left out of the OpenAPI schema: providers, not API clients, call them.

    ``GET /healthz`` and ``GET /readyz`` answer from ``health``, a
    :class:`~mailparity.health.HealthCheck` of the handler's store by default (readiness reads the
    store, so it runs in the thread pool).
    """
    router = APIRouter()
    for key, path in push_routes(handler, prefix=prefix, paths=paths).items():
        router.add_api_route(
            path,
            _endpoint(handler, getattr(handler, f"handle_{key}")),
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
