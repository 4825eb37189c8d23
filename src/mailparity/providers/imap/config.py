"""The IMAP mailbox connection: :class:`ImapProviderConfig`.

Kept free of the IMAP client library: the provider registry loads it whenever a stored config is
read, with or without the ``imap`` extra installed.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import Field, SecretStr, field_serializer, model_validator

from ...models import ProviderConfigBase

__all__ = ["DEFAULT_PORTS", "ImapProviderConfig", "is_loopback"]

#: The default port of each security mode (RFC 8314: implicit TLS on 993).
DEFAULT_PORTS = {"ssl": 993, "starttls": 143, "none": 143}


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (the only place a cleartext connection is allowed)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ImapProviderConfig(ProviderConfigBase):
    """An IMAP mailbox connection (a folder of one account on one server).

    Sign-in is a password (an app password, usually) or XOAUTH2 with tokens of Microsoft
    (Outlook / Exchange Online over IMAP) or Google (Gmail over IMAP), refreshed with the same
    token code as the Graph and Gmail adapters. TLS is on and verified by default.

    The catch-up cursor is ``imap_cursor``: ``{"uidvalidity": int, "uid": int}`` plus
    ``"modseq"`` where the server has CONDSTORE; it moves only after every message up to it was
    published.
    """

    provider: Literal["imap"] = "imap"
    host: str
    #: None: the default of ``security`` (993 for ``ssl``, 143 otherwise).
    port: int | None = Field(default=None, ge=1, le=65535)
    #: ``ssl``: implicit TLS (IMAPS); ``starttls``: STARTTLS required (refused if the server
    #: does not offer it); ``none``: cleartext, allowed only to a loopback address.
    security: Literal["ssl", "starttls", "none"] = "ssl"
    verify_certificate: bool = True
    #: A PEM file of extra trust anchors (a private CA, a self-signed server certificate).
    ca_file: str | None = None
    #: The login name; None means ``mailbox``.
    username: str | None = None
    password: SecretStr | None = None
    auth_method: Literal["password", "xoauth2"] = "password"
    #: Who issues the XOAUTH2 tokens (their refresh uses that provider's token code).
    oauth_issuer: Literal["microsoft", "google"] | None = None
    authority_tenant: str = "common"
    login_base_url: str = "https://login.microsoftonline.com"
    token_uri: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
    oauth_scopes: list[str] = Field(default_factory=list)
    #: The folder that is watched (IDLE) and read.
    folder: str = "INBOX"
    #: ``seen``: set \Seen; ``keyword``: set ``processed_keyword``; ``move``: MOVE (or COPY,
    #: \Deleted and expunge where the server lacks MOVE) to ``processed_folder``.
    processed_strategy: Literal["none", "seen", "keyword", "move"] = "none"
    processed_keyword: str = "$MailParityProcessed"
    processed_folder: str | None = None
    #: Messages larger than this are delivered with their headers only (flagged in ``defects``).
    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    #: After a UIDVALIDITY change, this many of the newest messages are read again (Message-ID
    #: dedupe keeps the ones already delivered from being published twice).
    resync_limit: int = Field(default=200, ge=0)
    #: Seconds a command may take before the connection is given up on.
    timeout: float = Field(default=60.0, gt=0)
    #: The catch-up cursor (see the class docstring).
    imap_cursor: dict[str, int] | None = None

    @model_validator(mode="after")
    def _check(self) -> ImapProviderConfig:
        if self.security == "none" and not is_loopback(self.host):
            raise ValueError(
                "security='none' sends the password in clear: allowed only to a loopback address"
            )
        if self.processed_strategy == "move" and not self.processed_folder:
            raise ValueError("processed_strategy='move' needs processed_folder")
        if self.auth_method == "xoauth2" and self.oauth_issuer is None:
            raise ValueError("auth_method='xoauth2' needs oauth_issuer ('microsoft' or 'google')")
        return self

    @field_serializer("password", when_used="json")
    def _mask_password(self, value: SecretStr | None) -> str | None:
        return None if value is None else "**********"

    @property
    def effective_port(self) -> int:
        """The port to connect to."""
        return self.port or DEFAULT_PORTS[self.security]

    @property
    def login_name(self) -> str:
        """The IMAP login name."""
        return self.username or self.mailbox

    def server_key(self) -> str:
        """``host:port``: what connections are counted by."""
        return f"{self.host.lower()}:{self.effective_port}"

    def connection_fingerprint(self) -> tuple[Any, ...]:
        """What a live connection depends on (not the cursor): a change means reconnecting."""
        return (
            self.host, self.effective_port, self.security, self.verify_certificate, self.ca_file,
            self.login_name, self.password.get_secret_value() if self.password else None,
            self.auth_method, self.folder, self.needs_consent, self.active,
        )
