"""The helpdesk's pages: the team's mailboxes (connect, disconnect) and its tickets."""

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from mailparity.contrib.django import get_store

from .accounts import team_of
from .models import Ticket, TicketAttachment

PROVIDERS = {"microsoft": "Microsoft 365", "google": "Gmail"}


def _team(request: HttpRequest) -> str:
    team = team_of(request)
    if team is None:  # login_required let nobody else in
        raise Http404
    return team


@login_required
def home(request: HttpRequest) -> HttpResponse:
    team = _team(request)
    mailboxes = [config for config in get_store().list_providers() if config.tenant == team]
    connect = [
        (title, reverse("mailparity:connect-start", args=[key]) + "?return_to=/")
        for key, title in PROVIDERS.items()
    ]
    tickets = Ticket.objects.filter(team=team).prefetch_related("attachments")
    return render(
        request,
        "helpdesk/home.html",
        {
            "mailboxes": mailboxes,
            "connect": connect,
            "tickets": tickets,
            "connected": request.GET.get("connected"),
        },
    )


@login_required
def attachment(request: HttpRequest, pk: int) -> FileResponse:
    found = get_object_or_404(TicketAttachment, pk=pk, ticket__team=_team(request))
    if not found.stored_as:
        raise Http404("this attachment was not saved")
    return FileResponse(
        default_storage.open(found.stored_as, "rb"),
        as_attachment=True,
        filename=found.name,
        content_type=found.content_type,
    )
