"""Django signals for mailparity's events, and :class:`SignalPublisher`, the default publisher
of the Django app, which sends them.

::

    from django.dispatch import receiver
    from mailparity.contrib.django.signals import auth_failed, inbound_email_received

    @receiver(inbound_email_received)
    def open_ticket(sender, event, **kwargs):
        Ticket.objects.create(subject=event.email_data.subject, ...)

    @receiver(auth_failed)
    def ask_for_consent(sender, event, **kwargs):
        notify_admins(event.provider_id, event.error)

Each receiver gets ``event`` (an :class:`~mailparity.models.InboundEmailReceived` or an
:class:`~mailparity.models.EmailProviderAuthFailed`); ``sender`` is the event's class.
:data:`mailparity_event` is sent for every event, whatever its kind, after the signal of its kind.

Receivers run in the worker (or the web process that runs the job), inside no transaction of the
library's. A receiver that raises makes the publish fail: the job is retried later and the signal
is sent again with the same ``event.event_id`` (at-least-once delivery; make receivers idempotent,
e.g. a unique constraint on the event id).
"""

from __future__ import annotations

from django.dispatch import Signal

from ...errors import PublishError
from ...models import EmailProviderAuthFailed, InboundEmailReceived, MailParityEvent

__all__ = ["SignalPublisher", "auth_failed", "inbound_email_received", "mailparity_event"]

#: Sent for every ``INBOUND_EMAIL_RECEIVED`` event, with ``event=``.
inbound_email_received = Signal()
#: Sent for every ``EMAIL_PROVIDER_AUTH_FAILED`` event (a mailbox needs consent again).
auth_failed = Signal()
#: Sent for every event of any kind, after the signal of its kind.
mailparity_event = Signal()


class SignalPublisher:
    """An :class:`~mailparity.protocols.EventPublisher` that sends the Django signals.

    A receiver's exception fails the publish (raised as :class:`~mailparity.errors.PublishError`
    naming the exception's type), so the library retries the event later rather than losing it.
    """

    def __repr__(self) -> str:
        return "SignalPublisher()"

    def publish(self, event: MailParityEvent) -> None:
        """Send the signal of the event's kind, then :data:`mailparity_event`."""
        kind = (
            inbound_email_received
            if isinstance(event, InboundEmailReceived)
            else auth_failed
            if isinstance(event, EmailProviderAuthFailed)
            else None
        )
        try:
            if kind is not None:
                kind.send(sender=type(event), event=event)
            mailparity_event.send(sender=type(event), event=event)
        except Exception as exc:
            # The receiver's message may quote the email: only its type goes into the error.
            raise PublishError(
                f"a signal receiver raised {type(exc).__name__} for event {event.event_id}"
            ) from exc
