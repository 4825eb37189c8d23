"""The helpdesk app: its signal receivers are connected when Django starts."""

from django.apps import AppConfig


class HelpdeskConfig(AppConfig):
    name = "helpdesk"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects the receivers)
