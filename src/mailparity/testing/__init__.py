"""Test doubles and fixtures for host applications: provider fakes, a message builder, a pytest
plugin.

Everything a host needs to test "an email arrives -> my code runs" without Google or Microsoft::

    from mailparity.testing import FakeGraph, build_message, connect_microsoft

* :class:`FakeGraph`, :class:`FakeGmail`: stateful fakes of Microsoft Graph mail and the Gmail API
  (with their token endpoints and push notifications), usable through ``responses``
  (``fake.register(mock)``) or over real HTTP on 127.0.0.1 (:func:`serve`);
* :func:`build_message`: raw RFC 5322 bytes of a test email, delivered with ``fake.deliver``;
* :class:`TestOidcSigner`, :func:`pubsub_push_body`: Pub/Sub push tokens and bodies;
* :func:`connect_microsoft`, :func:`connect_google`: a provider config and tokens in a store,
  pointed at a fake, the subscription / watch registered through the real adapter;
* :func:`graph_notification_request`, :func:`gmail_push_request`: what the provider would POST,
  as a :class:`~mailparity.webhooks.WebhookRequest` for ``WebhookHandler``.

The pytest fixtures live in :mod:`mailparity.testing.pytest_plugin` (loaded automatically).

Names are imported on first use: ``import mailparity.testing`` stays cheap, and the main package
never imports this one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._fakebase import Delivery
    from .builder import AttachmentSpec, InlineImage, build_message
    from .connect import (
        PUSH_SERVICE_ACCOUNT,
        TEST_AUDIENCE,
        connect_google,
        connect_microsoft,
        gmail_push_request,
        graph_notification_request,
    )
    from .fake_gmail import FakeGmail
    from .fake_graph import FakeGraph
    from .oidc import TestOidcSigner, pubsub_push_body
    from .server import FakeServer, serve

__all__ = [
    "PUSH_SERVICE_ACCOUNT",
    "TEST_AUDIENCE",
    "AttachmentSpec",
    "Delivery",
    "FakeGmail",
    "FakeGraph",
    "FakeServer",
    "InlineImage",
    "TestOidcSigner",
    "build_message",
    "connect_google",
    "connect_microsoft",
    "gmail_push_request",
    "graph_notification_request",
    "pubsub_push_body",
    "serve",
]

_WHERE: dict[str, str] = {
    "Delivery": "._fakebase",
    "AttachmentSpec": ".builder",
    "InlineImage": ".builder",
    "build_message": ".builder",
    "PUSH_SERVICE_ACCOUNT": ".connect",
    "TEST_AUDIENCE": ".connect",
    "connect_google": ".connect",
    "connect_microsoft": ".connect",
    "gmail_push_request": ".connect",
    "graph_notification_request": ".connect",
    "FakeGmail": ".fake_gmail",
    "FakeGraph": ".fake_graph",
    "TestOidcSigner": ".oidc",
    "pubsub_push_body": ".oidc",
    "FakeServer": ".server",
    "serve": ".server",
}


def __getattr__(name: str) -> Any:
    module_name = _WHERE.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
