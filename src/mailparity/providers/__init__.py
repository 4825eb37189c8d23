"""The provider registry: every provider the library knows, by key.

The core asks this registry (``get_spec(config.provider)``) and never names a provider; provider
quirks stay inside their package (``graph/``, ``gmail/``). Adding a provider is a package exposing a
:class:`~mailparity.providers.base.ProviderSpec` plus one line: either in :data:`BUILTIN` below
(for a provider shipped with the library) or a call to :func:`register` (for one shipped
elsewhere). See ``docs/adding-a-provider.md``.

Provider packages are imported on first use, so ``import mailparity`` stays cheap; their adapter
modules (msal, google-auth, ...) load only when an adapter is built.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

# The models first: they re-export the provider configs, which import the models' base class.
# Importing them here makes any entry point (``import mailparity.providers.graph.config``) load
# them in that order.
from .. import models as _models  # noqa: F401  (import order, see above)
from .base import ProviderSpec, RenewalRule

if TYPE_CHECKING:
    from ..adapter import EmailProviderAdapter
    from ..models import ProviderConfigBase

__all__ = [
    "BUILTIN",
    "ProviderSpec",
    "RenewalRule",
    "config_from_dict",
    "create_adapter",
    "get_spec",
    "is_registered",
    "provider_keys",
    "register",
    "spec_for",
    "specs",
    "unregister",
]

#: The providers shipped with the library: key -> the package whose ``SPEC`` describes it.
BUILTIN: Mapping[str, str] = {
    "microsoft": "mailparity.providers.graph",
    "google": "mailparity.providers.gmail",
    "imap": "mailparity.providers.imap",
}

_lock = threading.RLock()
_registry: dict[str, ProviderSpec] = {}
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    with _lock:
        if _builtins_loaded:
            return
        for key, module_name in BUILTIN.items():
            spec = importlib.import_module(module_name).SPEC
            if spec.key != key:
                raise RuntimeError(f"{module_name}.SPEC has key {spec.key!r}, expected {key!r}")
            _registry.setdefault(key, spec)
        _builtins_loaded = True


def register(spec: ProviderSpec, *, replace: bool = False) -> ProviderSpec:
    """Add ``spec`` to the registry and return it.

    Raises:
        ValueError: a different spec is already registered under ``spec.key`` (pass
            ``replace=True`` to swap it, e.g. in tests).
    """
    _load_builtins()
    with _lock:
        current = _registry.get(spec.key)
        if current is not None and current is not spec and not replace:
            raise ValueError(f"a provider {spec.key!r} is already registered")
        _registry[spec.key] = spec
    return spec


def unregister(key: str) -> None:
    """Remove the provider ``key`` (a no-op when it is not registered). Built-in providers come
    back on the next lookup only if they were never removed: this is meant for tests."""
    _load_builtins()
    with _lock:
        _registry.pop(key, None)


def get_spec(key: str) -> ProviderSpec:
    """The spec registered under ``key``.

    Raises:
        ConfigurationError: no provider is registered under ``key``.
    """
    _load_builtins()
    spec = _registry.get(key)
    if spec is None:
        from ..errors import ConfigurationError

        raise ConfigurationError(
            f"unknown provider {key!r}; registered: {', '.join(sorted(_registry)) or 'none'}"
        )
    return spec


def spec_for(config: ProviderConfigBase) -> ProviderSpec:
    """The spec of ``config``'s provider (``get_spec(config.provider)``)."""
    return get_spec(config.provider)


def specs() -> list[ProviderSpec]:
    """Every registered spec, built-in ones first, then in registration order."""
    _load_builtins()
    with _lock:
        return list(_registry.values())


def is_registered(key: str) -> bool:
    """Whether a provider is registered under ``key`` (cheap: one dict lookup)."""
    if not _builtins_loaded:
        _load_builtins()
    return key in _registry


def provider_keys() -> tuple[str, ...]:
    """The keys of every registered provider."""
    return tuple(spec.key for spec in specs())


def create_adapter(config: ProviderConfigBase, **kwargs: Any) -> EmailProviderAdapter[Any]:
    """The adapter for ``config`` (the class its provider's spec names); ``kwargs`` are passed on
    (``store``, ``secrets``, ``session``, ``sleep``, ``clock`` ...)."""
    return spec_for(config).adapter_class()(config, **kwargs)


def config_from_dict(data: Mapping[str, Any]) -> ProviderConfigBase:
    """Validate ``data`` with the config model of the provider ``data["provider"]`` names.

    Raises:
        ConfigurationError: ``provider`` is missing or names no registered provider.
    """
    key = data.get("provider")
    if not isinstance(key, str) or not key:
        from ..errors import ConfigurationError

        raise ConfigurationError("a provider config needs its 'provider' key")
    return get_spec(key).config_model.model_validate(data)
