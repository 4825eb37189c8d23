"""The provider seam: what a provider package hands the core.

A provider is a package under ``mailparity/providers/`` (or anywhere: third-party packages
register the same way) that exposes one :class:`ProviderSpec` and registers it with
:func:`mailparity.providers.register`. The core (stores, processing, maintenance, webhooks, the
WSGI app, ``contrib/``, the CLI, the testing kit) only ever asks the registry; it never names a
provider. The spec says:

* ``key``: the provider's one name everywhere: ``EmailMessage.provider``, the config's
  ``provider`` field, the webhook URL segment (``/microsoft``), the CLI sub-command;
* ``config_model``: the pydantic config (a :class:`~mailparity.models.ProviderConfigBase`);
* ``adapter``: the :class:`~mailparity.adapter.EmailProviderAdapter` subclass (or the
  ``"module:Name"`` that holds it, imported on first use so ``import mailparity`` stays cheap);
* ``push``: the push source that turns a webhook request into jobs, or None for a provider
  without webhooks (IMAP listens with IDLE; maintenance's catch-up sync serves it all the same);
* ``renewal``: when the push registration (Graph subscription, Gmail watch) is renewed, or None
  when there is nothing to renew;
* ``cursor_field``: the config field holding the catch-up cursor, moved by the stores'
  :meth:`~mailparity.protocols.ProviderRegistry.compare_and_set_cursor`; ``stale_push`` tells a
  push already covered by that cursor (nothing to read);
* ``subscription_id``: the id a push is routed by (stores index it for
  ``find_provider_by_subscription``);
* ``cli_connect`` / ``web_connect``: the sign-in flows (``mailparity connect <key>``; web
  connect is for host applications);
* ``testing``: the provider's part of the testing kit (:class:`ProviderTestKit`: sample configs
  for store contracts, connecting a mailbox of its fake, ...), so that ``mailparity.testing``
  names no provider;
* ``listener``: a long-running push listener (IMAP IDLE) for a provider whose pushes are not
  webhooks, or None. ``mailparity listen`` and ``Worker(listen=True)`` run one per provider that
  has one (see :class:`PushListener`).

Everything given as a ``"module:Name"`` string is imported on first use.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..adapter import EmailProviderAdapter
    from ..models import ProviderConfigBase

__all__ = [
    "CliConnect",
    "ConnectContext",
    "ProviderSpec",
    "ProviderTestKit",
    "PushListener",
    "RenewalRule",
    "WebAuthorization",
    "WebConnectHook",
    "WebConnectSettings",
    "WebGrant",
    "resolve",
]


def resolve(ref: Any) -> Any:
    """``ref`` itself, or the object a ``"package.module:Name"`` string points at."""
    if not isinstance(ref, str):
        return ref
    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"not a 'module:Name' reference: {ref!r}")
    module = importlib.import_module(module_name)
    return getattr(module, attribute)


def _no_subscription(config: Any) -> str | None:
    return None


def _never_stale(config: Any, payload: Mapping[str, Any]) -> bool:
    return False


@dataclass(frozen=True)
class RenewalRule:
    """When a provider's push registration (subscription, watch) must be created or renewed.

    Attributes:
        needs_renewal: ``needs_renewal(config, now, settings) -> bool``; ``settings`` holds this
            rule's ``settings`` updated with the host's overrides (``Maintenance(**settings)``).
        state: ``state(config) -> (subscription_id, expires_at)``: the current registration, each
            None when there is none (a watch has no id: ``(None, expiry)``). Maintenance compares
            the id before and after a renewal to notice a recreated subscription (a gap in pushes).
        settings: the rule's tunables and their defaults (name -> timedelta).
    """

    needs_renewal: Callable[[Any, datetime, Mapping[str, timedelta]], bool]
    state: Callable[[Any], tuple[str | None, datetime | None]]
    settings: Mapping[str, timedelta] = field(default_factory=dict)


class ConnectContext(Protocol):
    """What a connect flow gets from its caller (the command line's ``ConnectContext``)."""

    def save(self, kind: str, mailbox: str, fields: dict[str, Any], tokens: Any = None) -> int:
        """Store the connection (or reconnect the same mailbox) and say what was done."""
        ...

    def fail(self, message: str) -> NoReturn:
        """Stop with a one-line user error (free of secrets)."""
        ...


@dataclass(frozen=True)
class CliConnect:
    """A provider's ``mailparity connect <key>`` sub-command (a spec's ``cli_connect``).

    Attributes:
        add_arguments: ``add_arguments(parser)`` adds the sub-command's options.
        run: ``run(args, ctx) -> exit code``: sign in, then ``ctx.save(key, mailbox, fields,
            tokens)``; ``ctx.fail(message)`` stops with a one-line user error.
    """

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, ConnectContext], int]


