"""Flask integration: a Blueprint serving a :class:`~mailparity.webhooks.WebhookHandler`.

::

    from mailparity.contrib.flask import webhook_blueprint

    app.register_blueprint(webhook_blueprint(handler), url_prefix="/mail")
    # -> /mail/webhooks/microsoft and /mail/webhooks/google

And the web connect flow (:mod:`mailparity.webconnect`) as a second Blueprint::

    from mailparity.contrib.flask import connect_blueprint

    app.register_blueprint(
        connect_blueprint(web_connect, owner=lambda: session.get("user_id")), url_prefix="/mail"
    )
    # -> /mail/connect/<provider>, /mail/connect/callback, /mail/connect/<id>/disconnect ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

try:
    from flask import Blueprint, Response, request
except ImportError as exc:
    from ..errors import missing_extra

    raise missing_extra("flask", "mailparity.contrib.flask") from exc

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

__all__ = ["connect_blueprint", "webhook_blueprint"]


def _too_large() -> Response:
    return Response(b"request body too large\n", status=413, content_type="text/plain")


def _to_flask(response: WebhookResponse) -> Response:
    flask_response = Response(response.body, status=response.status)
    # Flask sets a default HTML Content-Type; drop it so an empty 202/204 carries none.
    del flask_response.headers["Content-Type"]
    for name, value in response.headers.items():
        flask_response.headers[name] = value
    return flask_response


def _from_flask(handler: WebhookHandler) -> WebhookRequest | Response:
    length = request.content_length
    if length is not None and length > handler.max_body_bytes:
        return _too_large()
    # Read one byte past the limit, never more, to tell "too large" apart without a length.
    body = request.stream.read(handler.max_body_bytes + 1)
    if len(body) > handler.max_body_bytes:
        return _too_large()
    return WebhookRequest(
        method=request.method,
        query=request.args.to_dict(flat=True),
        headers=dict(request.headers.items()),
        body=body,
    )


def webhook_blueprint(
    handler: WebhookHandler,
    *,
    name: str = "mailparity_webhooks",
    prefix: str = DEFAULT_PREFIX,
    health: HealthCheck | None = None,
    notify: object | None = None,
    **paths: str,
) -> Blueprint:
    """A Blueprint with the push endpoint of every provider ``handler`` takes pushes for:
    ``{prefix}/{key}`` (``/webhooks/microsoft``, ``/webhooks/google``) or the path given as
    ``<key>_path=``. Each endpoint is named after its provider key.

    Flask does not apply CSRF protection by itself; if an extension does (Flask-WTF's
    ``CSRFProtect``), exempt this blueprint: providers cannot send CSRF tokens.

    ``GET /healthz`` and ``GET /readyz`` (endpoints ``healthz`` / ``readyz``) answer from
    ``health``, a :class:`~mailparity.health.HealthCheck` of the handler's store by default.

    ``notify``: the Celery integration (``configure(celery_app, ...)``), or a function, called
    with each answer; with Celery, a Celery worker starts on a push's jobs at once (see
    :func:`~mailparity.webhooks.notify_hook`).
    """
    blueprint = Blueprint(name, __name__)
    hook = notify_hook(notify)
    for key, path in push_routes(handler, prefix=prefix, paths=paths).items():
        blueprint.add_url_rule(
            path, key, _view(handler, key, hook), methods=["GET", "POST"], strict_slashes=False
        )
    checks = check_for(handler, health)
    if checks is None:
        return blueprint
    blueprint.add_url_rule(
        HEALTH_PATH, "healthz", lambda: _to_flask(checks.liveness()), methods=["GET"]
    )
    blueprint.add_url_rule(
        READY_PATH, "readyz", lambda: _to_flask(checks.readiness()), methods=["GET"]
    )
    return blueprint


def _view(
    handler: WebhookHandler, key: str, hook: Callable[[WebhookResponse], None] | None
) -> Callable[[], Response]:
    def view() -> Response:
        converted = _from_flask(handler)
        if isinstance(converted, Response):
            return converted
        response: WebhookResponse = getattr(handler, f"handle_{key}")(converted)
        if hook is not None:
            hook(response)
        return _to_flask(response)

    view.__name__ = f"mailparity_{key}"
    return view


def connect_blueprint(
    connect: WebConnect,
    *,
    owner: Callable[[], str | None],
    name: str = "mailparity_connect",
    prefix: str | None = None,
    on_connected: Callable[[ConnectResult], None] | None = None,
) -> Blueprint:
    """A Blueprint with the web connect routes (see :mod:`mailparity.webconnect_routes`):
    ``GET {prefix}/<provider>``, ``GET {prefix}/<provider>/admin-consent``,
    ``GET {prefix}/callback`` and ``POST {prefix}/<provider_id>/disconnect``; ``prefix`` is
    ``/connect`` by default. Register ``https://<host><url_prefix>{prefix}/callback`` as the
    ``redirect_uri`` of ``connect`` and with each provider.

    ``owner()`` returns the current user or tenant (from Flask's ``session``, ``g``, your login
    extension ...), or None when nobody is signed in (401). Disconnect is a POST refused when
    it comes from another site (``Origin`` / ``Sec-Fetch-Site``); exempt the blueprint from a
    CSRF extension only if you rely on that check.
    """
    from ..webconnect_routes import CALLBACK_PATH, DEFAULT_CONNECT_PREFIX, ConnectRoutes

    routes = ConnectRoutes(connect, on_connected=on_connected)
    base = (DEFAULT_CONNECT_PREFIX if prefix is None else prefix).rstrip("/")
    blueprint = Blueprint(name, __name__)

    def accept() -> str:
        return request.headers.get("Accept", "")

    def callback() -> Response:
        return _to_flask(routes.callback(request.args.to_dict(flat=True), owner(), accept()))

    def start(provider: str) -> Response:
        answer = routes.start(provider, request.args.to_dict(flat=True), owner(), accept=accept())
        return _to_flask(answer)

    def admin_consent(provider: str) -> Response:
        answer = routes.start(
            provider, request.args.to_dict(flat=True), owner(), accept=accept(), admin=True
        )
        return _to_flask(answer)

    def disconnect(provider_id: str) -> Response:
        answer = routes.disconnect(
            provider_id, owner(), headers=dict(request.headers.items()), host=request.host,
            return_to=request.form.get("return_to"),
        )
        return _to_flask(answer)

    blueprint.add_url_rule(f"{base}{CALLBACK_PATH}", "callback", callback, methods=["GET"])
    blueprint.add_url_rule(f"{base}/<provider>", "start", start, methods=["GET"])
    blueprint.add_url_rule(
        f"{base}/<provider>/admin-consent", "admin_consent", admin_consent, methods=["GET"]
    )
    blueprint.add_url_rule(
        f"{base}/<provider_id>/disconnect", "disconnect", disconnect, methods=["POST"]
    )
    return blueprint
