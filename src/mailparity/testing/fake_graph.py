"""A stateful fake of Microsoft Graph mail (and the Entra token endpoint) for tests.

State: mailboxes (users with well-known folders, messages, master categories), subscriptions,
issued tokens (expiring access tokens, rotating refresh tokens) and immutable ids. Messages are
delivered as raw RFC 5322 bytes and rendered into Graph's message JSON from the MIME, the way
Exchange does. Every request needs a valid bearer token; ids follow ``Prefer: IdType="ImmutableId"``
(without it a moved message gets a new id and the old one answers 404, as in Graph).

Endpoints (under ``base_url``; ``/me/...`` and ``/users/{id|mail}/...`` alike)::

    GET   /me, /users/{id}
    GET   messages, messages/{id}  ($select, $expand=attachments, attachments($select=...))
    GET   messages/{id}/$value, messages/{id}/attachments[/{aid}[/$value]]
    PATCH messages/{id}            (isRead, categories, flag, importance, inferenceClassification)
    POST  messages/{id}/move       DELETE messages/{id} (moves to Deleted Items)
    GET   mailFolders (top level), mailFolders/{id|well-known}[/childFolders[/{id}]]
          ($top, $skip, $select), POST mailFolders, POST mailFolders/{f}/childFolders
    GET   mailFolders/{f}/messages ($top, $skip, $select, $filter=receivedDateTime ge|gt)
    GET   mailFolders/{f}/messages/delta and .../delta()  ($select, changeType, $filter as
          above; nextLink / deltaLink pages, @removed, 410 syncStateNotFound)
    GET/POST outlook/masterCategories
    POST/GET /subscriptions, GET/PATCH/DELETE /subscriptions/{id}, POST .../reauthorize
    POST  /$batch                  (at most 20 requests, dependsOn, per-member faults; each
                                    member runs with the batch's token and its own headers)

and under ``login_url``: ``POST /{tenant}/oauth2/v2.0/token`` (``refresh_token`` grant with
rotation, ``client_credentials``, ``authorization_code`` with PKCE), ``GET
/{tenant}/oauth2/v2.0/authorize`` (one-time codes; who signs in: see
:mod:`mailparity.testing._authorize`), ``GET /{tenant}/v2.0/adminconsent``,
``GET /{tenant}/v2.0/.well-known/openid-configuration`` and ``GET /common/discovery/instance``
(what MSAL asks before its first token request).

Faults: :meth:`fail_next`, :meth:`expire_tokens`, :meth:`revoke_refresh_token`,
:meth:`remove_subscription` (emits ``subscriptionRemoved``), :meth:`expire_delta_tokens`.
Emission: :meth:`notifications_for`, :meth:`lifecycle_notification`, :meth:`push`.
"""

from __future__ import annotations

from ._fakebase import (
    Delivery,
    FakeRequest,
    HandlerResult,
)
from ._graph.api import GraphApi
from ._graph.model import (
    MAX_BATCH,
    MAX_SUBSCRIPTION_MINUTES,
    WELL_KNOWN_FOLDERS,
    GraphAttachment,
    GraphFolder,
    GraphMessage,
    GraphSubscription,
    GraphUser,
    Validator,
    _GraphError,
)

__all__ = [
    "MAX_BATCH",
    "MAX_SUBSCRIPTION_MINUTES",
    "WELL_KNOWN_FOLDERS",
    "Delivery",
    "FakeGraph",
    "GraphAttachment",
    "GraphFolder",
    "GraphMessage",
    "GraphSubscription",
    "GraphUser",
    "Validator",
]


class FakeGraph(GraphApi):
    """A stateful Microsoft Graph mail fake; see the module docstring for the surface.

    ``seed`` makes ids and the drop/duplicate choices of :meth:`push` reproducible. Set
    ``validator`` (see :meth:`http_validator`) to have subscription creation perform Graph's
    validation handshake; without it the handshake is skipped. ``strict_rotation`` revokes a
    refresh token once it was used (Entra keeps old ones valid; the strict mode proves that the
    newest one is stored).
    """

    # ================================================================== routing
    # (the request and answer helpers every section uses are in ``_graph/state.py``)

    def _dispatch(self, request: FakeRequest) -> HandlerResult:
        try:
            if request.url.startswith(self.login_url):
                return self._login(request)
            return self._api(request)
        except _GraphError as exc:
            return self._error(exc.status, exc.code, exc.message)
