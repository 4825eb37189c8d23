"""The Django app's web connect routes (``include("mailparity.contrib.django.urls")``), through
Django's test client, end to end against FakeGraph and FakeGmail on the ORM store: a mailbox of
each provider connected and disconnected, and every bad input answered with a clear page and
nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import responses

from mailparity.testing import FakeGmail, FakeGraph
from mailparity.webconnect import ConnectResult
from webconnect_support import (
    CALLBACK,
    G_BOX,
    G_SECRET,
    MS_BOX,
    MS_SECRET,
    authorize,
    make_fakes,
    provider_settings,
)

django_support = pytest.importorskip("django_support")
django_support.configure()

from django.test import Client, override_settings  # noqa: E402

from mailparity.contrib.django import conf  # noqa: E402
from mailparity.contrib.django.store import DjangoStore  # noqa: E402

BOXES = {"microsoft": MS_BOX, "google": G_BOX}
CONNECTED: list[ConnectResult] = []


def owner_from_header(request: Any) -> str | None:
    """The test's OWNER hook: who is signed in, from a header."""
    value = request.headers.get("X-User")
    return str(value) if value else None


def record_connected(result: ConnectResult) -> None:
    """The test's ON_CONNECTED hook."""
    CONNECTED.append(result)


@dataclass
class Site:
    graph: FakeGraph
    gmail: FakeGmail
    store: DjangoStore
    client: Client = field(default_factory=Client)

    def get(self, path: str, user: str | None = "user-1", **headers: str) -> Any:
        if user:
            headers["X-User"] = user
        return self.client.get(path, headers=headers)

    def sign_in(self, provider: str, user: str = "user-1", **query: str) -> dict[str, str]:
        """Start through the route and sign in at the fake: the callback's query."""
        suffix = f"?{urlencode(query)}" if query else ""
        started = self.get(f"/mail/connect/{provider}{suffix}", user)
        assert started.status_code == 302, started.content
        status, back, _ = authorize(started["Location"], fake_user=BOXES[provider])
        assert status == 302
        return back

    def callback(self, query: dict[str, str], user: str | None = "user-1", **headers: str) -> Any:
        return self.get(f"/mail/connect/callback?{urlencode(query)}", user, **headers)


def _setting(graph: FakeGraph, gmail: FakeGmail, **connect: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "REDIRECT_URI": CALLBACK,
        "PROVIDERS": provider_settings(graph, gmail),
        "OWNER": f"{__name__}.owner_from_header",
        "ON_CONNECTED": f"{__name__}.record_connected",
    }
    values.update(connect)
    return {"CONNECT": {k: v for k, v in values.items() if v is not None}}


@pytest.fixture
def site() -> Iterator[Site]:
    alias = django_support.migrated("default")
    django_support.clear_tables(alias)
    CONNECTED.clear()
    graph, gmail = make_fakes()
    with (
        responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
        override_settings(MAILPARITY=_setting(graph, gmail)),
    ):
        graph.register(mock)
        gmail.register(mock)
        store = DjangoStore(alias)
        conf.reset(conf.build_app(store=store, sleep=lambda seconds: None))
        try:
            yield Site(graph, gmail, store)
        finally:
            conf.reset()
    django_support.clear_tables(alias)


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_a_mailbox_is_connected_through_the_routes(site: Site, provider: str) -> None:
    back = site.sign_in(provider)
    page = site.callback(back)
    assert page.status_code == 200, page.content
    assert f"{BOXES[provider]} is connected" in page.content.decode()
    assert page["Cache-Control"] == "no-store"
    [config] = site.store.list_providers()
    assert config.provider == provider
    assert config.mailbox == BOXES[provider]
    assert config.tenant == "user-1"
    assert site.store.load_tokens(config.provider_id) is not None
    [result] = CONNECTED
    assert result.provider_id == config.provider_id
    assert result.subscription is not None  # subscription / watch created
    body = page.content.decode()
    for secret in (MS_SECRET, G_SECRET, back["code"], back["state"]):
        assert secret not in body


def test_return_to_and_json_answers(site: Site) -> None:
    back = site.sign_in("google", return_to="/settings/mail")
    answer = site.callback(back)
    assert answer.status_code == 303
    assert answer["Location"].startswith("/settings/mail?connected=")
    reused = site.callback(back, Accept="application/json")
    assert reused.status_code == 400
    assert reused.json()["error"] == "state_reused"


