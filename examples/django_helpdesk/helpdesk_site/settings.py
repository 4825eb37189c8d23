"""Settings of the example helpdesk: a Django project on mailparity's Django app.

Everything deployment-specific comes from the environment (see README.md): the public URL the
providers call back, the OAuth clients, the Pub/Sub push identity.
"""

import os
from pathlib import Path
from typing import Any

import django

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("HELPDESK_SECRET_KEY", "dev-only-change-me")
DEBUG = os.environ.get("HELPDESK_DEBUG", "1") == "1"
#: The public URL of the helpdesk, as the providers reach it (https in production).
PUBLIC_URL = os.environ.get("HELPDESK_URL", "http://localhost:8000").rstrip("/")
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver", PUBLIC_URL.split("://")[-1]]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "mailparity.contrib.django",
    "helpdesk",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "helpdesk_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES: dict[str, Any] = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("HELPDESK_DB", str(BASE_DIR / "db.sqlite3")),
        # Writers wait for each other (the worker's threads and the web process share the
        # file). IMMEDIATE takes the write lock when a transaction starts: a transaction that
        # reads, then writes (get_or_create) would otherwise fail at once with "database is
        # locked" when another writer got there first.
        "OPTIONS": {"timeout": 30}
        | ({"transaction_mode": "IMMEDIATE"} if django.VERSION >= (5, 1) else {}),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
MEDIA_ROOT = os.environ.get("HELPDESK_MEDIA", str(BASE_DIR / "media"))
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

MAILPARITY: dict[str, Any] = {
    "PUSH": {
        # The Pub/Sub push subscription's audience and service account (Google setup).
        "google_audience": f"{PUBLIC_URL}/mail/webhooks/google",
        "google_service_accounts": [
            os.environ.get("HELPDESK_PUSH_ACCOUNT", "gmail-push@my-project.iam.gserviceaccount.com")
        ],
    },
    "ATTACHMENTS": {
        # Every attachment is saved to MEDIA_ROOT before the ticket is opened.
        "STORE": "mailparity.contrib.django.attachments.StorageAttachmentStore",
        "MAX_BYTES": 10 * 1024 * 1024,
    },
    "CONNECT": {
        "REDIRECT_URI": f"{PUBLIC_URL}/mail/connect/callback",
        # Client ids and secrets come from MICROSOFT_CLIENT_ID / MICROSOFT_CLIENT_SECRET and
        # GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET; these are the settings every connection gets.
        "PROVIDERS": {
            "microsoft": {"webhook_notification_url": f"{PUBLIC_URL}/mail/webhooks/microsoft"},
            "google": {
                "project_id": os.environ.get("HELPDESK_GCP_PROJECT", "my-project"),
                "pubsub_topic_name": os.environ.get("HELPDESK_PUBSUB_TOPIC", "gmail-inbound"),
            },
        },
        # A mailbox belongs to the signed-in agent's team.
        "OWNER": "helpdesk.accounts.team_of",
    },
    "WORKER": {"threads": 2},
}
