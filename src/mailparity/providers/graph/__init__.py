"""Microsoft Graph: msal tokens, subscriptions, notifications, messages, delta.

Graph quirks stay in this package; outside it, code sees only the models.
"""

from __future__ import annotations

from .adapter import MicrosoftGraphAdapter

__all__ = ["MicrosoftGraphAdapter"]
