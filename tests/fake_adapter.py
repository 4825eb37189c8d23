"""A fake EmailProviderAdapter for the processing and worker tests.

The state lives in a :class:`FakeMailbox` (shared by every adapter the processor builds for the
same provider), so tests can seed messages, schedule failures and read counters while the
processor creates and caches adapters through :class:`FakeAdapterFactory`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import SecretStr

from mailparity.adapter import EmailProviderAdapter, SyncBatch
from mailparity.errors import NotFoundError
from mailparity.models import (
    ConnectionTestResult,
    EmailAddress,
    EmailBody,
    EmailMessage,
    GmailProviderConfig,
    MicrosoftProviderConfig,
    OAuthTokens,
    WebhookSubscription,
)

AnyConfig = MicrosoftProviderConfig | GmailProviderConfig
Failure = BaseException | Callable[[], None]


def make_message(
    config: AnyConfig, message_id: str, *, rfc_id: str | None = None, subject: str = "Hello"
) -> EmailMessage:
    """A complete normalized message of ``config``'s mailbox."""
    return EmailMessage(
        id=message_id,
        provider=config.provider,
        provider_id=config.provider_id,
        tenant=config.tenant,
        mailbox=config.mailbox,
        received_at=datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc),
        subject=subject,
        from_=EmailAddress(email="sender@example.com", name="Sender"),  # type: ignore[call-arg]
        to=[EmailAddress(email=config.mailbox)],
        body=EmailBody(text=f"body of {message_id}"),
        message_id=rfc_id if rfc_id is not None else f"<{message_id}@example.com>",
    )


class FakeMailbox:
    """Messages, scheduled failures, a sync cursor and call counters of one fake mailbox.

    * ``fail(call, key, *errors)``: the next calls of ``call`` (``"get"``, ``"mark"``,
      ``"fetch_changes"``, ``"commit"``, ``"register"``, ``"renew"``, ``"reauthorize"``) for
      ``key`` (a message id, or ``"*"`` for calls without one) raise these errors in order.
      ``fail_always`` makes every call raise.
    * ``changes``: the message ids the next ``fetch_changes`` returns; ``cursor`` /
      ``next_cursor``: the committed cursor and the one the batch carries.
    * ``calls``: a Counter of ``(call, key)``; ``max_concurrent``: the most ``get`` calls that were
      in progress at once; ``on_get``: a hook run inside ``get`` (to hold threads there).
    """

    def __init__(self, config: AnyConfig) -> None:
        self.config = config
        self.messages: dict[str, EmailMessage] = {}
        self.failures: dict[tuple[str, str], list[Failure]] = {}
        self.always: dict[tuple[str, str], BaseException] = {}
        self.calls: Counter[tuple[str, str]] = Counter()
        self.changes: list[str] = []
        self.cursor: int = 100
        self.next_cursor: int = 100
        self.commits: list[Any] = []
        self.marked: list[str] = []
        self.on_get: Callable[[str], None] | None = None
        self.in_flight = 0
        self.max_concurrent = 0
        self.adapters_built = 0
        #: Whether its adapters have ``reauthorize_subscription`` (Graph's do).
        self.reauthorize = config.provider == "microsoft"
        self._lock = threading.Lock()

    def add(self, message_id: str, *, rfc_id: str | None = None) -> EmailMessage:
        message = make_message(self.config, message_id, rfc_id=rfc_id)
        self.messages[message_id] = message
        return message

    def fail(self, call: str, key: str, *errors: Failure) -> None:
        self.failures.setdefault((call, key), []).extend(errors)

    def fail_always(self, call: str, key: str, error: BaseException) -> None:
        self.always[(call, key)] = error

    def heal(self, call: str, key: str) -> None:
        self.always.pop((call, key), None)
        self.failures.pop((call, key), None)

    def count(self, call: str, key: str = "*") -> int:
        return self.calls[(call, key)]

    def hit(self, call: str, key: str = "*") -> None:
        """Count the call, then raise its scheduled failure, if any."""
        with self._lock:
            self.calls[(call, key)] += 1
            if (call, key) in self.always:
                raise self.always[(call, key)]
            queue = self.failures.get((call, key))
            failure = queue.pop(0) if queue else None
        if failure is None:
            return
        if isinstance(failure, BaseException):
            raise failure
        failure()