def test_bad_callbacks_get_a_clear_page_and_store_nothing(site: Site) -> None:
    back = site.sign_in("microsoft")
    missing = site.callback({"code": back["code"]})
    assert missing.status_code == 400
    assert "This connect link cannot be used" in missing.content.decode()
    other_owner = site.callback(back, user="user-2", Accept="application/json")
    assert other_owner.status_code == 400
    assert other_owner.json()["error"] == "owner_mismatch"
    signed_out = site.callback(back, user=None)
    assert signed_out.status_code == 401
    started = site.get("/mail/connect/google")
    status, declined, _ = authorize(started["Location"], fake_decline="1")
    assert status == 302
    denied = site.callback(declined, Accept="application/json")
    assert denied.status_code == 400
    assert denied.json()["error"] == "access_denied"
    assert site.store.list_providers() == []
    assert CONNECTED == []


def test_start_refuses_the_signed_out_and_unknown_providers(site: Site) -> None:
    assert site.get("/mail/connect/google", user=None).status_code == 401
    unknown = site.get("/mail/connect/carrier-pigeon", Accept="application/json")
    assert unknown.status_code == 404
    assert site.client.post("/mail/connect/google", headers={"X-User": "u"}).status_code == 405


def test_admin_consent_starts_at_the_consent_page(site: Site) -> None:
    started = site.get("/mail/connect/microsoft/admin-consent?mailbox=support%40contoso.test")
    assert started.status_code == 302
    assert "/adminconsent" in urlsplit(started["Location"]).path
    query = dict(parse_qsl(urlsplit(started["Location"]).query))
    assert query["redirect_uri"] == CALLBACK
    assert site.get("/mail/connect/google/admin-consent").status_code == 404


def test_disconnect_is_a_post_of_the_owner_from_this_site(site: Site) -> None:
    site.callback(site.sign_in("google"))
    [config] = site.store.list_providers()
    url = f"/mail/connect/{config.provider_id}/disconnect"
    assert site.get(url).status_code == 405
    # Django's CSRF protection applies: a form post needs the token.
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(url, headers={"X-User": "user-1"}).status_code == 403
    cross = site.client.post(
        url, headers={"X-User": "user-1", "Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert site.client.post(url, headers={"X-User": "user-2"}).status_code in (403, 404)
    assert site.store.get_provider(config.provider_id) is not None
    gone = site.client.post(
        url, headers={"X-User": "user-1", "Accept": "application/json"}
    )
    assert gone.status_code == 200, gone.content
    assert gone.json()["status"] == "disconnected"
    assert gone.json()["push_stopped"] is True
    assert site.store.get_provider(config.provider_id) is None
    assert site.store.load_tokens(config.provider_id) is None
    again = site.client.post(url, {"return_to": "/settings/mail"}, headers={"X-User": "user-1"})
    assert again.status_code == 404


def test_without_settings_the_redirect_uri_and_owner_come_from_the_request(site: Site) -> None:
    from django.contrib.auth.models import User

    with override_settings(
        MAILPARITY=_setting(site.graph, site.gmail, REDIRECT_URI=None, OWNER=None),
        ALLOWED_HOSTS=["helpdesk.test"],
    ):
        conf.reset(conf.build_app(store=site.store))
        anonymous = site.client.get("/mail/connect/google", secure=True, HTTP_HOST="helpdesk.test")
        assert anonymous.status_code == 401
        user = User.objects.create(username="agent-7")
        try:
            site.client.force_login(user)
            started = site.client.get(
                "/mail/connect/google", secure=True, HTTP_HOST="helpdesk.test"
            )
            assert started.status_code == 302
            query = dict(parse_qsl(urlsplit(started["Location"]).query))
            assert query["redirect_uri"] == CALLBACK  # https://helpdesk.test/mail/connect/...
            status, back, _ = authorize(started["Location"], fake_user=G_BOX)
            assert status == 302
            done = site.client.get(
                f"/mail/connect/callback?{urlencode(back)}", secure=True, HTTP_HOST="helpdesk.test"
            )
            assert done.status_code == 200, done.content
            [config] = site.store.list_providers()
            assert config.tenant == str(user.pk)
        finally:
            site.client.logout()
            user.delete()
