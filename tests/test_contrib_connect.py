"""The web connect routes of the Flask and FastAPI integrations, through each framework's test
client, end to end against FakeGraph and FakeGmail: every bad input gets a clear page (or JSON)
and stores nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from requests.structures import CaseInsensitiveDict

from conftest import FakeClock
from mailparity.webconnect import ConnectResult
from webconnect_support import G_BOX, MS_BOX, MS_SECRET, Env, authorize, environment

BOXES = {"microsoft": MS_BOX, "google": G_BOX}
OTHER = {"microsoft": "someone.else@contoso.test", "google": "other@example.test"}
JSON = {"Accept": "application/json"}
BASE = "https://helpdesk.test"


@dataclass
class Answer:
    status: int
    headers: CaseInsensitiveDict[str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)

    def location_query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.headers["Location"]).query, keep_blank_values=True))


class Client(Protocol):
    def get(self, path: str, headers: dict[str, str]) -> Answer: ...

    def post(self, path: str, headers: dict[str, str], form: dict[str, str]) -> Answer: ...


class FlaskClient:
    def __init__(self, env: Env, hook: Callable[[ConnectResult], None]) -> None:
        flask = pytest.importorskip("flask")
        from mailparity.contrib.flask import connect_blueprint

        app = flask.Flask("helpdesk")
        app.register_blueprint(
            connect_blueprint(env.connect, owner=lambda: flask.request.headers.get("X-User"),
                              on_connected=hook),
            url_prefix="/mail",
        )
        self.client = app.test_client()

    def get(self, path: str, headers: dict[str, str]) -> Answer:
        response = self.client.get(path, headers=headers, base_url=BASE)
        return Answer(response.status_code, CaseInsensitiveDict(dict(response.headers)),
                      response.get_data(as_text=True))

    def post(self, path: str, headers: dict[str, str], form: dict[str, str]) -> Answer:
        response = self.client.post(path, headers=headers, data=form, base_url=BASE)
        return Answer(response.status_code, CaseInsensitiveDict(dict(response.headers)),
                      response.get_data(as_text=True))


class FastApiClient:
    def __init__(self, env: Env, hook: Callable[[ConnectResult], None]) -> None:
        fastapi = pytest.importorskip("fastapi")
        from fastapi.testclient import TestClient

        from mailparity.contrib.fastapi import connect_router

        async def owner(request: Any) -> str | None:
            value = request.headers.get("x-user")
            return str(value) if value else None

        app = fastapi.FastAPI()
        app.include_router(
            connect_router(env.connect, owner=owner, on_connected=hook),
            prefix="/mail",
        )
        self.client = TestClient(app, base_url=BASE, follow_redirects=False)

    def get(self, path: str, headers: dict[str, str]) -> Answer:
        response = self.client.get(path, headers=headers)
        return Answer(response.status_code, CaseInsensitiveDict(dict(response.headers)),
                      response.text)

    def post(self, path: str, headers: dict[str, str], form: dict[str, str]) -> Answer:
        response = self.client.post(path, headers=headers, data=form)
        return Answer(response.status_code, CaseInsensitiveDict(dict(response.headers)),
                      response.text)


@dataclass
class Site:
    env: Env
    client: Client
    connected: list[ConnectResult]
    clock: FakeClock
    fails: list[bool] = field(default_factory=list)

    def start(self, provider: str, user: str = "user-1", **query: str) -> Answer:
        suffix = f"?{urlencode(query)}" if query else ""
        return self.client.get(f"/mail/connect/{provider}{suffix}", {"X-User": user})

    def sign_in(self, provider: str, user: str = "user-1", as_: str | None = None,
                **query: str) -> dict[str, str]:
        """Start through the route and sign in at the fake: the callback's query."""
        started = self.start(provider, user, **query)
        assert started.status == 302
        status, back, _ = authorize(started.headers["Location"],
                                    fake_user=as_ or BOXES[provider])
        assert status == 302
        return back

    def callback(self, query: dict[str, str], user: str = "user-1",
                 accept: str = "text/html") -> Answer:
        return self.client.get(f"/mail/connect/callback?{urlencode(query)}",
                               {"X-User": user, "Accept": accept})


