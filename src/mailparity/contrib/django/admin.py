"""The admin: mailboxes with their health, read-only, and the job queue (retry, bury).

A mailbox row shows its provider, tenant and address, the last push received, the last event
published, when its subscription or watch expires and whether it needs consent again. Its
config (client secrets, clientState, service account keys) and its tokens are never shown: the
config column is not a field of the admin, and tokens have no admin at all. Mailboxes are
connected and disconnected through the web connect routes, not edited here (a half-edited config
would be worse than none).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import Max, OuterRef, Subquery

from ...maintenance import LAST_PUSH_META
from ...models import provider_config_from_dict
from ...providers import spec_for
from ...stores._common import from_micros, to_utc
from .models import DedupeKey, Job, Mailbox, MetaValue

__all__ = ["JobAdmin", "MailboxAdmin", "mailbox_health"]


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return to_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def mailbox_health(row: Mailbox) -> dict[str, Any]:
    """What the admin shows about ``row``'s health (no secret in it): ``subscription_expires``
    (datetime or None), ``auth`` (a short text). Read once per row (the columns share it)."""
    cached: dict[str, Any] | None = getattr(row, "_mailparity_health", None)
    if cached is None:
        cached = _health_of(row)
        row._mailparity_health = cached
    return cached


def _health_of(row: Mailbox) -> dict[str, Any]:
    try:
        config = provider_config_from_dict(json.loads(row.config))
    except Exception as exc:  # a row the current release cannot read: say so, show nothing
        return {"subscription_expires": None, "auth": f"unreadable ({type(exc).__name__})"}
    renewal = spec_for(config).renewal
    expires = renewal.state(config)[1] if renewal is not None else None
    auth = "ok"
    if config.needs_consent:
        code = config.auth_error_code
        auth = "needs consent" + (f" ({code})" if code else "")
    return {"subscription_expires": expires, "auth": auth}


def _stamp(value: datetime | None) -> str:
    return "-" if value is None else to_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):  # type: ignore[misc]
    """Connected mailboxes and their health, read-only; never a secret."""

    list_display = (
        "mailbox",
        "provider",
        "tenant",
        "provider_id",
        "last_push",
        "last_event",
        "subscription_expires",
        "auth_state",
    )
    list_filter = ("provider", "tenant")
    search_fields = ("mailbox", "provider_id", "tenant")
    # Only these: the config column (secrets) is never a field of a form or a page.
    fields = (
        "provider_id",
        "provider",
        "tenant",
        "mailbox",
        "subscription_id",
        "last_push",
        "last_event",
        "subscription_expires",
        "auth_state",
    )
    readonly_fields = fields

    def get_queryset(self, request: Any) -> Any:
        pushes = MetaValue.objects.filter(
            provider_id=OuterRef("provider_id"), key=LAST_PUSH_META
        ).values("value")[:1]
        events = (
            DedupeKey.objects.filter(provider_id=OuterRef("provider_id"))
            .order_by()
            .values("provider_id")
            .annotate(latest=Max("published_at_us"))
            .values("latest")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(last_push_text=Subquery(pushes), last_event_us=Subquery(events))
        )

    @admin.display(description="last push")
    def last_push(self, row: Any) -> str:
        return _stamp(_parse_time(getattr(row, "last_push_text", None)))

    @admin.display(description="last event")
    def last_event(self, row: Any) -> str:
        micros = getattr(row, "last_event_us", None)
        return _stamp(None if micros is None else from_micros(micros))

    @admin.display(description="subscription expires")
    def subscription_expires(self, row: Mailbox) -> str:
        expires = mailbox_health(row)["subscription_expires"]
        return _stamp(expires)

    @admin.display(description="auth")
    def auth_state(self, row: Mailbox) -> str:
        return str(mailbox_health(row)["auth"])

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        # Deleting the row alone would leave the subscription, tokens and jobs behind:
        # disconnecting is the connect flow's (or the command line's) job.
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):  # type: ignore[misc]
    """The job queue: read-only rows, and two actions for stuck work (those of ``mailparity jobs
    retry|bury``, :mod:`mailparity.jobs_admin`), for users with the ``change_job``
    permission."""

    list_display = ("id", "kind", "provider_id", "status", "attempts", "due", "last_error")
    list_filter = ("status", "kind")
    search_fields = ("id", "provider_id")
    fields = ("id", "kind", "provider_id", "status", "attempts", "due", "worker_id", "last_error")
    readonly_fields = fields
    actions = ("retry_jobs", "bury_jobs")

    def has_operate_permission(self, request: Any) -> bool:
        return bool(request.user.has_perm("mailparity.change_job"))

    def _run(self, request: Any, queryset: Any, verb: str, operation: Any) -> None:
        from ...jobs_admin import JobAdminError
        from .store import DjangoStore

        store = DjangoStore(using=queryset.db)
        done, refused = 0, []
        for job_id in queryset.values_list("id", flat=True):
            try:
                operation(store, job_id)
                done += 1
            except JobAdminError as exc:
                refused.append(str(exc))
        self.message_user(request, f"{done} job(s) {verb}.")
        for reason in refused:
            self.message_user(request, reason, level=messages.WARNING)

    @admin.action(description="Run the selected jobs again now", permissions=["operate"])
    def retry_jobs(self, request: Any, queryset: Any) -> None:
        from ...jobs_admin import retry

        self._run(request, queryset, "retried", retry)

    @admin.action(description="Give up on the selected pending jobs", permissions=["operate"])
    def bury_jobs(self, request: Any, queryset: Any) -> None:
        from ...jobs_admin import bury

        reason = f"from the admin by {request.user.get_username()}"
        self._run(
            request, queryset, "buried", lambda store, job_id: bury(store, job_id, reason=reason)
        )

    @admin.display(description="due", ordering="available_at_us")
    def due(self, row: Job) -> str:
        return _stamp(row.available_at)

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