@dataclass(frozen=True)
class WebConnectSettings:
    """What the core hands a provider's web connect hook (see :class:`WebConnectHook`).

    Attributes:
        client_id: the OAuth client (app registration) id, already resolved.
        client_secret: its secret (None when the host has none); never logged.
        redirect_uri: the host's callback URL, exactly as registered with the provider.
        options: the host's settings for this provider: config fields (``login_base_url``,
            ``token_uri``, ``scopes`` ...) and flow options the hook documents.
        session: the ``requests.Session`` every call goes through.
        timeout: (connect, read) seconds for each call.
        clock: the current time (UTC).
    """

    client_id: str
    client_secret: str | None = field(repr=False)
    redirect_uri: str
    options: Mapping[str, Any]
    session: Any
    timeout: tuple[float, float]
    clock: Callable[[], datetime]


@dataclass(frozen=True)
class WebAuthorization:
    """Where to send the browser, and what must be kept server-side until the callback.

    Attributes:
        url: the provider's authorization (or admin consent) URL, with ``state`` in it.
        flow: private, JSON-able data the hook needs back at the callback (the PKCE verifier,
            the nonce ...): stored with the state in the host's store, never sent to the browser.
    """

    url: str = field(repr=False)
    flow: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class WebGrant:
    """What a provider's callback handling produced.

    Attributes:
        tokens: the :class:`~mailparity.models.OAuthTokens` to store (None for app-only
            access, whose tokens the adapter gets itself).
        fields: config fields the sign-in settled (``client_id``, ``auth_mode``, ``scopes`` ...).
        mailbox: the address the provider says signed in (checked with ``test_connection``
            before anything is stored), or None when the grant names no mailbox (admin consent).
    """

    tokens: Any = field(default=None, repr=False)
    fields: Mapping[str, Any] = field(default_factory=dict)
    mailbox: str | None = None


@dataclass(frozen=True)
class WebConnectHook:
    """A provider's web sign-in (a spec's ``web_connect``), used by
    :class:`mailparity.webconnect.WebConnect`; the core keeps the state, the owner binding,
    the storing and the mailbox check, the hook only speaks the provider's OAuth dialect.

    Attributes:
        authorize: ``authorize(settings, state=, login_hint=) -> WebAuthorization``: the
            authorization URL (with PKCE S256) and the private flow data to keep.
        exchange: ``exchange(settings, params=, flow=) -> WebGrant``: redeem the code of the
            callback's query ``params`` (``state`` already checked, ``error`` already handled).
        admin_consent: for providers with tenant-wide consent of application access:
            ``admin_consent(settings, state=) -> WebAuthorization``; None when there is none.
        admin_grant: ``admin_grant(settings, params=, flow=) -> WebGrant`` (fields of an
            application-mode connection, no tokens, no mailbox); None when there is none.
        error_code: ``error_code(params) -> str | None``: the provider's own error code of a
            refused callback (an Entra ``AADSTS...`` code), shown beside the OAuth ``error``.
    """

    authorize: Callable[..., WebAuthorization]
    exchange: Callable[..., WebGrant]
    admin_consent: Callable[..., WebAuthorization] | None = None
    admin_grant: Callable[..., WebGrant] | None = None
    error_code: Callable[[Mapping[str, str]], str | None] | None = None


@runtime_checkable
class PushListener(Protocol):
    """A provider's long-running push source (for example IMAP IDLE).

    The spec's ``listener`` is a class called as
    ``listener(store, *, stop_event, clock=..., sleep=..., **options)`` (``store`` is the
    :class:`~mailparity.protocols.StateStore`; unknown options are ignored). It watches every
    active stored mailbox of its provider (mailboxes added later included) and turns what it
    hears into durable jobs with ``store.enqueue_job``, exactly like a webhook push; the
    Processor does the rest. It never publishes events itself.
    """

    def run(self) -> None:
        """Listen until ``stop_event`` is set; never raises for a mailbox's failure."""
        ...


