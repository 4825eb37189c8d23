"""Graph error bodies to the library's exception tree.

Graph answers ``{"error": {"code", "message", "innerError": {"request-id", ...}}}``. The generic
status mapping of :func:`mailparity.http.default_map_error` is refined here by the codes that
matter to mail processing; match on codes, never on messages (they change and are localized).
"""

from __future__ import annotations

import requests

from ...errors import (
    CursorExpiredError,
    MailParityError,
    NotFoundError,
    PermissionDeniedError,
)
from ...http import default_map_error

__all__ = ["graph_map_error"]

#: Codes meaning "this item does not exist (any more)" whatever status carried them.
_NOT_FOUND_CODES = frozenset(
    {"erroritemnotfound", "itemnotfound", "errorinvalididmalformed", "resourcenotfound"}
)
#: Codes meaning "the delta token is gone: sync that folder again".
_CURSOR_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
#: Codes meaning "the app may not read this mailbox" (application access policy, no licence).
_DENIED_CODES = frozenset({"erroraccessdenied", "accessdenied", "mailboxnotenabledforrestapi"})


def graph_map_error(response: requests.Response) -> MailParityError:
    """Map a Graph error response to an exception carrying status, code and request id."""
    error = default_map_error(response, "microsoft")
    code = (error.code or "").lower()
    kwargs = {
        "status": error.status,
        "code": error.code,
        "request_id": error.request_id,
        "provider": "microsoft",
    }
    if code in _CURSOR_CODES and not isinstance(error, CursorExpiredError):
        return CursorExpiredError(error.message, **kwargs)  # type: ignore[arg-type]
    if code in _NOT_FOUND_CODES and not isinstance(error, NotFoundError):
        return NotFoundError(error.message, **kwargs)  # type: ignore[arg-type]
    if code in _DENIED_CODES and error.status in (403, 404):
        # MailboxNotEnabledForRESTAPI comes as 404 for unlicensed / on-premises mailboxes: the
        # mailbox exists, the app cannot reach it, so it is a permission problem, not a missing id.
        return PermissionDeniedError(error.message, **kwargs)  # type: ignore[arg-type]
    return error
