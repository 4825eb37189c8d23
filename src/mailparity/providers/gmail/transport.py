"""Gmail's flavour of the shared HTTP layer: which answers are retried and how errors map.

Google's error body is ``{"error": {"code", "message", "status", "errors": [{"reason", ...}]}}``.
Gmail signals throttling two ways: 429 (per-user concurrency, bandwidth) and 403 with reason
``rateLimitExceeded`` / ``userRateLimitExceeded``. Both are retried; every other 403 is a real
permission problem and is not. Google asks clients to start retrying at least one second after the
error, so the first wait is never shorter than that (the shared client's jitter could go lower).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import requests

from ...errors import MailParityError, ProviderUnavailableError, ThrottledError
from ...http import HttpClient, default_map_error, parse_retry_after

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = [
    "RATE_LIMIT_REASONS",
    "GmailHttpClient",
    "error_reason",
    "is_gmail_retryable",
    "map_gmail_error",
]

#: 403 reasons that mean "slow down" (retried), per Gmail's error guide.
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
#: 403 reasons that are quota exhaustion: reported as throttling but not retried in-call
#: (they last minutes to hours, so the job layer should come back later).
QUOTA_REASONS = frozenset({"dailyLimitExceeded", "quotaExceeded"})
#: 5xx answers worth another attempt besides the shared 503/504 (Gmail's ``backendError`` is 500).
RETRY_5XX = frozenset({500, 502})
#: Never wait less than this before retrying a Gmail call.
MIN_RETRY_DELAY = 1.0


def _error_body(response: requests.Response) -> Mapping[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            return err
    return None


def error_reason(response: requests.Response) -> str | None:
    """The first ``errors[].reason`` of a Google error body, or None."""
    err = _error_body(response)
    if err is None:
        return None
    errors = err.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, Mapping) and isinstance(item.get("reason"), str):
                return str(item["reason"])
    return None


def is_gmail_retryable(response: requests.Response) -> bool:
    """Extra retry rule: throttling 403s and Gmail's transient 500/502."""
    if response.status_code in RETRY_5XX:
        return True
    return response.status_code == 403 and error_reason(response) in RATE_LIMIT_REASONS


def map_gmail_error(response: requests.Response) -> MailParityError:
    """Map a Gmail error response: the shared mapping, with throttling 403s as ThrottledError."""
    error = default_map_error(response, "google")
    throttling = RATE_LIMIT_REASONS | QUOTA_REASONS
    if response.status_code == 403 and error_reason(response) in throttling:
        return ThrottledError(
            error.message,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            status=error.status,
            code=error.code,
            request_id=error.request_id,
            provider="google",
        )
    return error


class GmailHttpClient(HttpClient):
    """The shared client with Gmail's retry rules and a one-second floor on every wait."""

    def _wait(self, state: RetryCallState) -> float:
        return max(MIN_RETRY_DELAY, super()._wait(state))


def fake_response(
    status: int, body: bytes, headers: Mapping[str, str] | None = None, url: str = ""
) -> requests.Response:
    """A ``requests.Response`` for an answer that did not come over the wire on its own (a part of
    a batch response), so that it can go through the same error mapping."""
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(dict(headers or {}))
    response.url = url
    response.encoding = "utf-8"
    return response


def json_or_empty(response: requests.Response) -> dict[str, Any]:
    """The JSON object of a response body; {} for an empty body (``users.stop``). A body that is
    not a JSON object is a provider fault (a proxy's HTML page, a truncated answer)."""
    if not response.content:
        return {}
    try:
        data = json.loads(response.content)
    except ValueError:
        raise ProviderUnavailableError(
            f"Gmail answered HTTP {response.status_code} with a body that is not JSON",
            status=response.status_code,
            provider="google",
        ) from None
    if not isinstance(data, dict):
        raise ProviderUnavailableError(
            "Gmail answered with JSON that is not an object", status=response.status_code,
            provider="google",
        )
    return data
