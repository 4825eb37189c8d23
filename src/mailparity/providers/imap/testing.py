"""The IMAP provider's part of the testing kit (the spec's ``testing`` hook): a sample config
for store contract suites. (The IMAP fake, :class:`~mailparity.testing.fake_imap.FakeImap`, is a
server; a mailbox is connected to it by saving a config with its host and port.)
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from ..base import ProviderTestKit
from .config import ImapProviderConfig

__all__ = ["KIT", "sample_config"]


def sample_config(**overrides: Any) -> ImapProviderConfig:
    """A config with a password, a CONDSTORE cursor and non-default settings."""
    values: dict[str, Any] = {
        "provider_id": "imap-1",
        "tenant": "tenant-c",
        "mailbox": "Desk@Example.net",
        "host": "imap.example.net",
        "port": 993,
        "username": "desk",
        "password": SecretStr("imap-app-password"),
        "folder": "INBOX",
        "processed_strategy": "keyword",
        "imap_cursor": {"uidvalidity": 7, "uid": 41, "modseq": 1200},
    }
    values.update(overrides)
    return ImapProviderConfig(**values)


KIT = ProviderTestKit(
    sample_config=sample_config,
    cursor_values=(
        {"uidvalidity": 7, "uid": 50, "modseq": 1300},
        {"uidvalidity": 8, "uid": 3},
    ),
    coercions={"port": ("143", 143)},
    invalid_values={"port": 0},
)
