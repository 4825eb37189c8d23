"""Connect a customer's mailbox from a web application: the OAuth authorization-code flow (with
``state`` and PKCE), the callback, disconnect, and tenant-wide admin consent for application
access, for every provider whose spec has a web connect hook.

::

    connect = WebConnect(store, redirect_uri="https://helpdesk.example/mail/connect/callback",
                         providers={key: {"client_id": ..., "client_secret": ..., **fields}
                                    for key, fields in host_settings.items()})

    # GET /connect/<key>  (the signed-in user of the host is the owner)
    start = connect.start(key, owner=current_user_id)
    return redirect(start.url)

    # GET /connect/callback?code=...&state=...
    result = connect.callback(request.args, owner=current_user_id)   # raises WebConnectError
    # result.provider_id, result.mailbox ...

    # POST /connect/<provider_id>/disconnect
    connect.disconnect(provider_id, tenant=current_user_id)

What the core guarantees, whatever the provider:

* the ``state`` is 256 random bits, stored server-side (the store's meta values, hashed), bound
  to the ``owner`` the host named, valid for ``state_ttl`` and usable once: a missing, unknown,
  expired or reused state, or a callback for another owner, raises
  :class:`~mailparity.errors.ConnectStateError` and stores nothing;
* an ``error`` from the provider raises :class:`~mailparity.errors.ConnectDeniedError`;
* the tokens are checked with the adapter's ``test_connection`` (in a scratch store) before
  anything reaches the host's store; a mailbox other than the expected one raises
  :class:`~mailparity.errors.MailboxMismatchError`;
* then the connection is stored (or an existing connection of the same mailbox and tenant is
  reconnected: its subscription, cursors and settings kept, ``needs_consent`` cleared) and the
  subscription or watch is created;
* no message or repr carries the state, the code, a token or a secret.

The provider's own dialect (msal for Microsoft; the token endpoint for Google) lives in its
package's ``webconnect`` module, reached through the registry (``ProviderSpec.web_connect``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets as secrets_lib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import requests

from .errors import (
    ConfigurationError,
    ConnectDeniedError,
    ConnectStateError,
    MailboxMismatchError,
    MailParityError,
    WebConnectError,
)
from .mailbox_events import announce_connection
from .models import WebhookSubscription, utcnow

if TYPE_CHECKING:
    from .models import OAuthTokens, ProviderConfigBase
    from .protocols import EventPublisher, SecretStore, StateStore
    from .providers.base import ProviderSpec, WebConnectHook, WebConnectSettings

_log = logging.getLogger("mailparity.webconnect")

__all__ = [
    "DEFAULT_STATE_TTL",
    "STATE_META_OWNER",
    "STATE_META_PREFIX",
    "ConnectResult",
    "ConnectStart",
    "DisconnectResult",
    "WebConnect",
    "web_connect_providers",
]

#: How long a started flow may take before its callback is refused (the providers' codes live
#: about ten minutes too).
DEFAULT_STATE_TTL = timedelta(minutes=10)
#: The meta "provider id" under which states are kept (no provider has it: ids never hold ':').
STATE_META_OWNER = "mailparity:webconnect"
#: Prefix of the state keys (``connect-state:<sha256 of the state>``); the maintenance sweep's
#: retention prunes abandoned ones.
STATE_META_PREFIX = "connect-state:"

_MAX_STATE = 512
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_UNSAFE_ID = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ConnectStart:
    """A started flow: send the browser to :attr:`url` (a 302). The state inside the URL is
    stored server-side; the repr leaves the URL out.

    Attributes:
        url: the provider's authorization (or admin consent) URL.
        provider: the provider's registry key.
        expires_at: the callback is refused after this instant.
    """

    url: str = field(repr=False)
    provider: str
    expires_at: datetime


@dataclass(frozen=True)
class ConnectResult:
    """What a successful callback did.

    Attributes:
        kind: ``"connect"`` (a mailbox was connected) or ``"admin_consent"`` (a tenant-wide
            consent was granted and no mailbox was named: connect mailboxes with
            :meth:`WebConnect.connect_mailbox` and :attr:`fields`).
        provider: the provider's registry key.
        owner: the owner the flow was started for.
        tenant: the host's tenant of the connection.
        provider_id: the stored connection's id (None for a bare admin consent).
        mailbox: the connected mailbox (None for a bare admin consent).
        reconnected: an existing connection of this mailbox was given new credentials.
        subscription: the subscription or watch created or renewed, when there was one.
        subscription_error: why it could not be created (the connection is stored; the
            maintenance sweep tries again), or None.
        fields: the config fields the consent settled (admin consent: ``auth_mode``,
            ``authority_tenant`` ...).
        return_to: the host's path given to ``start`` (None when none was given).
    """

    kind: Literal["connect", "admin_consent"]
    provider: str
    owner: str
    tenant: str
    provider_id: str | None = None
    mailbox: str | None = None
    reconnected: bool = False
    subscription: WebhookSubscription | None = None
    subscription_error: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    return_to: str | None = None


@dataclass(frozen=True)
class DisconnectResult:
    """What :meth:`WebConnect.disconnect` did.

    Attributes:
        provider_id: the connection that was removed.
        provider: its provider key.
        mailbox: its mailbox.
        push_stopped: the subscription was deleted / the watch stopped at the provider (False
            when there was none or the provider refused; a Graph subscription then lapses within
            three days, a Gmail watch within seven, and pushes for the removed connection are
            refused in the meantime).
        error: why stopping failed, or None.
    """

    provider_id: str
    provider: str
    mailbox: str
    push_stopped: bool
    error: str | None = None


def web_connect_providers() -> list[str]:
    """The keys of every registered provider with a web sign-in."""
    from .providers import specs

    return [spec.key for spec in specs() if spec.web_connect is not None]


class WebConnect:
    """The web connect flow over the host's store.

    Args:
        store: the host's StateStore: states go to its meta values, connections to its
            providers and tokens.
        redirect_uri: the host's callback URL, exactly as registered with each provider (one
            URL serves every provider and admin consent: the state says which flow it is).
            A provider's settings may name its own (``"redirect_uri"``).
        providers: per provider key, the host's settings: ``client_id`` / ``client_secret``
            (else ``$MICROSOFT_CLIENT_ID`` ..., else the tenant secrets, as for the adapters),
            config fields every connection of that provider gets (``webhook_notification_url``,
            ``project_id``, ``pubsub_topic_name``, ``login_base_url``, ``token_uri`` ...), and
            the provider's flow options (see ``docs/web-connect.md``).
        secrets: the host's tenant secrets.
        session: the ``requests.Session`` for every call (token endpoints included).
        clock: the current time (UTC).
        state_ttl: how long a started flow stays valid.
        subscribe: create the subscription / watch once a mailbox is connected.
        timeout: (connect, read) seconds of each call to a token endpoint.
        adapter_options: keyword arguments for the adapters (``sleep``, ``retry`` ...).
        publisher: when given, a connected mailbox is announced through it:
            ``EMAIL_PROVIDER_CONNECTED``, or ``EMAIL_PROVIDER_REAUTHORIZED`` for a mailbox
            connected before (:func:`mailparity.mailbox_events.announce_connection`). A failing
            publisher is logged; the connection stands.
    """

    def __init__(
        self,
        store: StateStore,
        *,
        redirect_uri: str,
        providers: Mapping[str, Mapping[str, Any]] | None = None,
        secrets: SecretStore | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = utcnow,
        state_ttl: timedelta = DEFAULT_STATE_TTL,
        subscribe: bool = True,
        timeout: tuple[float, float] = (10.0, 30.0),
        adapter_options: Mapping[str, Any] | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        if state_ttl <= timedelta(0):
            raise ValueError("state_ttl must be positive")
        self.store = store
        self.redirect_uri = redirect_uri
        self.provider_settings = {key: dict(value) for key, value in (providers or {}).items()}
        self.secrets = secrets
        self.session = session or requests.Session()
        self.clock = clock
        self.state_ttl = state_ttl
        self.subscribe = subscribe
        self.timeout = timeout
        self.adapter_options = dict(adapter_options or {})
        self.publisher = publisher

    def __repr__(self) -> str:
        return f"WebConnect(store={type(self.store).__name__}, providers={self.providers()})"

    def providers(self) -> list[str]:
        """The provider keys this instance can connect (a web sign-in, and settings given or
        none needed)."""
        keys = web_connect_providers()
        if not self.provider_settings:
            return keys
        return [key for key in keys if key in self.provider_settings]

    # ------------------------------------------------------------------ start

    def start(
        self,
        provider: str,
        *,
        owner: str,
        tenant: str | None = None,
        mailbox: str | None = None,
        provider_id: str | None = None,
        fields: Mapping[str, Any] | None = None,
        return_to: str | None = None,
    ) -> ConnectStart:
        """Start connecting a mailbox of ``provider`` for ``owner`` (the host's user or tenant,
        an opaque string the callback must present again).

        Args:
            tenant: the connection's ``tenant`` (default: ``owner``).
            mailbox: the mailbox expected to sign in (sent as a login hint; another mailbox is
                refused at the callback).
            provider_id: the id to store the connection under (default: the existing
                connection of the same mailbox, else ``<provider>-<mailbox>``).
            fields: config fields for this connection only (JSON-able; no secrets).
            return_to: a path of the host (``/settings/mail``) to go back to afterwards;
                anything but a local path is dropped.

        Raises:
            ConfigurationError: unknown provider, no web sign-in, no client id.
        """
        spec, hook = self._hook(provider)
        settings = self._settings(spec, tenant or owner)
        state = secrets_lib.token_urlsafe(32)
        authorization = hook.authorize(settings, state=state, login_hint=mailbox)
        return self._remember(
            state, "connect", spec, authorization.flow, authorization.url,
            owner=owner, tenant=tenant, mailbox=mailbox, provider_id=provider_id,
            fields=fields, return_to=return_to,
        )

    def start_admin_consent(
        self,
        provider: str,
        *,
        owner: str,
        tenant: str | None = None,
        mailbox: str | None = None,
        provider_id: str | None = None,
        fields: Mapping[str, Any] | None = None,
        return_to: str | None = None,
    ) -> ConnectStart:
        """Start a tenant-wide admin consent for application access (Microsoft's
        ``/adminconsent``). With ``mailbox``, the callback then connects that mailbox in
        application mode; without, it returns the consent's :attr:`ConnectResult.fields` for
        :meth:`connect_mailbox`. Arguments as for :meth:`start`.

        Raises:
            ConfigurationError: the provider has no admin consent, or no client id.
        """
        spec, hook = self._hook(provider)
        if hook.admin_consent is None or hook.admin_grant is None:
            raise ConfigurationError(
                f"provider {spec.key!r} has no admin consent", provider=spec.key
            )
        settings = self._settings(spec, tenant or owner)
        state = secrets_lib.token_urlsafe(32)
        authorization = hook.admin_consent(settings, state=state)
        return self._remember(
            state, "admin_consent", spec, authorization.flow, authorization.url,
            owner=owner, tenant=tenant, mailbox=mailbox, provider_id=provider_id,
            fields=fields, return_to=return_to,
        )

    def _remember(
        self,
        state: str,
        kind: str,
        spec: ProviderSpec,
        flow: Mapping[str, Any],
        url: str,
        *,
        owner: str,
        tenant: str | None,
        mailbox: str | None,
        provider_id: str | None,
        fields: Mapping[str, Any] | None,
        return_to: str | None,
    ) -> ConnectStart:
        if not isinstance(owner, str) or not owner:
            raise ValueError("owner must be a non-empty string (the host's user or tenant)")
        expires_at = self.clock() + self.state_ttl
        record = {
            "v": 1,
            "kind": kind,
            "provider": spec.key,
            "owner": owner,
            "tenant": tenant or owner,
            "mailbox": mailbox.strip() if mailbox else None,
            "provider_id": provider_id,
            "fields": dict(fields or {}),
            "return_to": _local_path(return_to),
            "flow": dict(flow),
            "expires_at": expires_at.isoformat(),
        }
        try:
            value = json.dumps(record)
        except (TypeError, ValueError):
            raise ValueError("fields must be JSON-able (and hold no secrets)") from None
        self.store.set_meta(STATE_META_OWNER, _state_key(state), value)
        return ConnectStart(url=url, provider=spec.key, expires_at=expires_at)

    # ------------------------------------------------------------------ callback

    def callback(self, params: Mapping[str, Any], *, owner: str) -> ConnectResult:
        """Finish a flow from the callback's query parameters (``code``, ``state``, or
        ``error`` / ``error_description``; admin consent: ``admin_consent``, ``tenant``).

        ``owner`` is the host's user or tenant of the request that reached the callback; it
        must be the one the flow was started for.

        Raises:
            ConnectStateError: state missing, unknown, expired, reused, or another owner's.
            ConnectDeniedError: the provider sent an ``error``.
            MailboxMismatchError: another mailbox than the expected one signed in.
            WebConnectError: the code was refused (``invalid_grant``: reused, expired, PKCE
                verifier or redirect URI mismatch), a permission was not granted, the mailbox
                belongs to another tenant, or it cannot be read.
            ProviderUnavailableError: the provider could not be reached (start again).
        """
        query = {str(k): v for k, v in params.items() if isinstance(v, str)}
        record = self._take_state(query, owner)
        spec, hook = self._hook(record["provider"])
        tenant = str(record["tenant"])
        if query.get("error"):
            raise _denied(spec.key, query, hook)
        settings = self._settings(spec, tenant)
        flow = record.get("flow") or {}
        expected = record.get("mailbox")
        if record["kind"] == "admin_consent":
            if hook.admin_grant is None:
                raise ConfigurationError(
                    f"provider {spec.key!r} has no admin consent", provider=spec.key
                )
            grant = hook.admin_grant(settings, params=query, flow=flow)
            fields = {**self._config_fields(spec, settings), **record["fields"], **grant.fields}
            if not expected:
                return ConnectResult(
                    kind="admin_consent", provider=spec.key, owner=owner, tenant=tenant,
                    fields=_public(fields), return_to=record.get("return_to"),
                )
            return self._connect(
                spec, owner=owner, tenant=tenant, mailbox=expected, expected=expected,
                fields=fields, tokens=None, provider_id=record.get("provider_id"),
                return_to=record.get("return_to"),
            )
        if not query.get("code"):
            raise WebConnectError(
                "the provider's answer carries neither an authorization code nor an error;"
                " start connecting again",
                code="code_missing", provider=spec.key,
            )
        grant = hook.exchange(settings, params=query, flow=flow)
        mailbox = expected or grant.mailbox
        if not mailbox:
            raise WebConnectError(
                "the provider did not say which mailbox signed in", code="mailbox_unknown",
                provider=spec.key,
            )
        fields = {**self._config_fields(spec, settings), **record["fields"], **grant.fields}
        return self._connect(
            spec, owner=owner, tenant=tenant, mailbox=mailbox, expected=expected,
            fields=fields, tokens=grant.tokens, provider_id=record.get("provider_id"),
            return_to=record.get("return_to"),
        )

    def _take_state(self, query: Mapping[str, str], owner: str) -> dict[str, Any]:
        """The stored record of the callback's state, consumed (single use, atomically: the
        store's lock serialises two callbacks racing with the same state)."""
        state = query.get("state") or ""
        if not state:
            raise ConnectStateError(
                "the callback carries no state; start connecting again", code="state_missing"
            )
        key = _state_key(state[:_MAX_STATE])
        now = self.clock()
        holder = uuid.uuid4().hex
        if not self.store.acquire_lock(key, holder, until=now + timedelta(minutes=1), now=now):
            raise _reused()
        try:
            raw = self.store.get_meta(STATE_META_OWNER, key)
            if raw is None or len(state) > _MAX_STATE:
                raise ConnectStateError(
                    "the callback's state is unknown (not started here, or already pruned);"
                    " start connecting again",
                    code="state_unknown",
                )
            record = json.loads(raw)
            if record.get("used"):
                raise _reused()
            # From here on a replay of this state is refused, whatever happens next.
            self.store.set_meta(
                STATE_META_OWNER, key, json.dumps({"used": True, "at": now.isoformat()})
            )
        finally:
            self.store.release_lock(key, holder)
        if datetime.fromisoformat(record["expires_at"]) <= now:
            raise ConnectStateError(
                "the connect flow took too long and expired; start connecting again",
                code="state_expired",
            )
        if not isinstance(owner, str) or not hmac.compare_digest(
            str(record["owner"]).encode("utf-8"), owner.encode("utf-8")
        ):
            raise ConnectStateError(
                "this connect flow was started by another user; start connecting again",
                code="owner_mismatch",
            )
        return dict(record)

    # ------------------------------------------------------------------ storing

    def connect_mailbox(
        self,
        provider: str,
        *,
        tenant: str,
        mailbox: str,
        fields: Mapping[str, Any],
        provider_id: str | None = None,
        owner: str | None = None,
    ) -> ConnectResult:
        """Connect ``mailbox`` with access that needs no user sign-in (application mode after
        an admin consent: ``fields`` from :attr:`ConnectResult.fields`). Checked with
        ``test_connection`` before anything is stored, then subscribed.

        Raises:
            WebConnectError: the mailbox cannot be read with that access, or it belongs to
                another tenant.
        """
        spec, _ = self._hook(provider)
        settings = self._settings(spec, tenant)
        merged = {**self._config_fields(spec, settings), **fields}
        return self._connect(
            spec, owner=owner or tenant, tenant=tenant, mailbox=mailbox, expected=mailbox,
            fields=merged, tokens=None, provider_id=provider_id, return_to=None,
        )

    def _connect(
        self,
        spec: ProviderSpec,
        *,
        owner: str,
        tenant: str,
        mailbox: str,
        expected: str | None,
        fields: Mapping[str, Any],
        tokens: OAuthTokens | None,
        provider_id: str | None,
        return_to: str | None,
    ) -> ConnectResult:
        existing = (
            self.store.get_provider(provider_id)
            if provider_id
            else self.store.find_provider_by_mailbox(spec.key, mailbox)
        )
        if existing is not None and (
            existing.provider != spec.key or existing.tenant != tenant
        ):
            raise WebConnectError(
                f"{mailbox} is already connected by another account; disconnect it there first",
                code="mailbox_taken", provider=spec.key,
            )
        pid = existing.provider_id if existing is not None else (
            provider_id or self._free_id(spec.key, mailbox)
        )
        changes: dict[str, Any] = {
            **fields, "mailbox": mailbox, "needs_consent": False, "auth_error_code": None
        }
        base = existing.model_dump() if existing is not None else {}
        config = spec.config_model.model_validate(
            {**base, **changes, "provider_id": pid, "tenant": tenant}
        )
        verified_tokens = self._verify(spec, config, tokens, expected)
        # Tokens first: once needs_consent is cleared, parked jobs run and must find them.
        if verified_tokens is not None:
            self.store.save_tokens(pid, verified_tokens)
        if existing is not None:
            stored = self.store.update_provider(pid, _field_values(config, changes))
        else:
            self.store.save_provider(config)
            stored = self.store.get_provider(pid) or config
        subscription, error = self._subscribe(spec, stored, renew=existing is not None)
        if self.publisher is not None:
            try:
                announce_connection(
                    self.publisher, stored, reconnected=existing is not None,
                    needed_consent=existing is not None and existing.needs_consent,
                    occurred_at=self.clock(),
                )
            except Exception as exc:  # the mailbox is connected; only the announcement failed
                _log.warning("announcing the connection of %s failed: %s", pid,
                             type(exc).__name__)
        return ConnectResult(
            kind="connect", provider=spec.key, owner=owner, tenant=tenant, provider_id=pid,
            mailbox=stored.mailbox, reconnected=existing is not None,
            subscription=subscription, subscription_error=error,
            fields=_public(fields),
            return_to=return_to,
        )

    def _free_id(self, key: str, mailbox: str) -> str:
        """``<provider>-<mailbox>``, or with a random suffix when another connection holds that
        id already (``a.b@x`` and ``a-b@x`` make the same one)."""
        candidate = _default_id(key, mailbox)
        while self.store.get_provider(candidate) is not None:
            candidate = f"{_default_id(key, mailbox)}-{secrets_lib.token_hex(3)}"
        return candidate

    def _verify(
        self,
        spec: ProviderSpec,
        config: ProviderConfigBase,
        tokens: OAuthTokens | None,
        expected: str | None,
    ) -> OAuthTokens | None:
        """``test_connection`` against a scratch store (nothing reaches the host's store
        before it passed); the tokens to store (the adapter may have refreshed them)."""
        from .providers import create_adapter
        from .stores.memory import InMemoryStore

        scratch = InMemoryStore()
        scratch.save_provider(config)
        if tokens is not None:
            scratch.save_tokens(config.provider_id, tokens)
        adapter = create_adapter(
            config, store=scratch, secrets=self.secrets, session=self.session,
            clock=self.clock, **self.adapter_options,
        )
        result = adapter.test_connection()
        if not result.success:
            if result.code == "mailbox_mismatch":
                observed = result.mailbox
                raise MailboxMismatchError(
                    f"you signed in as {observed or 'another account'}, not as"
                    f" {expected or config.mailbox}; sign in with that mailbox",
                    expected=expected or config.mailbox, observed=observed, provider=spec.key,
                )
            raise WebConnectError(
                f"the mailbox could not be read with the new access: {result.error}",
                code=result.code or "connection_failed", status=result.status,
                request_id=result.request_id, provider=spec.key,
            )
        return scratch.load_tokens(config.provider_id) or tokens

    def _subscribe(
        self, spec: ProviderSpec, config: ProviderConfigBase, *, renew: bool
    ) -> tuple[WebhookSubscription | None, str | None]:
        """Create (or, for a reconnect that has one, renew) the push registration. A failure is
        reported, not raised: the connection works, and the maintenance sweep tries again."""
        if not self.subscribe or spec.renewal is None:
            return None, None
        current_id, current_expiry = spec.renewal.state(config)
        has_one = current_id is not None or current_expiry is not None
        if not has_one and not spec.renewal.needs_renewal(
            config, self.clock(), spec.renewal_settings()
        ):
            return None, None  # nothing to register (no notification URL, no topic ...)
        from .providers import create_adapter

        adapter = create_adapter(
            config, store=self.store, secrets=self.secrets, session=self.session,
            clock=self.clock, **self.adapter_options,
        )
        try:
            if renew and has_one:
                return adapter.renew_webhook_subscription(), None
            return adapter.register_webhook_subscription(), None
        except MailParityError as exc:
            return None, str(exc)

    # ------------------------------------------------------------------ disconnect

    def disconnect(self, provider_id: str, *, tenant: str) -> DisconnectResult:
        """Stop the push (delete the Graph subscription, stop the Gmail watch), then forget the
        connection: its config, tokens and state. The connection must belong to ``tenant``.

        A provider that refuses to stop (tokens already revoked) does not keep the connection:
        it is removed all the same and :attr:`DisconnectResult.error` says what failed.

        Raises:
            WebConnectError: no such connection for ``tenant`` (``code="not_found"``).
        """
        config = self.store.get_provider(provider_id)
        if config is None or config.tenant != tenant:
            raise WebConnectError(
                "there is no such mailbox connection", code="not_found", status=404
            )
        from .providers import create_adapter, spec_for

        spec = spec_for(config)
        stopped, error = False, None
        if spec.renewal is not None and any(spec.renewal.state(config)):
            adapter = create_adapter(
                config, store=self.store, secrets=self.secrets, session=self.session,
                clock=self.clock, **self.adapter_options,
            )
            try:
                adapter.delete_webhook_subscription()
                stopped = True
            except MailParityError as exc:
                error = str(exc)
        self.store.delete_provider(provider_id)
        return DisconnectResult(
            provider_id=provider_id, provider=config.provider, mailbox=config.mailbox,
            push_stopped=stopped, error=error,
        )

    # ------------------------------------------------------------------ settings

    def _hook(self, provider: str) -> tuple[ProviderSpec, WebConnectHook]:
        from .providers import get_spec

        spec = get_spec(provider)
        hook = spec.web_connect_hook()
        if hook is None:
            raise ConfigurationError(
                f"provider {provider!r} cannot be connected from the web", provider=provider
            )
        if self.provider_settings and provider not in self.provider_settings:
            raise ConfigurationError(
                f"provider {provider!r} is not set up for web connect here", provider=provider
            )
        return spec, hook

    def _settings(self, spec: ProviderSpec, tenant: str) -> WebConnectSettings:
        """The hook's settings: client credentials resolved like the adapters' (settings, then
        the environment, then the tenant secrets)."""
        from .providers.base import WebConnectSettings

        options = dict(self.provider_settings.get(spec.key, {}))
        adapter_class: Any = spec.adapter_class()
        client_id = _resolve(options.get("client_id"), adapter_class, "client_id", self, tenant)
        if not client_id:
            raise ConfigurationError(
                f"web connect with {spec.key} needs a client id: in the provider's settings, in"
                f" ${adapter_class.env_client_id}, or as tenant secret"
                f" {adapter_class.secret_client_id!r}",
                provider=spec.key,
            )
        client_secret = _resolve(
            options.get("client_secret"), adapter_class, "client_secret", self, tenant
        )
        return WebConnectSettings(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=str(options.get("redirect_uri") or self.redirect_uri),
            options=options,
            session=self.session,
            timeout=self.timeout,
            clock=self.clock,
        )

    def _config_fields(
        self, spec: ProviderSpec, settings: WebConnectSettings
    ) -> dict[str, Any]:
        """The provider settings that are config fields; the client secret only when it was
        given in the settings (from the environment or tenant secrets it is resolved again)."""
        known = spec.config_model.model_fields
        fields = {
            key: value for key, value in settings.options.items()
            if key in known and key not in ("provider", "provider_id", "tenant", "mailbox")
        }
        fields["client_id"] = settings.client_id
        if settings.options.get("client_secret") is None:
            fields.pop("client_secret", None)
        return fields


