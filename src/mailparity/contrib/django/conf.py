"""The ``MAILPARITY`` setting, validated, and the :class:`~mailparity.App` built from it.

::

    # settings.py
    INSTALLED_APPS = [..., "mailparity.contrib.django"]
    MAILPARITY = {
        "PUBLISHER": "helpdesk.events.publisher",   # default: Django signals
        "SECRETS": "helpdesk.secrets.TenantSecrets",
        "PUSH": {"google_audience": "https://help.example.com/mail/webhooks/google",
                 "google_service_accounts": ["push@project.iam.gserviceaccount.com"]},
        "RETENTION": {"dedupe_days": 45, "dead_jobs_days": 30},
        "WORKER": {"threads": 4},
        "NOTIFY": "helpdesk.celery.mailparity",     # with Celery: work starts at once
    }

Every key is optional. A wrong setting raises ``ImproperlyConfigured`` naming the key, when
Django starts (the app's ``ready()``) rather than on the first webhook.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ...app import App
from ...maintenance import RetentionPolicy
from ...protocols import EventPublisher, SecretStore, StateStore

if TYPE_CHECKING:
    from ...webconnect import WebConnect

__all__ = [
    "SETTING",
    "ConnectSettings",
    "MailparitySettings",
    "build_app",
    "build_web_connect",
    "connect_hook",
    "get_app",
    "get_store",
    "mailparity_settings",
    "parse_settings",
    "reset",
]

#: The name of the Django setting.
SETTING = "MAILPARITY"

#: Each key of the setting and what it takes.
_KEYS: dict[str, str] = {
    "STORE": '"django" (the ORM store, default), "memory", or the dotted path of a StateStore',
    "DATABASE": "the database alias of the ORM store (default: 'default')",
    "PUBLISHER": "the dotted path of an EventPublisher (default: Django signals)",
    "SECRETS": "the dotted path of a SecretStore (default: none)",
    "PUSH": "a dict of WebhookHandler options (google_audience, max_body_bytes ...)",
    "PROCESSOR": "a dict of Processor options (retry_cap, lease_seconds ...)",
    "RENEWAL": "a dict of Maintenance options (silence_after, lock_seconds ...)",
    "RETENTION": "a dict of days (dedupe_days, done_jobs_days, dead_jobs_days,"
    " message_meta_days), or None to keep everything",
    "WORKER": "a dict of Worker options (threads, poll_interval, per_mailbox_limit ...)",
    "HEALTH": "a dict: require_worker (bool), heartbeat_max_age_seconds (number)",
    "ATTACHMENTS": "a dict: STORE (the dotted path of an AttachmentStore), MAX_BYTES",
    "CONNECT": "a dict: REDIRECT_URI, PROVIDERS (a dict per provider key), OWNER and"
    " ON_CONNECTED (dotted paths), STATE_TTL_SECONDS, SUBSCRIBE",
    "NOTIFY": "the dotted path of the Celery integration (what mailparity.contrib.celery"
    ".configure returned), or of a function called with each webhook answer",
}

_RETENTION_KEYS = {
    "dedupe_days": "dedupe",
    "done_jobs_days": "done_jobs",
    "dead_jobs_days": "dead_jobs",
    "message_meta_days": "message_meta",
}


@dataclass(frozen=True)
class ConnectSettings:
    """``MAILPARITY["CONNECT"]``: the web connect flow's settings (see the Django guide)."""

    redirect_uri: str | None = None
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    owner: str | None = None
    on_connected: str | None = None
    state_ttl: timedelta = timedelta(minutes=10)
    subscribe: bool = True


@dataclass(frozen=True)
class MailparitySettings:
    """The ``MAILPARITY`` setting after validation (defaults filled in)."""

    store: str = "django"
    database: str = "default"
    publisher: str | None = None
    secrets: str | None = None
    push: Mapping[str, Any] = field(default_factory=dict)
    processor: Mapping[str, Any] = field(default_factory=dict)
    renewal: Mapping[str, Any] = field(default_factory=dict)
    retention: RetentionPolicy | None = field(default_factory=RetentionPolicy)
    worker: Mapping[str, Any] = field(default_factory=dict)
    require_worker: bool = True
    heartbeat_max_age: timedelta = timedelta(minutes=5)
    connect: ConnectSettings = field(default_factory=ConnectSettings)
    attachment_store: str | None = None
    attachment_max_bytes: int | None = None
    notify: str | None = None


