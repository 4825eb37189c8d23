"""The app's URLs, for ``include()`` under a prefix of your choice::

    # urls.py
    urlpatterns = [path("mail/", include("mailparity.contrib.django.urls"))]

* ``webhooks/<key>`` for every provider that takes pushes (``webhooks/microsoft``,
  ``webhooks/google``): CSRF-exempt (providers send no CSRF token; each request is authenticated
  by the handler), served by :func:`~mailparity.contrib.django.get_app`'s webhook handler;
* with ``MAILPARITY["NOTIFY"]`` naming the Celery integration, each accepted push sends
  ``mailparity.process_jobs`` so a Celery worker starts on it at once;
* ``healthz`` and ``readyz``: liveness, and readiness of the store (and of a worker's heartbeat
  unless ``MAILPARITY["HEALTH"]["require_worker"]`` is False);
* the web connect flow (:mod:`mailparity.webconnect_routes`), with ``MAILPARITY["CONNECT"]``:
  ``GET connect/<provider>`` (start), ``GET connect/<provider>/admin-consent``,
  ``GET connect/callback`` (the redirect URI to register) and
  ``POST connect/<provider_id>/disconnect`` (Django's CSRF protection applies: post the form with
  ``{% csrf_token %}``). The owner of a flow is ``MAILPARITY["CONNECT"]["OWNER"](request)``, by
  default the signed-in user's primary key; nobody signed in gets a 401.

Names live in the ``mailparity`` namespace: ``reverse("mailparity:google")``,
``reverse("mailparity:readyz")``. Each request reads the app of the moment, so
``override_settings(MAILPARITY=...)`` in tests takes effect without reloading the URLconf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import path, reverse
from django.views.decorators.csrf import csrf_exempt

from ...health import HEALTH_PATH, READY_PATH, HealthCheck
from ...webhooks import DEFAULT_PREFIX, push_routes
from . import _health_view, _to_django, webhook_view
from .conf import build_web_connect, connect_hook, get_app, mailparity_settings, notify_target

__all__ = ["app_name", "urlpatterns"]

app_name = "mailparity"


def _push_view(key: str) -> Callable[..., HttpResponse]:
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        handler = get_app().webhooks
        notify = notify_target(mailparity_settings())
        served: HttpResponse = webhook_view(
            handler, lambda req: handler.handle(key, req), notify=notify
        )(request)
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


# ------------------------------------------------------------------ web connect


def _owner(request: HttpRequest) -> str | None:
    """Who the flow belongs to: ``CONNECT["OWNER"](request)``, else the signed-in user."""
    hook = connect_hook("OWNER")
    if hook is not None:
        value = hook(request)
    else:
        user: Any = getattr(request, "user", None)
        signed_in = bool(getattr(user, "is_authenticated", False))
        value = str(user.pk) if signed_in else None
    return value if isinstance(value, str) and value else None


def _routes(request: HttpRequest) -> Any:
    from ...webconnect_routes import ConnectRoutes

    callback_url = request.build_absolute_uri(reverse("mailparity:connect-callback"))
    on_connected = connect_hook("ON_CONNECTED")
    return ConnectRoutes(build_web_connect(callback_url), on_connected=on_connected)


def _query(request: HttpRequest) -> dict[str, str]:
    # One value per name, the first (as the other integrations do).
    return {name: values[0] for name, values in request.GET.lists() if values}


def _accept(request: HttpRequest) -> str:
    return str(request.headers.get("Accept", ""))


def _only(method: str, request: HttpRequest) -> HttpResponse | None:
    return None if request.method == method else HttpResponseNotAllowed([method])


def connect_start(request: HttpRequest, provider: str) -> HttpResponse:
    """``GET connect/<provider>``: 302 to the provider's sign-in (query: ``mailbox``,
    ``return_to``)."""
    refused = _only("GET", request)
    if refused is not None:
        return refused
    answer = _routes(request).start(provider, _query(request), _owner(request),
                                    accept=_accept(request))
    return _to_django(answer)


def connect_admin_consent(request: HttpRequest, provider: str) -> HttpResponse:
    """``GET connect/<provider>/admin-consent``: 302 to the provider's admin consent."""
    refused = _only("GET", request)
    if refused is not None:
        return refused
    answer = _routes(request).start(provider, _query(request), _owner(request),
                                    accept=_accept(request), admin=True)
    return _to_django(answer)


def connect_callback(request: HttpRequest) -> HttpResponse:
    """``GET connect/callback``: finish the flow (the redirect URI registered with the
    providers)."""
    refused = _only("GET", request)
    if refused is not None:
        return refused
    answer = _routes(request).callback(_query(request), _owner(request), _accept(request))
    return _to_django(answer)


def connect_disconnect(request: HttpRequest, provider_id: str) -> HttpResponse:
    """``POST connect/<provider_id>/disconnect``: stop the push and forget the connection (the
    owner's own only; CSRF-protected by Django, and refused from another site)."""
    refused = _only("POST", request)
    if refused is not None:
        return refused
    answer = _routes(request).disconnect(
        provider_id,
        _owner(request),
        headers=dict(request.headers.items()),
        host=request.get_host(),
        scheme=request.scheme or "https",
        return_to=request.POST.get("return_to"),
    )
    return _to_django(answer)


urlpatterns: list[Any] = [
    path(route.lstrip("/"), _push_view(key), name=key)
    # Every registered provider with a push source (an object without push_keys means all).
    for key, route in push_routes(object(), prefix=DEFAULT_PREFIX).items()
]
urlpatterns += [
    path(HEALTH_PATH.lstrip("/"), _health_view(lambda: _health().liveness()), name="healthz"),
    path(READY_PATH.lstrip("/"), _health_view(lambda: _health().readiness()), name="readyz"),
    # The literal callback path first: "callback" is not a provider.
    path("connect/callback", connect_callback, name="connect-callback"),
    path("connect/<str:provider>", connect_start, name="connect-start"),
    path(
        "connect/<str:provider>/admin-consent",
        connect_admin_consent,
        name="connect-admin-consent",
    ),
    path("connect/<str:provider_id>/disconnect", connect_disconnect, name="connect-disconnect"),
]
