"""Tickets in the admin (mailparity's own admin lists the mailboxes and their health)."""

from django.contrib import admin

from .models import Ticket, TicketAttachment


class TicketAttachmentInline(admin.TabularInline):
    model = TicketAttachment
    extra = 0


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = ("subject", "requester", "mailbox", "team", "received_at")
    inlines = [TicketAttachmentInline]
