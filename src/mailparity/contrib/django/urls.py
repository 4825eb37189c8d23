"""The app's URLs, for ``include()`` under a prefix of your choice::

    # urls.py
    urlpatterns = [path("mail/", include("mailparity.contrib.django.urls"))]

* ``webhooks/<key>`` for every provider that takes pushes (``webhooks/microsoft``,
  ``webhooks/google``): CSRF-exempt (providers send no CSRF token; each request is authenticated
  by the handler), served by :func:`~mailparity.contrib.django.get_app`'s webhook handler;
* ``healthz`` and ``readyz``: liveness, and readiness of the store (and of a worker's heartbeat
  unless ``MAILPARITY["HEALTH"]["require_worker"]`` is False).

Names live in the ``mailparity`` namespace: ``reverse("mailparity:google")``,
``reverse("mailparity:readyz")``. Each request reads the app of the moment, so
``override_settings(MAILPARITY=...)`` in tests takes effect without reloading the URLconf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from ...health import HEALTH_PATH, READY_PATH, HealthCheck
from ...webhooks import DEFAULT_PREFIX, push_routes
from . import _health_view, webhook_view
from .conf import get_app, mailparity_settings

__all__ = ["app_name", "urlpatterns"]

app_name = "mailparity"


def _push_view(key: str) -> Callable[..., HttpResponse]:
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        handler = get_app().webhooks
        served: HttpResponse = webhook_view(handler, lambda req: handler.handle(key, req))(
            request
        )
        return served

    # Providers cannot send CSRF tokens; the handler authenticates each request itself.
    exempt: Callable[..., HttpResponse] = csrf_exempt(view)
    return exempt


def _health() -> HealthCheck:
    config = mailparity_settings()
    return HealthCheck(
        get_app().store,
        require_worker=config.require_worker,
        heartbeat_max_age=config.heartbeat_max_age,
        clock=get_app().clock,
    )


urlpatterns: list[Any] = [
    path(route.lstrip("/"), _push_view(key), name=key)
    # Every registered provider with a push source (an object without push_keys means all).
    for key, route in push_routes(object(), prefix=DEFAULT_PREFIX).items()
]
urlpatterns += [
    path(HEALTH_PATH.lstrip("/"), _health_view(lambda: _health().liveness()), name="healthz"),
    path(READY_PATH.lstrip("/"), _health_view(lambda: _health().readiness()), name="readyz"),
]