def _resolve(
    given: Any, adapter_class: Any, what: str, connect: WebConnect, tenant: str
) -> str | None:
    if given is not None and not isinstance(given, str):
        given = given.get_secret_value() if hasattr(given, "get_secret_value") else str(given)
    if given:
        return str(given)
    env = os.environ.get(getattr(adapter_class, f"env_{what}", ""))
    if env:
        return env
    if connect.secrets is not None:
        return connect.secrets.get_secret(tenant, getattr(adapter_class, f"secret_{what}"))
    return None


def _public(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` without the client secret (a result's fields are shown and logged; the
    secret is resolved again from the settings when the fields are used)."""
    return {key: value for key, value in fields.items() if key != "client_secret"}


def _field_values(config: ProviderConfigBase, changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` as validated by the config model (a secret as SecretStr ...)."""
    return {key: getattr(config, key) for key in changes if key in type(config).model_fields}


def _state_key(state: str) -> str:
    # Only a digest is stored: reading the store does not give anyone a usable state.
    return STATE_META_PREFIX + hashlib.sha256(state.encode("utf-8")).hexdigest()


def _reused() -> ConnectStateError:
    return ConnectStateError(
        "this connect link was already used; start connecting again", code="state_reused"
    )


def _denied(provider: str, query: Mapping[str, str], hook: WebConnectHook) -> ConnectDeniedError:
    """The error of a callback carrying ``error``: the OAuth code and the provider's own code
    only (the description is attacker-controlled text on a URL; it is not repeated)."""
    raw = query.get("error", "")
    error = raw if _ERROR_CODE.match(raw) else "error"
    provider_code = hook.error_code(query) if hook.error_code is not None else None
    reasons = {
        "access_denied": "the sign-in or the consent was declined",
        "consent_required": "an administrator must consent first",
        "interaction_required": "the provider needs the user to sign in again",
        "invalid_scope": "the provider refused the permissions asked for",
        "invalid_request": "the provider refused the request",
        "unauthorized_client": "the application is not allowed to ask for this access",
        "temporarily_unavailable": "the provider is temporarily unavailable",
        "server_error": "the provider failed",
    }
    reason = reasons.get(error, "the provider refused")
    detail = f"{error}, {provider_code}" if provider_code else error
    return ConnectDeniedError(
        f"{provider}: {reason} ({detail}); nothing was connected",
        code=error, provider_code=provider_code, provider=provider,
    )


def _local_path(value: str | None) -> str | None:
    """``value`` when it is a path of this site (``/settings``), else None: never an open
    redirect (``//evil.example``, ``https://...``, ``/\\evil``)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    if any(ch in value for ch in "\r\n\t\\") or len(value) > 2000:
        return None
    return value


def _default_id(kind: str, mailbox: str) -> str:
    return f"{kind}-" + _UNSAFE_ID.sub("-", mailbox.lower()).strip("-")
