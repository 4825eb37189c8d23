"""GmailAdapter: tokens, watch, notifications, history / full sync, cursor, labels, connection."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import responses
from responses import matchers

from gmail_payloads import BASE, TOKEN_URL, google_error, history_page, token_response
from mailparity.errors import (
    AuthExpiredError,
    BadRequestError,
    ConfigurationError,
    PermissionDeniedError,
    ProviderUnavailableError,
    SubscriptionError,
    ThrottledError,
    WebhookValidationError,
)
from mailparity.models import GmailProviderConfig, OAuthTokens
from mailparity.providers.gmail import GmailAdapter
from mailparity.stores.memory import InMemoryStore

PID = "gm-1"
REFRESH_SECRET = "1//refresh-SECRET-value"
CLIENT_SECRET = "client-SECRET-xyz"


def make(
    clock: Any, *, tokens: bool = True, store: Any = None, **changes: Any
) -> tuple[GmailAdapter, Any]:
    fields: dict[str, Any] = {
        "provider_id": PID,
        "tenant": "t1",
        "mailbox": "Support@Example.com",
        "client_id": "cid.apps.googleusercontent.com",
        "client_secret": CLIENT_SECRET,
        "project_id": "proj",
        "pubsub_topic_name": "gmail-inbound",
    }
    fields.update(changes)
    config = GmailProviderConfig(**fields)
    store = store if store is not None else InMemoryStore()
    store.save_provider(config)
    if tokens:
        store.save_tokens(
            PID,
            OAuthTokens(
                access_token="ya29.current",
                refresh_token=REFRESH_SECRET,
                expires_at=clock() + timedelta(hours=1),
            ),
        )
    adapter = GmailAdapter(config, store=store, sleep=clock.sleep, clock=clock)
    if tokens:
        adapter.load_credentials()
    return adapter, store


class PlainStore:
    """A CredentialStore + ProviderStore without update_provider / compare_and_set_history_id."""

    def __init__(self) -> None:
        self.providers: dict[str, Any] = {}
        self.tokens: dict[str, OAuthTokens] = {}

    def load_tokens(self, provider_id: str) -> OAuthTokens | None:
        return self.tokens.get(provider_id)

    def save_tokens(self, provider_id: str, tokens: OAuthTokens) -> None:
        self.tokens[provider_id] = tokens

    def get_provider(self, provider_id: str) -> Any:
        return self.providers.get(provider_id)

    def find_provider_by_subscription(self, subscription_id: str) -> Any:
        return None

    def find_provider_by_mailbox(self, provider: str, mailbox: str) -> Any:
        return None

    def save_provider(self, config: Any) -> None:
        self.providers[config.provider_id] = config


def form(call: Any) -> dict[str, list[str]]:
    body = call.request.body
    return parse_qs(body.decode() if isinstance(body, bytes) else body)


def calls_to(path: str) -> list[Any]:
    return [c for c in responses.calls if urlparse(c.request.url).path.endswith(path)]


# ------------------------------------------------------------------------------ tokens


@responses.activate
def test_expired_token_is_refreshed_and_persisted(clock: Any) -> None:
    adapter, store = make(clock)
    store.save_tokens(
        PID, OAuthTokens(access_token="old", refresh_token=REFRESH_SECRET, expires_at=clock())
    )
    adapter.load_credentials()
    responses.post(TOKEN_URL, json=token_response("ya29.fresh", refresh_token="1//rotated"))
    responses.get(
        f"{BASE}/profile",
        json={"emailAddress": "support@example.com", "historyId": "5"},
        match=[matchers.header_matcher({"Authorization": "Bearer ya29.fresh"})],
    )
    result = adapter.test_connection()
    assert result.success, result.error
    body = form(responses.calls[0])
    assert body["grant_type"] == ["refresh_token"]
    assert body["refresh_token"] == [REFRESH_SECRET]
    assert body["client_id"] == ["cid.apps.googleusercontent.com"]
    saved = store.load_tokens(PID)
    assert saved.access_token.get_secret_value() == "ya29.fresh"
    assert saved.refresh_token.get_secret_value() == "1//rotated"
    assert saved.expires_at.tzinfo is not None


@responses.activate
def test_refresh_keeps_refresh_token_when_not_rotated(clock: Any) -> None:
    adapter, store = make(clock)
    responses.post(TOKEN_URL, json=token_response("ya29.b"))
    tokens = adapter.refresh_access_token()
    assert tokens.refresh_token.get_secret_value() == REFRESH_SECRET
    assert store.load_tokens(PID).access_token.get_secret_value() == "ya29.b"


@responses.activate
def test_invalid_grant_is_auth_expired_without_secrets(
    clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter, _ = make(clock)
    responses.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    )
    with pytest.raises(AuthExpiredError) as info:
        adapter.refresh_access_token()
    assert info.value.code == "invalid_grant"
    text = f"{info.value} {info.value!r} {caplog.text}"
    for secret in (REFRESH_SECRET, CLIENT_SECRET, "ya29.current"):
        assert secret not in text
    assert len(responses.calls) == 1  # terminal: not retried


@pytest.mark.parametrize("code", ["invalid_client", "unauthorized_client", "access_denied"])
@responses.activate
def test_other_terminal_oauth_errors(clock: Any, code: str) -> None:
    adapter, _ = make(clock)
    responses.post(TOKEN_URL, status=401, json={"error": code})
    with pytest.raises(AuthExpiredError) as info:
        adapter.refresh_access_token()
    assert info.value.code == code


@responses.activate
def test_token_endpoint_outage_fails_fast_without_real_sleep(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.post(TOKEN_URL, status=503, body="unavailable")
    with pytest.raises(ProviderUnavailableError) as info:
        adapter.refresh_access_token()
    assert info.value.status == 503
    assert len(responses.calls) == 1


@responses.activate
def test_missing_client_secret_is_configuration_error(
    clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLIENT_SECRET", raising=False)
    adapter, _ = make(clock, client_secret=None)
    with pytest.raises(ConfigurationError):
        adapter.refresh_access_token()
    assert len(responses.calls) == 0


@responses.activate
def test_client_credentials_from_environment(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLIENT_ID", "env-id")
    monkeypatch.setenv("GOOGLE_CLIENT_SECRET", "env-secret")
    adapter, _ = make(clock, client_id=None, client_secret=None)
    responses.post(TOKEN_URL, json=token_response())
    adapter.refresh_access_token()
    body = form(responses.calls[0])
    assert body["client_id"] == ["env-id"]
    assert body["client_secret"] == ["env-secret"]


@responses.activate
def test_401_refreshes_once_and_retries(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.get(f"{BASE}/profile", status=401, json=google_error(401, "authError"))
    responses.post(TOKEN_URL, json=token_response("ya29.after401"))
    responses.get(f"{BASE}/profile", json={"emailAddress": "support@example.com"})
    assert adapter.test_connection().success
    assert responses.calls[2].request.headers["Authorization"] == "Bearer ya29.after401"


def _service_account_info() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "proj",
            "private_key_id": "kid1",
            "private_key": pem,
            "client_email": "mailbot@proj.iam.gserviceaccount.com",
            "client_id": "123",
            "token_uri": "https://example.invalid/token",
        }
    )


@responses.activate
def test_service_account_mode_impersonates_mailbox(clock: Any) -> None:
    from google.auth import jwt

    adapter, store = make(
        clock, tokens=False, auth_mode="service_account",
        service_account_info=_service_account_info(),
    )
    responses.post(TOKEN_URL, json=token_response("ya29.sa"))
    responses.get(
        f"{BASE}/profile",
        json={"emailAddress": "support@example.com"},
        match=[matchers.header_matcher({"Authorization": "Bearer ya29.sa"})],
    )
    assert adapter.test_connection().success
    body = form(responses.calls[0])
    assert body["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    claims = jwt.decode(body["assertion"][0], verify=False)
    assert claims["sub"] == "Support@Example.com"
    assert "gmail.modify" in claims["scope"]
    assert store.load_tokens(PID).access_token.get_secret_value() == "ya29.sa"


@responses.activate
def test_service_account_bad_json_is_configuration_error(clock: Any) -> None:
    adapter, _ = make(
        clock, tokens=False, auth_mode="service_account", service_account_info="{not json"
    )
    result = adapter.test_connection()
    assert not result.success
    with pytest.raises(ConfigurationError):
        adapter.refresh_access_token()
    assert len(responses.calls) == 0


@responses.activate
def test_service_account_unauthorized_client_is_auth_expired(clock: Any) -> None:
    adapter, _ = make(
        clock, tokens=False, auth_mode="service_account",
        service_account_info=_service_account_info(),
    )
    responses.post(TOKEN_URL, status=401, json={"error": "unauthorized_client"})
    with pytest.raises(AuthExpiredError):
        adapter.refresh_access_token()


# ------------------------------------------------------------------------------ throttling


@responses.activate
def test_429_then_success_waits_at_least_one_second(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.get(f"{BASE}/profile", status=429, json=google_error(429, "rateLimitExceeded"))
    responses.get(f"{BASE}/profile", json={"emailAddress": "support@example.com"})
    assert adapter.test_connection().success
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 1.0


@responses.activate
def test_429_retry_after_is_honoured(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.get(f"{BASE}/profile", status=429, headers={"Retry-After": "7"})
    responses.get(f"{BASE}/profile", json={"emailAddress": "support@example.com"})
    assert adapter.test_connection().success
    assert clock.sleeps == [7.0]


@pytest.mark.parametrize("reason", ["rateLimitExceeded", "userRateLimitExceeded"])
@responses.activate
def test_403_rate_limit_is_retried(clock: Any, reason: str) -> None:
    adapter, _ = make(clock)
    responses.get(f"{BASE}/profile", status=403, json=google_error(403, reason))
    responses.get(f"{BASE}/profile", json={"emailAddress": "support@example.com"})
    assert adapter.test_connection().success
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] >= 1.0


@responses.activate
def test_403_rate_limit_exhausted_is_throttled(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.get(
        f"{BASE}/profile", status=403, json=google_error(403, "userRateLimitExceeded")
    )
    with pytest.raises(ThrottledError) as info:
        adapter._call("GET", "profile")
    assert info.value.code == "userRateLimitExceeded"
    assert len(responses.calls) == 5


@responses.activate
def test_403_other_is_not_retried(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.get(
        f"{BASE}/profile", status=403,
        json=google_error(403, "insufficientPermissions", "Insufficient Permission"),
    )
    with pytest.raises(PermissionDeniedError) as info:
        adapter._call("GET", "profile")
    assert info.value.code == "insufficientPermissions"
    assert info.value.status == 403
    assert len(responses.calls) == 1
    assert clock.sleeps == []


@responses.activate
def test_500_backend_error_is_retried(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.get(f"{BASE}/profile", status=500, json=google_error(500, "backendError"))
    responses.get(f"{BASE}/profile", json={"emailAddress": "support@example.com"})
    assert adapter.test_connection().success


@responses.activate
def test_non_json_success_body_is_provider_error(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.get(f"{BASE}/profile", body="<html>proxy</html>")
    with pytest.raises(ProviderUnavailableError):
        adapter._call("GET", "profile")


# ------------------------------------------------------------------------------ watch


@responses.activate
def test_watch_saves_history_id_only_when_absent(clock: Any) -> None:
    adapter, store = make(clock)
    responses.post(
        f"{BASE}/watch",
        json={"historyId": "1234567890", "expiration": "1767830400000"},
        match=[
            matchers.json_params_matcher(
                {
                    "topicName": "projects/proj/topics/gmail-inbound",
                    "labelIds": ["INBOX"],
                    "labelFilterBehavior": "INCLUDE",
                }
            )
        ],
    )
    sub = adapter.register_webhook_subscription()
    assert sub.id is None
    assert sub.resource == "projects/proj/topics/gmail-inbound"
    assert sub.expires_at == datetime(2026, 1, 8, tzinfo=timezone.utc)
    saved = store.get_provider(PID)
    assert saved.history_id == 1234567890
    assert saved.watch_expiration == sub.expires_at

    # A cursor exists now: renewing must not move it.
    responses.post(f"{BASE}/watch", json={"historyId": "1299999999", "expiration": "1767916800000"})
    adapter.renew_webhook_subscription()
    saved = store.get_provider(PID)
    assert saved.history_id == 1234567890
    assert saved.watch_expiration == datetime(2026, 1, 9, tzinfo=timezone.utc)


@responses.activate
def test_watch_with_plain_store(clock: Any) -> None:
    adapter, store = make(clock, store=PlainStore(), history_id=None)
    responses.post(f"{BASE}/watch", json={"historyId": "77", "expiration": "1767830400000"})
    adapter.register_webhook_subscription()
    assert store.get_provider(PID).history_id == 77


@responses.activate
def test_watch_resolves_user_label_names_once(clock: Any) -> None:
    adapter, _ = make(clock, label_filters=["INBOX", "Support/Tickets"])
    responses.get(
        f"{BASE}/labels",
        json={"labels": [{"id": "INBOX", "name": "INBOX", "type": "system"},
                         {"id": "Label_42", "name": "Support/Tickets", "type": "user"}]},
    )
    responses.post(f"{BASE}/watch", json={"historyId": "5", "expiration": "1767830400000"})
    adapter.register_webhook_subscription()
    adapter.renew_webhook_subscription()
    sent = json.loads(calls_to("/watch")[0].request.body)
    assert sent["labelIds"] == ["INBOX", "Label_42"]
    assert len(calls_to("/labels")) == 1


@responses.activate
def test_watch_unknown_label_is_configuration_error(clock: Any) -> None:
    adapter, _ = make(clock, label_filters=["Nope"])
    responses.get(f"{BASE}/labels", json={"labels": []})
    with pytest.raises(ConfigurationError, match="Nope"):
        adapter.register_webhook_subscription()


@responses.activate
def test_watch_without_topic_is_configuration_error(clock: Any) -> None:
    adapter, _ = make(clock, project_id=None)
    with pytest.raises(ConfigurationError):
        adapter.register_webhook_subscription()
    assert len(responses.calls) == 0


@responses.activate
def test_watch_refused_is_subscription_error(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.post(
        f"{BASE}/watch", status=403,
        json=google_error(403, "forbidden", "User not authorized to perform this action."),
    )
    with pytest.raises(SubscriptionError) as info:
        adapter.register_webhook_subscription()
    assert info.value.status == 403


@responses.activate
def test_watch_bad_answer_is_subscription_error(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.post(f"{BASE}/watch", json={"historyId": "abc"})
    with pytest.raises(SubscriptionError):
        adapter.register_webhook_subscription()


@pytest.mark.parametrize("status", [204, 404])
@responses.activate
def test_stop_clears_expiration_and_tolerates_404(clock: Any, status: int) -> None:
    adapter, store = make(clock, watch_expiration=clock() + timedelta(days=3))
    responses.post(f"{BASE}/stop", status=status)
    adapter.delete_webhook_subscription()
    assert store.get_provider(PID).watch_expiration is None


@responses.activate
def test_stop_other_error_raises(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.post(f"{BASE}/stop", status=400, json=google_error(400, "badRequest"))
    with pytest.raises(BadRequestError):
        adapter.delete_webhook_subscription()


# ------------------------------------------------------------------------------ notifications


@pytest.mark.parametrize("history_id", ["1500", 1500])
@responses.activate
def test_notification_reads_history_from_stored_cursor(clock: Any, history_id: Any) -> None:
    adapter, store = make(clock, history_id=1000)
    responses.get(
        f"{BASE}/history",
        json=history_page([("m1", ["INBOX", "UNREAD"])], history_id="1500"),
        match=[matchers.query_param_matcher(
            {"startHistoryId": "1000", "historyTypes": "messageAdded", "maxResults": "500",
             "labelId": "INBOX"}
        )],
    )
    ids = adapter.process_webhook_notification(
        {"emailAddress": "support@example.com", "historyId": history_id}
    )
    assert ids == ["m1"]
    assert store.get_provider(PID).history_id == 1000  # the cursor does not move here


@pytest.mark.parametrize(
    "notification",
    [
        {"emailAddress": "support@example.com"},
        {"emailAddress": "support@example.com", "historyId": "12x"},
        {"emailAddress": "support@example.com", "historyId": -5},
        {"emailAddress": "support@example.com", "historyId": True},
        {"emailAddress": "support@example.com", "historyId": 1.5},
        {"emailAddress": "other@example.com", "historyId": "5"},
        {"emailAddress": 42, "historyId": "5"},
    ],
)
@responses.activate
def test_bad_notifications_are_refused(clock: Any, notification: dict[str, Any]) -> None:
    adapter, _ = make(clock, history_id=1000)
    with pytest.raises(WebhookValidationError):
        adapter.process_webhook_notification(notification)
    assert len(responses.calls) == 0


@responses.activate
def test_notification_not_a_mapping(clock: Any) -> None:
    adapter, _ = make(clock, history_id=1000)
    with pytest.raises(WebhookValidationError):
        adapter.process_webhook_notification(["x"])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ history


@responses.activate
def test_history_pagination_dedupe_and_outgoing_filter(clock: Any) -> None:
    adapter, _ = make(clock, history_id=1000)
    responses.get(
        f"{BASE}/history",
        json=history_page(
            [("m1", ["INBOX"]), ("sent1", ["SENT", "INBOX"]), ("m2", ["INBOX", "UNREAD"])],
            history_id="1100", next_page="p2",
        ),
    )
    # page 2 has no "history" at all (seen in the wild), page 3 repeats m2 and adds a draft.
    responses.get(f"{BASE}/history",
                  json=history_page([], history_id="1200", next_page="p3", include_history=False))
    responses.get(f"{BASE}/history",
                  json=history_page([("m2", ["INBOX"]), ("d1", ["DRAFT"]), ("m3", ["INBOX"])],
                                    history_id="1300"))
    batch = adapter.fetch_changes()
    assert batch.message_ids == ["m1", "m2", "m3"]
    assert batch.cursor == 1300
    assert batch.expected == 1000
    assert not batch.baseline
    assert not batch.full_sync
    tokens = [parse_qs(urlparse(c.request.url).query).get("pageToken") for c in responses.calls]
    assert tokens == [None, ["p2"], ["p3"]]


@responses.activate
def test_history_label_filter_any_of_several(clock: Any) -> None:
    adapter, _ = make(clock, history_id=1000, label_filters=["INBOX", "Label_7"])
    responses.get(f"{BASE}/labels", json={"labels": [{"id": "Label_7", "name": "Escalations"}]})
    responses.get(
        f"{BASE}/history",
        json=history_page([("a", ["INBOX"]), ("b", ["Label_7"]), ("c", ["CATEGORY_SOCIAL"])]),
    )
    batch = adapter.fetch_changes()
    assert batch.message_ids == ["a", "b"]
    query = parse_qs(urlparse(calls_to("/history")[0].request.url).query)
    assert "labelId" not in query  # several labels: filtered here, not by Gmail


@responses.activate
def test_history_without_label_ids_asks_for_them(clock: Any) -> None:
    adapter, _ = make(clock, history_id=1000)
    responses.get(f"{BASE}/history", json=history_page([("x", None), ("y", None), ("z", None)]))
    responses.get(f"{BASE}/messages/x", json={"id": "x", "labelIds": ["INBOX"]})
    responses.get(f"{BASE}/messages/y", json={"id": "y", "labelIds": ["SENT"]})
    responses.get(f"{BASE}/messages/z", status=404, json=google_error(404, "notFound"))
    assert adapter.fetch_changes().message_ids == ["x"]


@responses.activate
def test_no_cursor_takes_baseline(clock: Any) -> None:
    adapter, store = make(clock, history_id=None)
    responses.get(f"{BASE}/profile", json={"emailAddress": "support@example.com",
                                           "historyId": "4242"})
    batch = adapter.fetch_changes()
    assert batch.baseline
    assert batch.message_ids == []
    assert batch.cursor == 4242
    assert adapter.commit_cursor(batch)
    assert store.get_provider(PID).history_id == 4242


@responses.activate
def test_expired_cursor_runs_full_sync_profile_first(clock: Any) -> None:
    last = datetime(2025, 12, 30, 12, 0, tzinfo=timezone.utc)
    adapter, _ = make(clock, history_id=1000, last_processed_at=last)
    responses.get(
        f"{BASE}/history", status=404,
        json=google_error(404, "notFound", "Requested entity was not found.", "NOT_FOUND"),
    )
    responses.get(f"{BASE}/profile", json={"emailAddress": "support@example.com",
                                           "historyId": "9000"})
    responses.get(f"{BASE}/messages", json={"messages": [{"id": "new3"}, {"id": "new2"}],
                                            "nextPageToken": "n2"})
    responses.get(f"{BASE}/messages", json={"messages": [{"id": "new1"}, {"id": "new2"}]})
    batch = adapter.fetch_changes()
    paths = [urlparse(c.request.url).path.rsplit("/", 1)[-1] for c in responses.calls]
    assert paths == ["history", "profile", "messages", "messages"]
    assert batch.full_sync
    assert batch.cursor == 9000
    assert batch.expected == 1000
    assert batch.message_ids == ["new1", "new2", "new3"]  # oldest first, each once
    query = parse_qs(urlparse(calls_to("/messages")[0].request.url).query)
    assert query["q"][0].startswith(f"after:{int(last.timestamp())}")
    assert "-in:sent" in query["q"][0]
    assert query["labelIds"] == ["INBOX"]
    assert parse_qs(urlparse(calls_to("/messages")[1].request.url).query)["pageToken"] == ["n2"]


@responses.activate
def test_full_sync_without_last_processed_uses_window(clock: Any) -> None:
    adapter, _ = make(clock, history_id=1000)
    responses.get(f"{BASE}/history", status=404, json=google_error(404, "notFound"))
    responses.get(f"{BASE}/profile", json={"historyId": "9000"})
    responses.get(f"{BASE}/messages", json={"resultSizeEstimate": 0})
    batch = adapter.fetch_changes()
    assert batch.message_ids == []
    assert batch.full_sync
    query = parse_qs(urlparse(calls_to("/messages")[0].request.url).query)
    week_ago = int((clock() - timedelta(days=7)).timestamp())
    assert query["q"][0].startswith(f"after:{week_ago}")


@responses.activate
def test_commit_cursor_compare_and_set(clock: Any) -> None:
    adapter, store = make(clock, history_id=1000)
    responses.get(f"{BASE}/history", json=history_page([("m1", ["INBOX"])], history_id="1500"))
    batch = adapter.fetch_changes()
    assert store.get_provider(PID).history_id == 1000
    assert adapter.commit_cursor(batch)
    saved = store.get_provider(PID)
    assert saved.history_id == 1500
    assert saved.last_processed_at == clock()
    # A stale batch (expected 1000, the cursor is 1500 now) does not move it.
    assert not adapter.commit_cursor(batch)
    assert store.get_provider(PID).history_id == 1500


@responses.activate
def test_commit_cursor_plain_store(clock: Any) -> None:
    adapter, store = make(clock, store=PlainStore(), history_id=1000)
    responses.get(f"{BASE}/history", json=history_page([], history_id="1100"))
    batch = adapter.fetch_changes()
    assert adapter.commit_cursor(batch)
    assert store.get_provider(PID).history_id == 1100


# ------------------------------------------------------------------------------ processed


@responses.activate
def test_mark_processed_none_makes_no_call(clock: Any) -> None:
    adapter, _ = make(clock)
    adapter.mark_message_processed("m1")
    assert len(responses.calls) == 0


@responses.activate
def test_mark_processed_label_created_once(clock: Any) -> None:
    adapter, _ = make(clock, processed_strategy="label", processed_label="PSA/Processed")
    responses.get(f"{BASE}/labels", json={"labels": [{"id": "INBOX", "name": "INBOX"}]})
    responses.post(
        f"{BASE}/labels", json={"id": "Label_9", "name": "PSA/Processed"},
        match=[matchers.json_params_matcher(
            {"name": "PSA/Processed", "labelListVisibility": "labelShow",
             "messageListVisibility": "show"})],
    )
    responses.post(f"{BASE}/messages/m1/modify", json={"id": "m1"},
                   match=[matchers.json_params_matcher({"addLabelIds": ["Label_9"]})])
    responses.post(f"{BASE}/messages/m2/modify", json={"id": "m2"},
                   match=[matchers.json_params_matcher({"addLabelIds": ["Label_9"]})])
    adapter.mark_message_processed("m1")
    adapter.mark_message_processed("m2")
    assert len(calls_to("/labels")) == 2  # one list, one create


@responses.activate
def test_mark_processed_existing_label_case_insensitive(clock: Any) -> None:
    adapter, _ = make(clock, processed_strategy="label", processed_label="psa/processed")
    responses.get(f"{BASE}/labels", json={"labels": [{"id": "Label_3", "name": "PSA/Processed"}]})
    responses.post(f"{BASE}/messages/m1/modify", json={"id": "m1"},
                   match=[matchers.json_params_matcher({"addLabelIds": ["Label_3"]})])
    adapter.mark_message_processed("m1")
    assert len(calls_to("/modify")) == 1


@responses.activate
def test_mark_processed_label_race_409(clock: Any) -> None:
    adapter, _ = make(clock, processed_strategy="label")
    responses.get(f"{BASE}/labels", json={"labels": []})
    responses.post(f"{BASE}/labels", status=409, json=google_error(409, "alreadyExists"))
    responses.get(f"{BASE}/labels", json={"labels": [{"id": "Label_5", "name": "PSA/Processed"}]})
    responses.post(f"{BASE}/messages/m1/modify", json={"id": "m1"},
                   match=[matchers.json_params_matcher({"addLabelIds": ["Label_5"]})])
    adapter.mark_message_processed("m1")
    assert len(calls_to("/modify")) == 1


@responses.activate
def test_mark_processed_remove_unread(clock: Any) -> None:
    adapter, _ = make(clock, processed_strategy="remove_unread")
    responses.post(f"{BASE}/messages/m1/modify", json={"id": "m1"},
                   match=[matchers.json_params_matcher({"removeLabelIds": ["UNREAD"]})])
    adapter.mark_message_processed("m1")
    assert len(calls_to("/modify")) == 1


@responses.activate
def test_mark_processed_bad_id(clock: Any) -> None:
    adapter, _ = make(clock, processed_strategy="remove_unread")
    with pytest.raises(BadRequestError):
        adapter.mark_message_processed("../labels")
    assert len(responses.calls) == 0


# ------------------------------------------------------------------------------ connection


@responses.activate
def test_connection_mismatch_names_both(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.get(f"{BASE}/profile", json={"emailAddress": "someone@else.com"})
    result = adapter.test_connection()
    assert not result.success
    assert "someone@else.com" in result.error
    assert "Support@Example.com" in result.error


@responses.activate
def test_connection_error_reported_not_raised(clock: Any) -> None:
    adapter, _ = make(clock)
    responses.get(f"{BASE}/profile", status=403,
                  json=google_error(403, "domainPolicy", "The domain administrators have disabled"
                                    " Gmail apps."))
    result = adapter.test_connection()
    assert not result.success
    assert result.status == 403
    assert result.code == "domainPolicy"
    assert "disabled" in result.error


@responses.activate
def test_connection_auth_expired_reported(clock: Any) -> None:
    adapter, store = make(clock)
    store.save_tokens(
        PID, OAuthTokens(access_token="old", refresh_token=REFRESH_SECRET, expires_at=clock())
    )
    adapter.load_credentials()
    responses.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    result = adapter.test_connection()
    assert not result.success
    assert result.code == "invalid_grant"
    assert REFRESH_SECRET not in (result.error or "")


def test_wrong_config_type_is_rejected(clock: Any) -> None:
    from mailparity.models import MicrosoftProviderConfig

    config = MicrosoftProviderConfig(provider_id="x", tenant="t", mailbox="a@b.c")
    with pytest.raises(ConfigurationError):
        GmailAdapter(config, store=InMemoryStore())  # type: ignore[arg-type]


def test_repr_has_no_secret(clock: Any) -> None:
    adapter, _ = make(clock)
    assert CLIENT_SECRET not in repr(adapter)
    assert CLIENT_SECRET not in repr(adapter.config)
