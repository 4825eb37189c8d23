"""The fakes' authorization endpoints and ``authorization_code`` grants, spoken to directly:
they check what Entra and Google check, and refuse the way they refuse."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from conftest import FakeClock
from mailparity.testing import FakeGmail, FakeGraph
from mailparity.testing._authorize import pkce_matches

CB = "https://app.test/cb"
VERIFIER = "v" * 50
_DIGEST = hashlib.sha256(VERIFIER.encode()).digest()
CHALLENGE = base64.urlsafe_b64encode(_DIGEST).rstrip(b"=").decode()


def graph_fake(clock: Any = None) -> FakeGraph:
    fake = FakeGraph(clock=clock)
    fake.add_client("app", "secret", [CB])
    fake.add_mailbox("alice@contoso.test")
    return fake


def gmail_fake(clock: Any = None) -> FakeGmail:
    fake = FakeGmail(clock=clock)
    fake.add_client("app", "secret", [CB])
    fake.add_mailbox("alice@example.test")
    return fake


def graph_authorize(fake: FakeGraph, **params: str) -> Any:
    query = {"client_id": "app", "response_type": "code", "redirect_uri": CB,
             "scope": "Mail.ReadWrite User.Read offline_access openid", "state": "s1",
             "code_challenge": CHALLENGE, "code_challenge_method": "S256", "nonce": "n1",
             "fake_user": "alice@contoso.test", **params}
    query = {key: value for key, value in query.items() if value != "-"}
    return fake.handle("GET", f"{fake.login_url}/common/oauth2/v2.0/authorize?{urlencode(query)}")


def gmail_authorize(fake: FakeGmail, **params: str) -> Any:
    query = {"client_id": "app", "response_type": "code", "redirect_uri": CB,
             "scope": "https://www.googleapis.com/auth/gmail.modify", "state": "s1",
             "code_challenge": CHALLENGE, "code_challenge_method": "S256",
             "access_type": "offline", "fake_user": "alice@example.test", **params}
    query = {key: value for key, value in query.items() if value != "-"}
    return fake.handle("GET", f"{fake.auth_uri}?{urlencode(query)}")


def location(result: Any) -> dict[str, str]:
    assert result.status == 302, result.body
    target = result.headers["Location"]
    assert target.startswith(CB + "?")
    return dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))


def redeem(fake: Any, issued: str, /, **form: str) -> Any:
    body = {"grant_type": "authorization_code", "client_id": "app", "client_secret": "secret",
            "code": issued, "redirect_uri": CB, "code_verifier": VERIFIER, **form}
    body = {key: value for key, value in body.items() if value != "-"}
    url = f"{fake.login_url}/common/oauth2/v2.0/token" if isinstance(fake, FakeGraph) else (
        fake.token_uri
    )
    return fake.handle("POST", url, {"Content-Type": "application/x-www-form-urlencoded"},
                       urlencode(body))


def test_pkce_rule() -> None:
    assert pkce_matches(CHALLENGE, "S256", VERIFIER)
    assert not pkce_matches(CHALLENGE, "S256", VERIFIER + "x")
    assert pkce_matches("plain-value", None, "plain-value")


# ---------------------------------------------------------------------- Microsoft


def test_graph_code_flow_and_single_use() -> None:
    fake = graph_fake()
    query = location(graph_authorize(fake))
    assert query["state"] == "s1"
    assert query["code"]
    answer = redeem(fake, query["code"])
    assert answer.status == 200
    data = answer.json()
    assert data["access_token"]
    assert data["refresh_token"]
    assert data["id_token"]
    claims = base64.urlsafe_b64decode(data["id_token"].split(".")[1] + "==")
    assert b'"nonce": "n1"' in claims
    assert b"alice@contoso.test" in claims
    again = redeem(fake, query["code"])
    assert again.status == 400
    assert again.json()["error"] == "invalid_grant"
    assert "AADSTS54005" in again.json()["error_description"]


@pytest.mark.parametrize(("params", "text"), [
    ({"client_id": "unknown"}, "AADSTS700016"),
    ({"client_id": "-"}, "AADSTS900144"),
    ({"redirect_uri": "https://evil.test/cb"}, "AADSTS50011"),
    ({"redirect_uri": "-"}, "AADSTS900144"),
])
def test_graph_refusals_before_the_redirect_uri_is_trusted_are_pages(
    params: dict[str, str], text: str
) -> None:
    result = graph_authorize(graph_fake(), **params)
    assert result.status == 400
    assert "Location" not in result.headers
    assert text in result.body.decode()


@pytest.mark.parametrize(("params", "error", "text"), [
    ({"scope": "Mail.ReadWrite Files.Everything"}, "invalid_scope", "AADSTS70011"),
    ({"scope": "-"}, "invalid_request", "scope"),
    ({"response_type": "token"}, "unsupported_response_type", "AADSTS700054"),
    ({"code_challenge_method": "S512"}, "invalid_request", "code_challenge_method"),
    ({"code_challenge": "short"}, "invalid_request", "malformed"),
    ({"code_challenge": "-"}, "invalid_request", "without code_challenge"),
    ({"fake_decline": "1"}, "access_denied", "AADSTS65004"),
])
def test_graph_refusals_go_back_to_the_redirect_uri(
    params: dict[str, str], error: str, text: str
) -> None:
    query = location(graph_authorize(graph_fake(), **params))
    assert query["error"] == error
    assert query["state"] == "s1"
    assert text in query["error_description"]


@pytest.mark.parametrize(("form", "text"), [
    ({"code_verifier": "w" * 50}, "AADSTS501481"),
    ({"code_verifier": "-"}, "AADSTS50148"),
    ({"redirect_uri": "https://app.test/other"}, "AADSTS500112"),
    ({"code": "0.fake-code.nothing"}, "AADSTS9002313"),
])
def test_graph_code_grant_refusals(form: dict[str, str], text: str) -> None:
    fake = graph_fake()
    code = location(graph_authorize(fake))["code"]
    answer = redeem(fake, code, **form)
    assert answer.status == 400
    assert answer.json()["error"] == "invalid_grant"
    assert text in answer.json()["error_description"]


def test_graph_code_grant_needs_the_client_secret() -> None:
    fake = graph_fake()
    code = location(graph_authorize(fake))["code"]
    assert redeem(fake, code, client_secret="-").status == 401
    assert redeem(fake, code, client_secret="wrong").json()["error"] == "invalid_client"


def test_graph_code_expires() -> None:
    clock = FakeClock()
    fake = graph_fake(clock)
    code = location(graph_authorize(fake))["code"]
    clock.now += timedelta(minutes=11)
    answer = redeem(fake, code)
    assert "AADSTS70008" in answer.json()["error_description"]


def test_graph_admin_consent() -> None:
    fake = graph_fake()
    query = {"client_id": "app", "redirect_uri": CB, "state": "s2",
             "scope": "https://graph.microsoft.com/.default"}
    url = f"{fake.login_url}/organizations/v2.0/adminconsent?{urlencode(query)}"
    answer = location(fake.handle("GET", url))
    assert answer == {"admin_consent": "True", "tenant": fake.tenant_id, "state": "s2",
                      "scope": "https://graph.microsoft.com/.default"}
    assert "app" in fake.admin_consents
    bad_scope = location(fake.handle("GET", url.replace("%2F.default", "%2FMail.Read")))
    assert bad_scope["error"] == "invalid_request"
    other = fake.handle("GET", url.replace("/organizations/", "/not-this-tenant/"))
    assert other.status == 400
    assert "AADSTS90002" in other.body.decode()


def test_graph_chooser_lists_mailboxes() -> None:
    result = graph_authorize(graph_fake(), fake_user="-")
    assert result.status == 200
    assert "alice@contoso.test" in result.body.decode()


# ---------------------------------------------------------------------- Google


def test_gmail_code_flow_and_single_use() -> None:
    fake = gmail_fake()
    query = location(gmail_authorize(fake, prompt="consent"))
    assert query["code"].startswith("4/")
    assert query["scope"].endswith("gmail.modify")
    answer = redeem(fake, query["code"])
    data = answer.json()
    assert answer.status == 200
    assert data["refresh_token"]
    assert data["scope"] == query["scope"]
    again = redeem(fake, query["code"])
    assert again.status == 400
    assert again.json() == {
        "error": "invalid_grant", "error_description": "Bad Request"}


def test_gmail_refresh_token_on_first_consent_or_prompt_consent_only() -> None:
    fake = gmail_fake()
    first = redeem(fake, location(gmail_authorize(fake))["code"]).json()
    assert "refresh_token" in first
    second = redeem(fake, location(gmail_authorize(fake))["code"]).json()
    assert "refresh_token" not in second
    third = redeem(fake, location(gmail_authorize(fake, prompt="consent"))["code"]).json()
    assert "refresh_token" in third
    online = redeem(fake, location(gmail_authorize(fake, access_type="online",
                                                   prompt="consent"))["code"]).json()
    assert "refresh_token" not in online


@pytest.mark.parametrize(("params", "status", "text"), [
    ({"client_id": "unknown"}, 401, "invalid_client"),
    ({"redirect_uri": "https://evil.test/cb"}, 400, "redirect_uri_mismatch"),
    ({"scope": "https://www.googleapis.com/auth/everything"}, 400, "invalid_scope"),
    ({"code_challenge_method": "S1"}, 400, "invalid_request"),
    ({"response_type": "token"}, 400, "unsupported_response_type"),
])
def test_gmail_refusals_are_error_pages(params: dict[str, str], status: int, text: str) -> None:
    result = gmail_authorize(gmail_fake(), **params)
    assert result.status == status
    assert "Location" not in result.headers
    assert text in result.body.decode()


@pytest.mark.parametrize(("form", "error", "description"), [
    ({"code_verifier": "w" * 50}, "invalid_grant", "Invalid code verifier."),
    ({"code_verifier": "-"}, "invalid_grant", "Missing code verifier."),
    ({"redirect_uri": "https://app.test/other"}, "redirect_uri_mismatch", "Bad Request"),
    ({"code": "4/unknown"}, "invalid_grant", "Malformed auth code."),
])
def test_gmail_code_grant_refusals(form: dict[str, str], error: str, description: str) -> None:
    fake = gmail_fake()
    code = location(gmail_authorize(fake))["code"]
    answer = redeem(fake, code, **form)
    assert answer.status == 400
    assert answer.json() == {"error": error, "error_description": description}


def test_gmail_code_grant_checks_the_client() -> None:
    fake = gmail_fake()
    code = location(gmail_authorize(fake))["code"]
    assert redeem(fake, code, client_secret="wrong").json()["error"] == "invalid_client"


def test_gmail_decline_and_unticked_scope() -> None:
    fake = gmail_fake()
    assert location(gmail_authorize(fake, fake_decline="1")) == {
        "error": "access_denied", "state": "s1"}
    query = location(gmail_authorize(fake, fake_scopes="openid"))
    assert query["scope"] == ""


def test_gmail_authorize_is_get_only() -> None:
    fake = gmail_fake()
    assert fake.handle("POST", fake.auth_uri).status == 405