@dataclass(frozen=True)
class ProviderTestKit:
    """A provider's part of the testing kit (a spec's ``testing``): what
    :mod:`mailparity.testing` and store contract suites need from the provider, so that the
    testing kit names no provider. It lives in the provider's package
    (``providers/<name>/testing.py``) and is imported only by tests.

    Attributes:
        sample_config: ``sample_config(**overrides)``: a config with every kind of field set
            (secrets, aware datetimes, the cursor), for store contract suites; each provider's
            sample has its own provider id and mailbox.
        cursor_values: two successive catch-up cursors (neither the sample's own), for the
            compare-and-set contract; None for a provider without a cursor.
        subscription_field: the config field holding the id pushes are routed by, or None.
        coercions: ``{field: (given, stored)}``: values a store must validate on update (a
            numeric string becomes a number, a naive datetime UTC, ...).
        invalid_values: ``{field: value}``: values a store must refuse on update.
        connect: ``connect(store, fake, mailbox=..., **options) -> config``: connect a mailbox
            of the provider's fake in ``store`` (None without a fake that can).
        fake: the fake's class (or its ``"module:Name"``), or None.
        handler_options: ``handler_options(fake)``: the ``WebhookHandler`` options that make it
            accept the fake's pushes (None when it needs none).
        exports: public names of :mod:`mailparity.testing.connect` this kit provides
            (``name -> "module:Name"``).
    """

    sample_config: Callable[..., ProviderConfigBase]
    cursor_values: tuple[Any, Any] | None = None
    subscription_field: str | None = None
    coercions: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    invalid_values: Mapping[str, Any] = field(default_factory=dict)
    connect: Callable[..., ProviderConfigBase] | None = None
    fake: Any = None
    handler_options: Callable[[Any], dict[str, Any]] | None = None
    exports: Mapping[str, str] = field(default_factory=dict)

    def fake_class(self) -> Any:
        """The fake's class (imported on first use), or None."""
        return None if self.fake is None else resolve(self.fake)

    def export(self, name: str) -> Any:
        """The object exported as ``name`` (imported on first use).

        Raises:
            KeyError: the kit exports no ``name``.
        """
        return resolve(self.exports[name])


@dataclass(frozen=True)
class ProviderSpec:
    """Everything the core needs to know about one provider (see the module docstring)."""

    key: str
    config_model: type[ProviderConfigBase]
    adapter: type[EmailProviderAdapter[Any]] | str
    title: str = ""
    push: Any = None
    #: The ``WebhookHandler`` keyword arguments the push source takes (for example
    #: ``google_audience``); they are passed to the push source's constructor.
    push_options: frozenset[str] = frozenset()
    renewal: RenewalRule | None = None
    cursor_field: str | None = None
    subscription_id: Callable[[Any], str | None] = _no_subscription
    #: ``stale_push(config, job_payload) -> bool``: the push a cursor job carries is already
    #: covered by the stored cursor (the job is done without calling the provider).
    stale_push: Callable[[Any, Mapping[str, Any]], bool] = _never_stale
    cli_connect: Any = None
    web_connect: Any = None
    #: The :class:`PushListener` class (or its ``"module:Name"``), or None.
    listener: Any = None
    #: The provider's own lifecycle event names -> the neutral ones
    #: (:data:`mailparity.pushing.LIFECYCLE_EVENTS`), or its ``"module:Name"``: lets a
    #: ``lifecycle`` job stored under a provider's own name run. None for most providers.
    lifecycle_aliases: Mapping[str, str] | str | None = None
    #: The provider's :class:`ProviderTestKit` (or its ``"module:Name"``), or None.
    testing: Any = None

    def __post_init__(self) -> None:
        if not self.key or not self.key.isascii() or not self.key.replace("_", "").isalnum():
            raise ValueError(f"a provider key is a short ASCII name, not {self.key!r}")
        if self.key != self.key.lower():
            raise ValueError(f"a provider key is lower case, not {self.key!r}")

    def adapter_class(self) -> type[EmailProviderAdapter[Any]]:
        """The adapter class (imported on first use)."""
        cls: type[EmailProviderAdapter[Any]] = resolve(self.adapter)
        return cls

    def push_source_class(self) -> Any:
        """The push source class, or None for a provider without webhooks."""
        return None if self.push is None else resolve(self.push)

    def cli_connect_hook(self) -> Any:
        """The CLI connect hook (``add_arguments(parser)`` and ``run(args, ctx)``), or None."""
        return None if self.cli_connect is None else resolve(self.cli_connect)

    def web_connect_hook(self) -> WebConnectHook | None:
        """The web connect hook (a :class:`WebConnectHook`), or None when the provider has no
        web sign-in."""
        if self.web_connect is None:
            return None
        hook: WebConnectHook = resolve(self.web_connect)
        return hook

    def listener_class(self) -> Any:
        """The push listener class (imported on first use), or None."""
        return None if self.listener is None else resolve(self.listener)

    def lifecycle_event(self, name: object) -> object:
        """The neutral lifecycle event ``name`` stands for (``name`` itself when it has no
        alias: a neutral name, or an unknown one the processor then ignores)."""
        if not isinstance(name, str) or self.lifecycle_aliases is None:
            return name
        aliases: Mapping[str, str] = resolve(self.lifecycle_aliases)
        return aliases.get(name, name)

    def testing_kit(self) -> ProviderTestKit | None:
        """The provider's testing kit (imported on first use), or None."""
        if self.testing is None:
            return None
        kit: ProviderTestKit = resolve(self.testing)
        return kit

    def renewal_settings(self) -> dict[str, timedelta]:
        """The renewal rule's default settings (empty without a rule)."""
        return dict(self.renewal.settings) if self.renewal is not None else {}
