"""mailparity's signals become tickets."""

import logging
from typing import Any

from django.db import transaction
from django.dispatch import receiver

from mailparity.contrib.django.signals import auth_failed, inbound_email_received
from mailparity.models import EmailProviderAuthFailed, InboundEmailReceived

from .models import Ticket, TicketAttachment

log = logging.getLogger(__name__)


@receiver(inbound_email_received)
def open_ticket(sender: type, event: InboundEmailReceived, **kwargs: Any) -> None:
    """One ticket per email. Delivery is at-least-once: a second delivery of the same event
    finds its ticket and does nothing."""
    email = event.email_data
    with transaction.atomic():
        ticket, created = Ticket.objects.get_or_create(
            event_id=event.event_id,
            defaults={
                "team": event.tenant_id,
                "provider_id": event.provider_id,
                "mailbox": email.mailbox,
                "subject": email.subject,
                "requester": email.from_.email,
                "body": email.body.text,
                "received_at": email.received_at,
            },
        )
        if created:
            TicketAttachment.objects.bulk_create(
                TicketAttachment(
                    ticket=ticket,
                    name=attachment.name,
                    content_type=attachment.content_type,
                    size=attachment.size,
                    stored_as=attachment.stored_as or "",
                )
                for attachment in email.attachments
            )


@receiver(auth_failed)
def mailbox_needs_consent(sender: type, event: EmailProviderAuthFailed, **kwargs: Any) -> None:
    """The mailbox must be connected again (the admin shows it as "needs consent")."""
    log.warning("mailbox %s of %s needs consent again: %s", event.mailbox, event.tenant_id,
                event.error)