@pytest.fixture(params=["flask", "fastapi"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    clock = FakeClock()
    connected: list[ConnectResult] = []
    fails: list[bool] = []

    def hook(result: ConnectResult) -> None:
        connected.append(result)
        if fails:
            raise RuntimeError("a bug of the host")

    with environment(clock=clock) as env:
        kind = FlaskClient if request.param == "flask" else FastApiClient
        site = Site(env, kind(env, hook), connected, clock)
        site.fails = fails
        yield site


def nothing_stored(site: Site) -> None:
    assert site.env.store.list_providers() == []
    assert site.connected == []


def refused(answer: Answer, status: int, code: str, *hidden: str) -> None:
    assert answer.status == status, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    for value in (*hidden, MS_SECRET):
        assert value not in answer.text
    if answer.headers["Content-Type"].startswith("application/json"):
        assert answer.json()["error"] == code
    else:
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "<h1>" in answer.text


# ---------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_connect_through_the_routes(site: Site, provider: str) -> None:
    started = site.start(provider, return_to="/settings/mail")
    assert started.status == 302
    assert "code_challenge_method=S256" in started.headers["Location"]
    status, query, _ = authorize(started.headers["Location"], fake_user=BOXES[provider])
    assert status == 302
    done = site.callback(query)
    assert done.status == 303
    assert done.headers["Location"].startswith("/settings/mail?connected=")
    provider_id = done.location_query()["connected"]
    config = site.env.store.get_provider(provider_id)
    assert config is not None
    assert config.mailbox == BOXES[provider]
    assert [result.provider_id for result in site.connected] == [provider_id]


def test_callback_page_html_and_json(site: Site) -> None:
    page = site.callback(site.sign_in("google"))
    assert page.status == 200
    assert "help@example.test is connected." in page.text
    answer = site.callback(site.sign_in("microsoft"), accept="application/json")
    assert answer.status == 200
    data = answer.json()
    assert data["status"] == "connect"
    assert data["mailbox"] == MS_BOX
    assert data["provider_id"] == "microsoft-support-contoso-test"
    assert data["subscription_error"] is None


def test_admin_consent_route(site: Site) -> None:
    started = site.client.get(f"/mail/connect/microsoft/admin-consent?mailbox={MS_BOX}",
                              {"X-User": "user-1"})
    assert started.status == 302
    assert "/v2.0/adminconsent?" in started.headers["Location"]
    _, query, _ = authorize(started.headers["Location"])
    answer = site.callback(query, accept="application/json")
    assert answer.status == 200
    assert answer.json()["mailbox"] == MS_BOX
    config = site.env.store.get_provider(answer.json()["provider_id"])
    assert config is not None
    assert config.auth_mode == "application"  # type: ignore[union-attr]


# ---------------------------------------------------------------------- bad input


def test_signed_out(site: Site) -> None:
    refused(site.client.get("/mail/connect/google", {"Accept": "application/json"}), 401,
            "not_signed_in")
    query = site.sign_in("google")
    refused(site.client.get(f"/mail/connect/callback?{urlencode(query)}", {}), 401,
            "not_signed_in", query["code"])
    nothing_stored(site)


def test_unknown_provider(site: Site) -> None:
    answer = site.client.get("/mail/connect/imap", {"X-User": "u", **JSON})
    refused(answer, 404, "ConfigurationError")
    refused(site.client.get("/mail/connect/nope", {"X-User": "u", **JSON}), 404,
            "ConfigurationError")


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_missing_state(site: Site, accept: str) -> None:
    query = site.sign_in("microsoft")
    code = query.pop("state")
    answer = site.callback(query, accept=accept)
    refused(answer, 400, "state_missing", code, query["code"])
    assert "no state" in answer.text
    nothing_stored(site)


def test_reused_state(site: Site) -> None:
    query = site.sign_in("google")
    assert site.callback(query).status == 200
    again = site.callback(query, accept="application/json")
    refused(again, 400, "state_reused", query["state"], query["code"])
    assert len(site.env.store.list_providers()) == 1


def test_expired_state(site: Site) -> None:
    query = site.sign_in("microsoft")
    site.clock.now += timedelta(minutes=11)
    refused(site.callback(query, accept="application/json"), 400, "state_expired",
            query["state"])
    nothing_stored(site)


def test_state_of_another_user(site: Site) -> None:
    query = site.sign_in("google", user="alice")
    refused(site.callback(query, user="mallory", accept="application/json"), 400,
            "owner_mismatch")
    nothing_stored(site)


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_provider_error(site: Site, provider: str) -> None:
    started = site.start(provider)
    _, query, _ = authorize(started.headers["Location"], fake_user=BOXES[provider],
                            fake_decline="1")
    assert query["error"] == "access_denied"
    answer = site.callback(query)
    refused(answer, 400, "access_denied", query["state"])
    assert "declined" in answer.text
    nothing_stored(site)


def test_injected_error_text_is_not_shown(site: Site) -> None:
    query = site.sign_in("google")
    forged = {"state": query["state"], "error": "<img src=x onerror=alert(1)>",
              "error_description": "<script>steal()</script>"}
    answer = site.callback(forged)
    refused(answer, 400, "error")
    assert "<script>" not in answer.text
    assert "<img" not in answer.text
    nothing_stored(site)


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_wrong_mailbox(site: Site, provider: str) -> None:
    query = site.sign_in(provider, as_=OTHER[provider], mailbox=BOXES[provider])
    answer = site.callback(query, accept="application/json")
    refused(answer, 400, "mailbox_mismatch", query["code"])
    assert OTHER[provider] in answer.json()["message"].lower()
    nothing_stored(site)


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_code_reuse(site: Site, provider: str) -> None:
    first = site.sign_in(provider)
    assert site.callback(first).status == 200
    second = site.sign_in(provider)
    answer = site.callback({**second, "code": first["code"]}, accept="application/json")
    refused(answer, 400, "invalid_grant", first["code"], second["state"])
    assert len(site.env.store.list_providers()) == 1


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_pkce_mismatch(site: Site, provider: str) -> None:
    first = site.sign_in(provider)
    second = site.sign_in(provider)
    answer = site.callback({**second, "code": first["code"]}, accept="application/json")
    refused(answer, 400, "invalid_grant", first["code"])
    nothing_stored(site)


def test_token_endpoint_outage(site: Site) -> None:
    query = site.sign_in("google")
    site.env.gmail.fail_next(1, status=503, retry_after=None, path="/token")
    refused(site.callback(query, accept="application/json"), 502, "ProviderUnavailableError")
    nothing_stored(site)


def test_a_failing_on_connected_hook_keeps_the_connection(site: Site) -> None:
    site.fails.append(True)
    assert site.callback(site.sign_in("google")).status == 200
    assert len(site.env.store.list_providers()) == 1


# ---------------------------------------------------------------------- disconnect


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_disconnect(site: Site, provider: str) -> None:
    done = site.callback(site.sign_in(provider), accept="application/json").json()
    path = f"/mail/connect/{done['provider_id']}/disconnect"
    same_site = {"X-User": "user-1", "Origin": "https://helpdesk.test", **JSON}
    refused(site.client.post(path, {**same_site, "Origin": "https://evil.test"}, {}), 403,
            "cross_site")
    refused(site.client.post(path, {**same_site, "Sec-Fetch-Site": "cross-site"}, {}), 403,
            "cross_site")
    refused(site.client.post(path, {**same_site, "X-User": "mallory"}, {}), 404, "not_found")
    refused(site.client.post(path, {k: v for k, v in same_site.items() if k != "X-User"}, {}),
            401, "not_signed_in")
    assert site.env.store.get_provider(done["provider_id"]) is not None
    answer = site.client.post(path, same_site, {})
    assert answer.status == 200
    assert answer.json()["push_stopped"] is True
    assert site.env.store.get_provider(done["provider_id"]) is None
    refused(site.client.post(path, same_site, {}), 404, "not_found")


def test_disconnect_from_a_form_goes_back(site: Site) -> None:
    done = site.callback(site.sign_in("google"), accept="application/json").json()
    answer = site.client.post(f"/mail/connect/{done['provider_id']}/disconnect",
                              {"X-User": "user-1", "Sec-Fetch-Site": "same-origin"},
                              {"return_to": "/settings/mail"})
    assert answer.status == 303
    assert answer.headers["Location"] == "/settings/mail"
    assert site.env.store.list_providers() == []


def test_disconnect_is_post_only(site: Site) -> None:
    answer = site.client.get("/mail/connect/google-x/disconnect", {"X-User": "user-1"})
    assert answer.status in (404, 405)


def test_same_origin_rule() -> None:
    from mailparity.webconnect_routes import same_origin

    assert same_origin({}, "helpdesk.test")
    assert same_origin({"Origin": "https://helpdesk.test"}, "helpdesk.test")
    assert same_origin({"Origin": "https://Helpdesk.test"}, "helpdesk.test")
    # Behind a proxy terminating TLS the app sees http: the host decides.
    assert same_origin({"origin": "https://helpdesk.test"}, "helpdesk.test")
    assert not same_origin({"Origin": "https://evil.test"}, "helpdesk.test")
    assert not same_origin({"Origin": "https://helpdesk.test.evil.test"}, "helpdesk.test")
    assert not same_origin({"Origin": "null"}, "helpdesk.test")
    assert not same_origin({"Sec-Fetch-Site": "cross-site"}, "helpdesk.test")
    assert same_origin({"Sec-Fetch-Site": "same-origin"}, "helpdesk.test")


def test_fastapi_owner_hook_may_be_a_plain_function() -> None:
    fastapi = pytest.importorskip("fastapi")
    import threading

    from fastapi.testclient import TestClient

    from mailparity.contrib.fastapi import connect_router

    threads: list[str] = []

    def owner(request: Any) -> str | None:
        threads.append(threading.current_thread().name)
        value = request.headers.get("x-user")
        return str(value) if value else None

    with environment() as env:
        app = fastapi.FastAPI()
        app.include_router(connect_router(env.connect, owner=owner), prefix="/mail")
        with TestClient(app, base_url=BASE, follow_redirects=False) as client:
            assert client.get("/mail/connect/google").status_code == 401
            started = client.get("/mail/connect/google", headers={"X-User": "u"})
            assert started.status_code == 302
            _, query, _ = authorize(started.headers["location"], fake_user=G_BOX)
            done = client.get(f"/mail/connect/callback?{urlencode(query)}",
                              headers={"X-User": "u", **JSON})
            assert done.status_code == 200
            assert done.json()["mailbox"] == G_BOX
    assert threads
    assert all(name.startswith("AnyIO worker thread") for name in threads), threads
