"""Gmail / Google Workspace: google-auth tokens, watch + Pub/Sub push, history, messages, labels.

Gmail quirks stay in this package; outside it, code sees only the models.
"""

from __future__ import annotations

from .adapter import GmailAdapter

__all__ = ["GmailAdapter"]
