"""Django integration, and a Django app.

As an app (``"mailparity.contrib.django"`` in ``INSTALLED_APPS``): a store on the Django ORM with
migrations (:mod:`.store`), the ``MAILPARITY`` setting and the project's
:class:`~mailparity.App` (:func:`get_app`, :mod:`.conf`), Django signals for the events
(:mod:`.signals`). See the Django guide.

Without the app, the URL patterns serve any :class:`~mailparity.webhooks.WebhookHandler`::

    # urls.py
    from mailparity.contrib.django import webhook_urlpatterns

    urlpatterns = [..., *webhook_urlpatterns(handler)]
    # or: path("mail/", include(webhook_urlpatterns(handler)))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

try:
    from django.core.exceptions import RequestDataTooBig
    from django.http import HttpRequest, HttpResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt
except ImportError as exc:
    from ...errors import missing_extra

    raise missing_extra("django", "mailparity.contrib.django") from exc

from ...health import HEALTH_PATH, READY_PATH, HealthCheck, check_for
from ...webhooks import (
    DEFAULT_PREFIX,
    WebhookHandler,
    WebhookRequest,
    WebhookResponse,
    notify_hook,
    push_routes,
)

if TYPE_CHECKING:
    from ...app import App
    from ...protocols import StateStore

__all__ = ["get_app", "get_store", "webhook_urlpatterns", "webhook_view"]


def get_app() -> App:
    """The project's :class:`~mailparity.App`, built from the ``MAILPARITY`` setting on first
    use (needs the app in ``INSTALLED_APPS``); see :func:`mailparity.contrib.django.conf.get_app`.
    """
    from .conf import get_app as configured_app

    return configured_app()


def get_store() -> StateStore:
    """The store of :func:`get_app`."""
    return get_app().store


def _too_large() -> HttpResponse:
    return HttpResponse(b"request body too large\n", status=413, content_type="text/plain")


def _to_django(response: WebhookResponse) -> HttpResponse:
    django_response = HttpResponse(response.body, status=response.status)
    # Django adds a default HTML Content-Type; an empty 202/204 should carry none.
    del django_response["Content-Type"]
    for name, value in response.headers.items():
        django_response[name] = value
    return django_response


def _from_django(request: HttpRequest, limit: int) -> WebhookRequest | HttpResponse:
    declared = str(request.META.get("CONTENT_LENGTH") or "").strip()
    if declared.isdigit() and int(declared) > limit:
        return _too_large()
    try:
        body = request.body
    except RequestDataTooBig:
        # DATA_UPLOAD_MAX_MEMORY_SIZE is lower than our limit.
        return _too_large()
    if len(body) > limit:
        return _too_large()
    # One value per name, the first (as the other integrations do).
    query = {name: values[0] for name, values in request.GET.lists() if values}
    return WebhookRequest(
        method=request.method or "GET",
        query=query,
        headers=dict(request.headers.items()),
        body=body,
    )


def webhook_view(
    handler: WebhookHandler,
    handle: Callable[[WebhookRequest], WebhookResponse],
    *,
    notify: object | None = None,
) -> Callable[..., HttpResponse]:
    """A CSRF-exempt Django view calling ``handle`` (one of ``handler``'s methods).

    ``notify``: the Celery integration (``configure(celery_app, ...)``), or a function, called
    with each answer; with Celery, a Celery worker starts on a push's jobs at once (see
    :func:`~mailparity.webhooks.notify_hook`)."""
    hook = notify_hook(notify)

    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        converted = _from_django(request, handler.max_body_bytes)
        if isinstance(converted, HttpResponse):
            return converted
        response = handle(converted)
        if hook is not None:
            hook(response)
        return _to_django(response)

    # Providers cannot send CSRF tokens; the handler authenticates each request itself.
    exempt: Callable[..., HttpResponse] = csrf_exempt(view)
    return exempt


def webhook_urlpatterns(
    handler: WebhookHandler,
    *,
    prefix: str = DEFAULT_PREFIX,
    name_prefix: str = "mailparity",
    health: HealthCheck | None = None,
    notify: object | None = None,
    **paths: str,
) -> list[Any]:
    """URL patterns for the push endpoint of every provider ``handler`` takes pushes for:
    ``{prefix}/{key}`` (``webhooks/microsoft``, ``webhooks/google``) or the path given as
    ``<key>_path=``.

    Paths follow Django's convention (no leading slash). Named ``<name_prefix>-<key>``
    (``mailparity-microsoft``) for ``reverse()``.

    ``healthz`` and ``readyz`` (named ``<name_prefix>-healthz`` / ``-readyz``) answer GET from
    ``health``, a :class:`~mailparity.health.HealthCheck` of the handler's store by default.
    ``notify`` is passed to :func:`webhook_view`.
    """
    patterns = [
        path(
            route.lstrip("/"),
            webhook_view(handler, getattr(handler, f"handle_{key}"), notify=notify),
            name=f"{name_prefix}-{key}",
        )
        for key, route in push_routes(handler, prefix=prefix, paths=paths).items()
    ]
    checks = check_for(handler, health)
    if checks is None:
        return patterns
    for route, answer in ((HEALTH_PATH, checks.liveness), (READY_PATH, checks.readiness)):
        patterns.append(
            path(route.lstrip("/"), _health_view(answer), name=f"{name_prefix}-{route[1:]}")
        )
    return patterns


def _health_view(answer: Callable[[], WebhookResponse]) -> Callable[..., HttpResponse]:
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(b"method not allowed\n", status=405, content_type="text/plain")
        return _to_django(answer())

    return view
