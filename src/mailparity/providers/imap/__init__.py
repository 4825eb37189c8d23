"""IMAP: password or XOAUTH2 sign-in, IDLE push (a listener), UID catch-up, raw MIME.

IMAP quirks stay in this package; outside it, code sees only the models and the registry's
:data:`SPEC`. The client library (``imapclient``) is the ``imap`` extra, imported when an adapter
or the listener is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import ProviderSpec
from .config import ImapProviderConfig

if TYPE_CHECKING:
    from .adapter import ImapAdapter

__all__ = ["SPEC", "ImapAdapter", "ImapProviderConfig"]

#: The registry entry of IMAP (key ``"imap"``). No webhooks and nothing to renew: pushes come
#: from the IDLE listener (``mailparity listen``); the catch-up cursor is ``imap_cursor``.
SPEC = ProviderSpec(
    key="imap",
    testing="mailparity.providers.imap.testing:KIT",
    title="IMAP (password or XOAUTH2; IDLE push)",
    config_model=ImapProviderConfig,
    adapter="mailparity.providers.imap.adapter:ImapAdapter",
    cursor_field="imap_cursor",
    cli_connect="mailparity.providers.imap.connect:CLI_CONNECT",
    listener="mailparity.providers.imap.listener:ImapListener",
)


def __getattr__(name: str) -> Any:
    if name == "ImapAdapter":
        from .adapter import ImapAdapter

        return ImapAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
