"""Provider packages. Provider quirks stay inside ``graph/`` and ``gmail/``; outside them, code sees
only the models. Provider modules are imported on first use to keep ``import mailparity`` cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..adapter import EmailProviderAdapter
    from ..protocols import AnyProviderConfig

__all__ = ["create_adapter"]


def create_adapter(config: AnyProviderConfig, **kwargs: Any) -> EmailProviderAdapter[Any]:
    """The adapter for ``config`` (``MicrosoftGraphAdapter`` or ``GmailAdapter``); ``kwargs`` are
    passed on (``store``, ``secrets``, ``session``, ``sleep``, ``clock`` ...)."""
    if config.provider == "microsoft":
        from .graph import MicrosoftGraphAdapter

        return MicrosoftGraphAdapter(config, **kwargs)
    from .gmail import GmailAdapter

    return GmailAdapter(config, **kwargs)
