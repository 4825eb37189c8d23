"""A ticket per email, with its attachments as mailparity saved them."""

from django.db import models


class Ticket(models.Model):
    #: The event's id: the same email delivered twice (at-least-once) opens one ticket.
    event_id = models.CharField(max_length=64, unique=True)
    team = models.CharField(max_length=255, db_index=True)
    provider_id = models.CharField(max_length=255)
    mailbox = models.CharField(max_length=320)
    subject = models.CharField(max_length=998)
    requester = models.CharField(max_length=320)
    body = models.TextField()
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return str(self.subject or "(no subject)")


class TicketAttachment(models.Model):
    ticket = models.ForeignKey(Ticket, related_name="attachments", on_delete=models.CASCADE)
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255)
    size = models.BigIntegerField()
    #: Where the attachment store saved it (a name in Django's default storage), or "".
    stored_as = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return str(self.name)
