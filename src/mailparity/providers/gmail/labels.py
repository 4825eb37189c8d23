"""Label names to ids, and the processed label.

System labels (``INBOX``, ``UNREAD``, ``CATEGORY_*`` ...) are their own ids and need no lookup;
user labels are found by id or name in one ``labels.list`` per adapter (names compared without
case, as Gmail refuses two labels differing only in case), created on demand for the processed
label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...errors import BadRequestError, ConfigurationError

__all__ = ["SYSTEM_LABELS", "LabelCache"]

SYSTEM_LABELS = frozenset(
    {
        "INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "SENT", "DRAFT", "CHAT",
        "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES",
        "CATEGORY_FORUMS",
    }
)

#: ``(method, path, json body) -> response JSON``; the adapter's authorized Gmail call.
Caller = Callable[[str, str, Any], dict[str, Any]]


class LabelCache:
    """Label lookups of one mailbox, listed once and kept for the adapter's lifetime."""

    def __init__(self, call: Caller) -> None:
        self._call = call
        self._by_id: dict[str, str] | None = None  # id -> name

    def _load(self, *, force: bool = False) -> dict[str, str]:
        if self._by_id is None or force:
            data = self._call("GET", "labels", None)
            labels = data.get("labels") or []
            self._by_id = {
                str(item["id"]): str(item.get("name") or item["id"])
                for item in labels
                if isinstance(item, Mapping) and isinstance(item.get("id"), str)
            }
        return self._by_id

    def _find(self, wanted: str, labels: Mapping[str, str]) -> str | None:
        if wanted in labels:
            return wanted
        for label_id, name in labels.items():
            if name == wanted:
                return label_id
        lowered = wanted.lower()
        for label_id, name in labels.items():
            if name.lower() == lowered:
                return label_id
        return None

    def resolve(self, names: Iterable[str]) -> list[str]:
        """Ids of the ``label_filters`` (names or ids); ConfigurationError for an unknown one."""
        out: list[str] = []
        for raw in names:
            name = raw.strip()
            if not name:
                continue
            if name.upper() in SYSTEM_LABELS:
                label_id: str | None = name.upper()
            else:
                label_id = self._find(name, self._load())
            if label_id is None:
                raise ConfigurationError(
                    f"Gmail label {name!r} of label_filters does not exist in the mailbox",
                    provider="google",
                )
            if label_id not in out:
                out.append(label_id)
        return out

    def ensure(self, name: str) -> str:
        """The id of the user label ``name``, creating it when missing."""
        if not name.strip():
            raise ConfigurationError("processed_label is empty", provider="google")
        if name.upper() in SYSTEM_LABELS:
            return name.upper()
        found = self._find(name, self._load())
        if found is not None:
            return found
        try:
            created = self._call(
                "POST",
                "labels",
                {"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show"},
            )
        except BadRequestError as exc:
            # 409 (or 400 "Label name exists or conflicts"): another worker created it first.
            if exc.status not in (400, 409):
                raise
            found = self._find(name, self._load(force=True))
            if found is None:
                raise
            return found
        label_id = created.get("id")
        if not isinstance(label_id, str):
            raise BadRequestError("labels.create answered without an id", provider="google")
        self._load()[label_id] = name
        return label_id
