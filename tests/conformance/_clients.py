"""The real clients of the conformance suite, pointed at the served fakes.

* Microsoft's ``msgraph-sdk`` (kiota: httpx, its own middleware, typed models), authenticated
  with a static bearer token the fake issued. It is async: each test runs its calls in
  ``asyncio.run``.
* Google's ``google-api-python-client``, built from its bundled static discovery document, on
  httplib2, with google-auth user credentials; its base URL is the fake's (``client_options``),
  batches go to the fake's ``/batch`` (googleapiclient takes the batch URL from the discovery
  document's root, so it is given explicitly).

Both packages are test dependencies (the ``dev`` extra); the library's runtime imports neither.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mailparity.testing.fake_gmail import FakeGmail
from mailparity.testing.fake_graph import FakeGraph

IMMUTABLE = 'IdType="ImmutableId"'


# ---------------------------------------------------------------------------------- Graph


def graph_client(graph: FakeGraph, token: str, *, verify: str | bool = True) -> Any:
    """A ``GraphServiceClient`` on ``graph.base_url`` with a static bearer ``token``. Call it
    inside the event loop that uses it (httpx binds its pool to the loop)."""
    import httpx
    from kiota_abstractions.authentication import (
        AccessTokenProvider,
        AllowedHostsValidator,
        BaseBearerTokenAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.graph_request_adapter import options as sdk_options
    from msgraph_core import GraphClientFactory

    class StaticToken(AccessTokenProvider):  # type: ignore[misc]
        async def get_authorization_token(
            self, uri: str, additional_authentication_context: Any = None
        ) -> str:
            return token

        def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
            return AllowedHostsValidator([])

    # The SDK's own middleware chain (retry, redirect, headers...) on an httpx client that
    # trusts the fake's CA when served over TLS, and never an environment proxy.
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=verify, trust_env=False), options=sdk_options
    )
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticToken()), client=http)
    adapter.base_url = graph.base_url
    return GraphServiceClient(request_adapter=adapter)


def immutable(query: Any = None) -> Any:
    """A request configuration asking for immutable ids (and ``query`` parameters)."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    config = RequestConfiguration(query_parameters=query)
    config.headers.add("Prefer", IMMUTABLE)
    return config


async def raw_get(client: Any, url: str, prefer: str | None = IMMUTABLE) -> bytes:
    """GET an absolute URL through the SDK's request adapter (auth, middleware) as bytes: for
    the raw ``$value`` endpoints the generated builders do not offer."""
    from kiota_abstractions.method import Method
    from kiota_abstractions.request_information import RequestInformation

    info = RequestInformation(Method.GET)
    info.url = url
    if prefer:
        info.headers.add("Prefer", prefer)
    data = await client.request_adapter.send_primitive_async(info, "bytes", {})
    assert isinstance(data, bytes)
    return data


def unknown_properties(model: Any) -> dict[str, Any]:
    """The properties of a parsed SDK model that the SDK's schema does not know (kiota keeps
    them in ``additional_data``), OData annotations aside: a fake inventing a property or
    misspelling one shows up here."""
    extra = getattr(model, "additional_data", None) or {}
    return {key: value for key, value in extra.items() if "@" not in key}


# ---------------------------------------------------------------------------------- Gmail


GOOGLE_CLIENT = ("conformance-client", "conformance-secret")


def gmail_service(gmail: FakeGmail, mailbox: str, *, ca_certs: str | None = None) -> Any:
    """``build("gmail", "v1", static_discovery=True)`` on the fake, with google-auth user
    credentials for ``mailbox`` (httplib2 underneath, as in production). The credentials carry
    a refresh token and the fake's token URI, so google-auth refreshes against the fake."""
    import google_auth_httplib2
    import httplib2
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build

    client_id, client_secret = GOOGLE_CLIENT
    gmail.add_client(client_id, client_secret)
    tokens = gmail.issue_tokens(mailbox, client_id)
    credentials = Credentials(
        token=tokens["access_token"], refresh_token=tokens["refresh_token"],
        token_uri=gmail.token_uri, client_id=client_id, client_secret=client_secret,
    )
    http = google_auth_httplib2.AuthorizedHttp(
        credentials, http=httplib2.Http(ca_certs=ca_certs, proxy_info=None, timeout=30)
    )
    return build(
        "gmail", "v1", http=http, static_discovery=True, cache_discovery=False,
        client_options={"api_endpoint": gmail.base_url + "/"},
    )


def gmail_batch(gmail: FakeGmail, callback: Any) -> Any:
    """googleapiclient's ``BatchHttpRequest`` sent to the fake's batch endpoint."""
    from googleapiclient.http import BatchHttpRequest

    return BatchHttpRequest(callback=callback, batch_uri=f"{gmail.base_url}/batch")


def discovery_document() -> dict[str, Any]:
    """The Gmail discovery document bundled with google-api-python-client."""
    import googleapiclient

    path = os.path.join(
        os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "gmail.v1.json"
    )
    with open(path, encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def schema_errors(document: dict[str, Any], schema: str, value: Any, where: str = "") -> list[str]:
    """Where ``value`` breaks the discovery document's ``schema``: properties it does not
    define, values of the wrong JSON type (e.g. a uint64 ``historyId`` must be a string), bytes
    that are not base64url. Empty when it conforms."""
    return _check(document, document["schemas"][schema], value, where or schema)


def _check(document: dict[str, Any], spec: dict[str, Any], value: Any, where: str) -> list[str]:
    if "$ref" in spec:
        return _check(document, document["schemas"][spec["$ref"]], value, where)
    kind = spec.get("type")
    errors: list[str] = []
    if kind in _JSON_TYPES:
        allowed = _JSON_TYPES[kind]
        if not isinstance(value, allowed) or (kind != "boolean" and isinstance(value, bool)):
            return [f"{where}: {type(value).__name__} where the schema says {kind}"]
    if kind == "string" and spec.get("format") in ("int64", "uint64") and not value.isdigit():
        errors.append(f"{where}: {value!r} is not a {spec['format']} string")
    if kind == "string" and spec.get("format") == "byte":
        import re

        if not re.fullmatch(r"[A-Za-z0-9_\-]*=*", value):
            errors.append(f"{where}: not base64url")
    if kind == "array":
        for index, item in enumerate(value):
            errors += _check(document, spec.get("items", {}), item, f"{where}[{index}]")
    if kind == "object" and "properties" in spec:
        properties = spec["properties"]
        for key, item in value.items():
            if key not in properties:
                errors.append(f"{where}.{key}: not in the discovery schema")
                continue
            errors += _check(document, properties[key], item, f"{where}.{key}")
    return errors