def _fail(key: str, problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{SETTING}[{key!r}] {problem}; expected {_KEYS[key]}")


def _dict(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise _fail(key, f"is a {type(value).__name__}")
    bad = [name for name in value if not isinstance(name, str) or not name.isidentifier()]
    if bad:
        raise _fail(key, f"has keys that are not option names: {bad!r}")
    return dict(value)


def _dotted(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or "." not in value:
        raise _fail(key, f"is {value!r}, not a dotted path")
    return value


def _days(key: str, name: str, value: Any) -> timedelta:
    if isinstance(value, timedelta):
        days = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        days = timedelta(days=value)
    else:
        raise _fail(key, f"[{name!r}] is {value!r}, not a number of days")
    if days <= timedelta(0):
        raise _fail(key, f"[{name!r}] is {value!r}, not a positive number of days")
    return days


def _retention(raw: Mapping[str, Any]) -> RetentionPolicy | None:
    if "RETENTION" in raw and raw["RETENTION"] is None:
        return None
    options = _dict(raw, "RETENTION")
    unknown = sorted(set(options) - set(_RETENTION_KEYS))
    if unknown:
        raise _fail("RETENTION", f"has unknown keys {unknown}")
    periods = {
        _RETENTION_KEYS[name]: _days("RETENTION", name, value) for name, value in options.items()
    }
    return RetentionPolicy(**periods)


def _health(raw: Mapping[str, Any]) -> tuple[bool, timedelta]:
    options = _dict(raw, "HEALTH")
    unknown = sorted(set(options) - {"require_worker", "heartbeat_max_age_seconds"})
    if unknown:
        raise _fail("HEALTH", f"has unknown keys {unknown}")
    require = options.get("require_worker", True)
    if not isinstance(require, bool):
        raise _fail("HEALTH", f"['require_worker'] is {require!r}, not True or False")
    age = options.get("heartbeat_max_age_seconds", 300)
    if isinstance(age, bool) or not isinstance(age, (int, float)) or age <= 0:
        raise _fail("HEALTH", f"['heartbeat_max_age_seconds'] is {age!r}, not a positive number")
    return require, timedelta(seconds=age)


_CONNECT_KEYS = {
    "REDIRECT_URI", "PROVIDERS", "OWNER", "ON_CONNECTED", "STATE_TTL_SECONDS", "SUBSCRIBE",
}


def _connect(raw: Mapping[str, Any]) -> ConnectSettings:
    value = raw.get("CONNECT") or {}
    if not isinstance(value, Mapping):
        raise _fail("CONNECT", f"is a {type(value).__name__}")
    unknown = sorted(str(key) for key in value if key not in _CONNECT_KEYS)
    if unknown:
        raise _fail("CONNECT", f"has unknown keys {unknown}")
    redirect = value.get("REDIRECT_URI")
    if redirect is not None and (
        not isinstance(redirect, str) or not redirect.startswith(("https://", "http://"))
    ):
        raise _fail("CONNECT", f"['REDIRECT_URI'] is {redirect!r}, not an http(s) URL")
    providers = value.get("PROVIDERS") or {}
    if not isinstance(providers, Mapping) or not all(
        isinstance(key, str) and isinstance(options, Mapping)
        for key, options in providers.items()
    ):
        raise _fail("CONNECT", "['PROVIDERS'] is not a dict of provider key -> dict of settings")
    ttl = value.get("STATE_TTL_SECONDS", 600)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0:
        raise _fail("CONNECT", f"['STATE_TTL_SECONDS'] is {ttl!r}, not a positive number")
    subscribe = value.get("SUBSCRIBE", True)
    if not isinstance(subscribe, bool):
        raise _fail("CONNECT", f"['SUBSCRIBE'] is {subscribe!r}, not True or False")
    dotted = {}
    for name in ("OWNER", "ON_CONNECTED"):
        path = value.get(name)
        if path is not None and (not isinstance(path, str) or "." not in path):
            raise _fail("CONNECT", f"[{name!r}] is {path!r}, not a dotted path")
        dotted[name] = path
    return ConnectSettings(
        redirect_uri=redirect,
        providers={key: dict(options) for key, options in providers.items()},
        owner=dotted["OWNER"],
        on_connected=dotted["ON_CONNECTED"],
        state_ttl=timedelta(seconds=ttl),
        subscribe=subscribe,
    )


def _attachments(raw: Mapping[str, Any]) -> tuple[str | None, int | None]:
    options = _dict(raw, "ATTACHMENTS")
    unknown = sorted(set(options) - {"STORE", "MAX_BYTES"})
    if unknown:
        raise _fail("ATTACHMENTS", f"has unknown keys {unknown}")
    store = options.get("STORE")
    if store is not None and (not isinstance(store, str) or "." not in store):
        raise _fail("ATTACHMENTS", f"['STORE'] is {store!r}, not a dotted path")
    limit = options.get("MAX_BYTES")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise _fail("ATTACHMENTS", f"['MAX_BYTES'] is {limit!r}, not a positive whole number")
    return store, limit


def parse_settings(raw: Any) -> MailparitySettings:
    """Validate a ``MAILPARITY`` value (a dict, or None for every default).

    Raises:
        ImproperlyConfigured: naming the key that is wrong and what it takes.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"{SETTING} must be a dict of options, not a {type(raw).__name__}"
        )
    unknown = sorted(str(key) for key in raw if key not in _KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"{SETTING} has unknown keys {unknown}; the keys are {sorted(_KEYS)}"
        )
    store = raw.get("STORE", "django")
    if not isinstance(store, str) or not (store in ("django", "memory") or "." in store):
        raise _fail("STORE", f"is {store!r}")
    database = raw.get("DATABASE", "default")
    databases = getattr(settings, "DATABASES", {}) or {}
    if not isinstance(database, str) or (store == "django" and database not in databases):
        raise _fail("DATABASE", f"is {database!r}, which is not in settings.DATABASES")
    require_worker, heartbeat = _health(raw)
    attachments = _attachments(raw)
    worker = _dict(raw, "WORKER")
    threads = worker.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise _fail("WORKER", f"['threads'] is {threads!r}, not a whole number of at least 1")
    return MailparitySettings(
        store=store,
        database=database,
        publisher=_dotted(raw, "PUBLISHER"),
        secrets=_dotted(raw, "SECRETS"),
        push=_dict(raw, "PUSH"),
        processor=_dict(raw, "PROCESSOR"),
        renewal=_dict(raw, "RENEWAL"),
        retention=_retention(raw),
        worker=worker,
        require_worker=require_worker,
        heartbeat_max_age=heartbeat,
        connect=_connect(raw),
        attachment_store=attachments[0],
        attachment_max_bytes=attachments[1],
        notify=_dotted(raw, "NOTIFY"),
    )


def mailparity_settings() -> MailparitySettings:
    """The validated ``MAILPARITY`` setting of the running project."""
    return parse_settings(getattr(settings, SETTING, None))


def _load(key: str, path: str) -> Any:
    """The object at ``path``: a class or factory is called without arguments, anything else
    (an instance) is used as it is."""
    try:
        target = import_string(path)
    except ImportError as exc:
        raise _fail(key, f"cannot be imported ({exc})") from None
    if isinstance(target, type) or inspect.isfunction(target):
        # A class, or a factory function returning the object.
        return target()
    return target


def notify_target(config: MailparitySettings) -> object | None:
    """What ``MAILPARITY["NOTIFY"]`` names (used as it is, never called to build it), or None:
    the webhook views pass it as ``notify=`` (see :func:`mailparity.webhooks.notify_hook`)."""
    if config.notify is None:
        return None
    try:
        target: object = import_string(config.notify)
    except ImportError as exc:
        raise _fail("NOTIFY", f"cannot be imported ({exc})") from None
    return target


def _build_store(config: MailparitySettings) -> StateStore:
    if config.store == "django":
        from .store import DjangoStore

        return DjangoStore(using=config.database)
    if config.store == "memory":
        from ...stores.memory import InMemoryStore

        return InMemoryStore()
    store: StateStore = _load("STORE", config.store)
    return store


def _build_publisher(config: MailparitySettings) -> EventPublisher:
    if config.publisher is None:
        from .signals import SignalPublisher

        return SignalPublisher()
    publisher: EventPublisher = _load("PUBLISHER", config.publisher)
    return publisher


def build_app(config: MailparitySettings | None = None, **overrides: Any) -> App:
    """A new :class:`~mailparity.App` for ``config`` (the project's setting by default).

    ``overrides`` go to ``App`` as they are (``store=``, ``publisher=``, ``secrets=``,
    ``clock=``, ``sleep=``, ``session=``, ``adapter_factory=`` ...): what tests inject."""
    config = config or mailparity_settings()
    store = overrides.pop("store", None) or _build_store(config)
    publisher = overrides.pop("publisher", None) or _build_publisher(config)
    secrets: SecretStore | None = overrides.pop("secrets", None)
    if secrets is None and config.secrets is not None:
        secrets = _load("SECRETS", config.secrets)
    renewal = {"retention": config.retention, **config.renewal}
    processor: dict[str, Any] = dict(config.processor)
    if config.attachment_store is not None and "attachment_store" not in overrides:
        processor["attachment_store"] = _load("ATTACHMENTS", config.attachment_store)
    if config.attachment_max_bytes is not None:
        processor["attachment_max_bytes"] = config.attachment_max_bytes
    try:
        return App(
            store,
            publisher,
            secrets=secrets,
            push=config.push,
            renewal=renewal,
            **{**processor, **overrides},
        )
    except TypeError as exc:  # not a publisher: name the setting
        raise ImproperlyConfigured(f"{SETTING}['PUBLISHER']: {exc}") from None


def build_web_connect(redirect_uri: str, config: MailparitySettings | None = None) -> WebConnect:
    """A :class:`~mailparity.webconnect.WebConnect` on :func:`get_app`'s store, secrets, session,
    clock and sleep, with ``MAILPARITY["CONNECT"]``; ``redirect_uri`` is used when the setting
    names none (the URL of the callback route, from the request)."""
    from ...webconnect import WebConnect

    global _connect_session
    config = config or mailparity_settings()
    app = get_app()
    session = app.session
    if session is None:
        with _lock:
            # One pooled session for the process's connect flows (each request builds its
            # WebConnect: the redirect URI may come from the request).
            if _connect_session is None:
                _connect_session = requests.Session()
            session = _connect_session
    return WebConnect(
        app.store,
        redirect_uri=config.connect.redirect_uri or redirect_uri,
        providers=config.connect.providers or None,
        secrets=app.secrets,
        session=session,
        clock=app.clock,
        state_ttl=config.connect.state_ttl,
        subscribe=config.connect.subscribe,
        adapter_options={"sleep": app.sleep},
    )


def connect_hook(name: str, config: MailparitySettings | None = None) -> Any:
    """The function ``MAILPARITY["CONNECT"][name]`` names (``OWNER``, ``ON_CONNECTED``), or
    None."""
    config = config or mailparity_settings()
    path = config.connect.owner if name == "OWNER" else config.connect.on_connected
    if path is None:
        return None
    try:
        return import_string(path)
    except ImportError as exc:
        raise _fail("CONNECT", f"[{name!r}] cannot be imported ({exc})") from None


_lock = threading.Lock()
_app: App | None = None
_connect_session: requests.Session | None = None


def get_app() -> App:
    """The project's :class:`~mailparity.App`, built from ``MAILPARITY`` on first use and shared
    by the URLs, the management commands and the admin (one store, one publisher)."""
    global _app
    with _lock:
        if _app is None:
            _app = build_app()
        return _app


def get_store() -> StateStore:
    """The store of :func:`get_app`."""
    return get_app().store


def reset(app: App | None = None) -> None:
    """Forget the shared app (the next :func:`get_app` builds it again), or install ``app`` as
    it: for tests, and done automatically when ``override_settings`` changes ``MAILPARITY``."""
    global _app
    with _lock:
        _app = app


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in (SETTING, "DATABASES"):
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="mailparity-settings-changed")
