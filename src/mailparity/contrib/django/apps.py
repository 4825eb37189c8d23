"""The Django app: ``"mailparity.contrib.django"`` in ``INSTALLED_APPS`` (app label
``mailparity``) brings the ORM store's models and migrations, the admin, the management commands
and the ``MAILPARITY`` setting, checked when Django starts."""

from __future__ import annotations

from django.apps import AppConfig


class MailparityConfig(AppConfig):  # type: ignore[misc]
    """The mailparity Django app."""

    name = "mailparity.contrib.django"
    label = "mailparity"
    verbose_name = "Mailparity"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A wrong MAILPARITY setting fails at start-up (runserver, migrate, the worker), with
        # the key it is about, rather than on the first webhook.
        from django.core import checks

        from .checks import check_sqlite_database
        from .conf import mailparity_settings

        mailparity_settings()
        checks.register(check_sqlite_database, checks.Tags.database)