class FakeAdapter(EmailProviderAdapter[Any]):
    """An adapter over a :class:`FakeMailbox`; no HTTP at all."""

    def __init__(self, config: AnyConfig, *, mailbox: FakeMailbox, **kwargs: Any) -> None:
        self.provider = config.provider
        super().__init__(config, **kwargs)
        self.box = mailbox

    def _refresh(self, tokens: OAuthTokens | None) -> OAuthTokens:
        expires_at = self.clock() + timedelta(hours=1)
        return OAuthTokens(access_token=SecretStr("fake"), expires_at=expires_at)

    def register_webhook_subscription(self) -> WebhookSubscription:
        self.box.hit("register")
        return WebhookSubscription(id="sub-new", expires_at=self.clock() + timedelta(days=2))

    def renew_webhook_subscription(self) -> WebhookSubscription:
        self.box.hit("renew")
        return WebhookSubscription(id="sub-1", expires_at=self.clock() + timedelta(days=2))

    def delete_webhook_subscription(self) -> None:
        self.box.hit("delete")

    def process_webhook_notification(self, notification: Mapping[str, Any]) -> list[str]:
        return [str(notification.get("id"))]

    def get_message_details(self, message_id: str) -> EmailMessage:
        box = self.box
        with box._lock:
            box.in_flight += 1
            box.max_concurrent = max(box.max_concurrent, box.in_flight)
        try:
            if box.on_get is not None:
                box.on_get(message_id)
            box.hit("get", message_id)
            message = box.messages.get(message_id)
            if message is None:
                raise NotFoundError("message not found", status=404, code="ErrorItemNotFound")
            return message
        finally:
            with box._lock:
                box.in_flight -= 1

    def get_attachment_content(self, message_id: str, attachment_id: str) -> bytes:
        return b""

    def mark_message_processed(self, message_id: str) -> None:
        self.box.hit("mark", message_id)
        self.box.marked.append(message_id)

    def test_connection(self) -> ConnectionTestResult:
        return ConnectionTestResult(success=True, mailbox=self.config.mailbox)

    def fetch_changes(self) -> SyncBatch:
        self.box.hit("fetch_changes")
        return SyncBatch(list(self.box.changes), self.box.next_cursor, expected=self.box.cursor)

    def commit_cursor(self, batch: SyncBatch) -> bool:
        self.box.hit("commit")
        with self.box._lock:
            if self.box.cursor != batch.expected:
                return False
            self.box.cursor = batch.cursor
            self.box.commits.append(batch.cursor)
            return True


class FakeGraphAdapter(FakeAdapter):
    """The fake with Graph's ``reauthorize_subscription``."""

    def reauthorize_subscription(self) -> None:
        self.box.hit("reauthorize")


class FakeAdapterFactory:
    """``adapter_factory`` for the Processor: one FakeMailbox per provider id."""

    def __init__(self, *mailboxes: FakeMailbox, graph_reauthorize: bool = True) -> None:
        self.boxes = {box.config.provider_id: box for box in mailboxes}
        self.graph_reauthorize = graph_reauthorize
        self.built = 0

    def __call__(self, config: AnyConfig, **kwargs: Any) -> FakeAdapter:
        box = self.boxes[config.provider_id]
        box.adapters_built += 1
        self.built += 1
        if box.reauthorize and self.graph_reauthorize:
            return FakeGraphAdapter(config, mailbox=box, **kwargs)
        return FakeAdapter(config, mailbox=box, **kwargs)
