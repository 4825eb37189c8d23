"""WebhookHandler.handle_microsoft: validation, notifications, lifecycle, the hostile matrix.

Graph-specific by nature (its validation handshake, clientState and notification items are the
point); the semantics every push source shares run over each provider in
``test_webhooks_wsgi.py``."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mailparity.webhooks import Headers, WebhookHandler, WebhookRequest, WebhookResponse
from webhook_support import (
    CLIENT_STATE,
    MS_PROVIDER,
    OLD_CLIENT_STATE,
    SUBSCRIPTION_ID,
    T0,
    assert_no_secrets,
    graph_item,
    graph_post,
    jobs_of,
    make_handler,
    make_store,
    microsoft_config,
)


@pytest.fixture
def store() -> Any:
    return make_store()


@pytest.fixture
def handler(store: Any) -> WebhookHandler:
    return make_handler(store)


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mailparity")


def corpus_body(corpus_dir: Path, name: str, **replace: str) -> bytes:
    text = (corpus_dir / "graph_api" / name).read_text(encoding="utf-8")
    for old, new in replace.items():
        text = text.replace(old, new)
    return text.encode("utf-8")


CREATED = "msgraphdocs__webhooks__change_notification_message_created.json"


# ------------------------------------------------------------------ validation handshake


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_validation_echoes_token_as_plain_text(handler: WebhookHandler, store: Any,
                                               method: str) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1"
    response = handler.handle_microsoft(
        WebhookRequest(method, {"validationToken": token}, {}, b"")
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.body == token.encode()
    assert jobs_of(store) == []


def test_validation_never_parses_the_body(handler: WebhookHandler) -> None:
    # Graph sends text/plain with no JSON; whatever the body holds, the token is answered.
    request = WebhookRequest("POST", {"validationToken": "abc+/=é"}, {}, b"\xff{not json")
    response = handler.handle_microsoft(request)
    assert (response.status, response.body) == (200, "abc+/=é".encode())


def test_validation_token_is_echoed_even_for_an_oversized_body(store: Any) -> None:
    handler = make_handler(store, max_body_bytes=10)
    response = handler.handle_microsoft(
        WebhookRequest("POST", {"validationToken": "tok"}, {}, b"x" * 100)
    )
    assert response.status == 200


@pytest.mark.parametrize(
    "token", ["", "x" * 1025, "abc\r\nSet-Cookie: a=b", "nul\x00byte", "tab\there", "del\x7f"]
)
def test_bad_validation_tokens_are_refused(handler: WebhookHandler, token: str) -> None:
    response = handler.handle_microsoft(WebhookRequest("POST", {"validationToken": token}, {}))
    assert response.status == 400
    assert token.encode() not in response.body or token == ""


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_validation_only_on_get_and_post(handler: WebhookHandler, method: str) -> None:
    response = handler.handle_microsoft(WebhookRequest(method, {"validationToken": "t"}, {}))
    assert response.status == 405


def test_validation_token_at_the_length_limit_is_accepted(handler: WebhookHandler) -> None:
    token = "t" * 1024
    response = handler.handle_microsoft(WebhookRequest("GET", {"validationToken": token}, {}))
    assert response.status == 200
    assert response.body == token.encode()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
def test_other_methods_are_405(handler: WebhookHandler, method: str) -> None:
    response = handler.handle_microsoft(WebhookRequest(method, {}, {}, b""))
    assert response.status == 405
    assert "POST" in response.headers["Allow"]


# ------------------------------------------------------------------ notifications


def test_created_notification_becomes_one_job(handler: WebhookHandler, store: Any) -> None:
    response = handler.handle_microsoft(graph_post(graph_item("MSG-1")))
    assert response.status == 202
    [job] = jobs_of(store)
    assert job.kind == "message"
    assert job.provider_id == MS_PROVIDER
    assert job.payload == {"message_id": "MSG-1", "received_hint": T0.isoformat()}
    assert job.unique_key == f"graph:{MS_PROVIDER}:MSG-1"
    assert store.get_meta(MS_PROVIDER, "last_push_at") == T0.isoformat()


def test_corpus_created_notification(corpus_dir: Path, store: Any) -> None:
    store.save_provider(microsoft_config(
        webhook_subscription_id="{subscription_guid}",
        webhook_verification_token="secretClientValue",
    ))
    handler = make_handler(store)
    body = corpus_body(corpus_dir, CREATED)
    response = handler.handle_microsoft(graph_post(body=body))
    assert response.status == 202
    [job] = jobs_of(store)
    assert job.payload["message_id"] == "{long_id_string}"


def test_corpus_created_notification_with_wrong_client_state_is_ignored(
    corpus_dir: Path, store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The stored token differs from the corpus' "secretClientValue": nothing may be queued.
    store.save_provider(microsoft_config(webhook_subscription_id="{subscription_guid}"))
    handler = make_handler(store)
    body = corpus_body(corpus_dir, CREATED)
    response = handler.handle_microsoft(graph_post(body=body))
    assert response.status == 202
    assert jobs_of(store) == []
    assert "clientState" in caplog.text
    assert_no_secrets(caplog.text, "secretClientValue")


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("msgraphdocs__webhooks-lifecycle__lifecycle_missed.json", "missed"),
        (
            "msgraphdocs__webhooks-lifecycle__lifecycle_reauthorization_required.json",
            "reauthorization_required",  # Graph's reauthorizationRequired, by its neutral name
        ),
    ],
)
def test_corpus_lifecycle_notifications(corpus_dir: Path, store: Any, name: str,
                                        event: str) -> None:
    body = corpus_body(
        corpus_dir, name,
        **{"<subscription_guid>": SUBSCRIPTION_ID, "<secretClientState>": CLIENT_STATE,
           "{secret client state}": CLIENT_STATE},
    )
    response = make_handler(store).handle_microsoft(graph_post(body=body))
    assert response.status == 202
    [job] = jobs_of(store)
    assert job.kind == "lifecycle"
    assert job.payload == {"event": event, "subscription_id": SUBSCRIPTION_ID}
    assert job.unique_key == f"lifecycle:{MS_PROVIDER}:{event}"


def test_corpus_validation_style_notification_is_ignored(corpus_dir: Path, store: Any) -> None:
    body = corpus_body(
        corpus_dir, "msgraphdocs__change-notifications-delivery__validation_style_notification.json"
    )
    response = make_handler(store).handle_microsoft(graph_post(body=body))
    assert response.status == 202
    assert jobs_of(store) == []


def test_subscription_removed_lifecycle(handler: WebhookHandler, store: Any) -> None:
    item = {"subscriptionId": SUBSCRIPTION_ID, "clientState": CLIENT_STATE,
            "lifecycleEvent": "subscriptionRemoved"}
    assert handler.handle_microsoft(graph_post(item)).status == 202
    [job] = jobs_of(store, "lifecycle")
    assert job.payload["event"] == "subscription_removed"
    assert job.unique_key == f"lifecycle:{MS_PROVIDER}:subscription_removed"


def test_unknown_lifecycle_event_is_ignored(handler: WebhookHandler, store: Any) -> None:
    item = {"subscriptionId": SUBSCRIPTION_ID, "clientState": CLIENT_STATE,
            "lifecycleEvent": "somethingNew"}
    assert handler.handle_microsoft(graph_post(item)).status == 202
    assert jobs_of(store) == []


def test_lifecycle_with_forged_client_state_is_ignored(handler: WebhookHandler,
                                                       store: Any) -> None:
    item = {"subscriptionId": SUBSCRIPTION_ID, "clientState": "forged",
            "lifecycleEvent": "subscriptionRemoved"}
    assert handler.handle_microsoft(graph_post(item)).status == 202
    assert jobs_of(store) == []


def test_message_id_falls_back_to_the_resource_path(handler: WebhookHandler, store: Any) -> None:
    item = graph_item("unused")
    del item["resourceData"]
    item["resource"] = "Users('8a3e')/messages('AAMk-FROM_PATH=')"
    item2 = graph_item("unused")
    item2["resourceData"] = {"@odata.type": "#microsoft.graph.message"}
    item2["resource"] = "users/u@t/messages/AAMk-SECOND"
    assert handler.handle_microsoft(graph_post(item, item2)).status == 202
    assert sorted(j.payload["message_id"] for j in jobs_of(store)) == [
        "AAMk-FROM_PATH=", "AAMk-SECOND"
    ]


@pytest.mark.parametrize("change_type", ["updated", "deleted", "CREATEDX", None, 5])
def test_non_created_changes_make_no_job(handler: WebhookHandler, store: Any,
                                         change_type: Any) -> None:
    item = graph_item("MSG-1")
    item["changeType"] = change_type
    assert handler.handle_microsoft(graph_post(item)).status == 202
    assert jobs_of(store) == []


def test_non_message_resource_makes_no_job(handler: WebhookHandler, store: Any) -> None:
    item = graph_item("EVT-1")
    item["resourceData"]["@odata.type"] = "#Microsoft.Graph.Event"
    assert handler.handle_microsoft(graph_post(item)).status == 202
    assert jobs_of(store) == []


def test_duplicates_coalesce(handler: WebhookHandler, store: Any) -> None:
    body = graph_post(graph_item("MSG-1"), graph_item("MSG-1"))
    assert handler.handle_microsoft(body).status == 202
    assert handler.handle_microsoft(graph_post(graph_item("MSG-1"))).status == 202
    assert len(jobs_of(store)) == 1


def test_valid_and_invalid_items_in_one_batch(
    handler: WebhookHandler, store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    forged = graph_item("FORGED", client_state="guess")
    missing = graph_item("MISSING", client_state=None)
    unknown = graph_item("UNKNOWN", subscription_id="00000000-0000-0000-0000-000000000000")
    no_id = graph_item("NOID")
    no_id["resourceData"] = {"id": ""}
    no_id["resource"] = "somewhere/else"
    bad_rd = graph_item("BADRD")
    bad_rd["resourceData"] = ["not", "an", "object"]
    items = [
        "not an object", 42, None, [], {}, {"subscriptionId": 7},
        {"subscriptionId": "x" * 5000}, {"subscriptionId": "a\nb"},
        forged, missing, unknown, no_id, bad_rd,
        graph_item("GOOD-1"), graph_item("GOOD-2"),
    ]
    response = handler.handle_microsoft(graph_post(*items))
    assert response.status == 202
    assert sorted(j.payload["message_id"] for j in jobs_of(store)) == ["GOOD-1", "GOOD-2"]
    assert "unknown subscription" in caplog.text
    assert_no_secrets(caplog.text, "guess")
    assert_no_secrets(response.text)


def test_client_state_of_another_provider_is_refused(store: Any) -> None:
    store.save_provider(microsoft_config(
        provider_id="ms-2", webhook_subscription_id="sub-2", webhook_verification_token="other"
    ))
    handler = make_handler(store)
    item = graph_item("MSG-X", subscription_id="sub-2", client_state=CLIENT_STATE)
    assert handler.handle_microsoft(graph_post(item)).status == 202
    assert jobs_of(store) == []


def test_provider_without_a_stored_token_trusts_nothing(store: Any) -> None:
    store.save_provider(microsoft_config(webhook_verification_token=None))
    handler = make_handler(store)
    item = graph_item("MSG-1", client_state="")
    assert handler.handle_microsoft(graph_post(item)).status == 202
    assert handler.handle_microsoft(graph_post(graph_item("MSG-2"))).status == 202
    assert jobs_of(store) == []


def test_previous_client_state_is_accepted_until_it_lapses(store: Any) -> None:
    store.save_provider(microsoft_config(
        previous_webhook_verification_token=OLD_CLIENT_STATE,
        previous_token_valid_until=T0 + timedelta(hours=1),
    ))
    now = {"t": T0}
    handler = make_handler(store, clock=lambda: now["t"])
    old = graph_item("OLD-1", client_state=OLD_CLIENT_STATE)
    assert handler.handle_microsoft(graph_post(old)).status == 202
    assert [j.payload["message_id"] for j in jobs_of(store)] == ["OLD-1"]
    now["t"] = T0 + timedelta(hours=1)
    old2 = graph_item("OLD-2", client_state=OLD_CLIENT_STATE)
    assert handler.handle_microsoft(graph_post(old2)).status == 202
    assert [j.payload["message_id"] for j in jobs_of(store)] == ["OLD-1"]
    # The current token keeps working.
    assert handler.handle_microsoft(graph_post(graph_item("NEW-1"))).status == 202
    assert sorted(j.payload["message_id"] for j in jobs_of(store)) == ["NEW-1", "OLD-1"]


def test_paused_provider_gets_no_job(store: Any) -> None:
    store.save_provider(microsoft_config(active=False))
    assert make_handler(store).handle_microsoft(graph_post(graph_item())).status == 202
    assert jobs_of(store) == []


def test_google_provider_with_that_subscription_id_is_not_used(store: Any) -> None:
    # find_provider_by_subscription answering with a non-Graph config must not be trusted.
    class OddStore(type(store)):  # type: ignore[misc]
        def find_provider_by_subscription(self, subscription_id: str) -> Any:
            return self.get_provider("gm-1")

    odd = OddStore()
    odd.save_provider(microsoft_config())
    from webhook_support import gmail_config

    odd.save_provider(gmail_config())
    assert make_handler(odd).handle_microsoft(graph_post(graph_item())).status == 202
    assert jobs_of(odd) == []


# ------------------------------------------------------------------ hostile bodies


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"null",
        b'"value"',
        b"{}",
        b'{"value": {}}',
        b'{"value": "x"}',
        b'{"value": null}',
        b'{"values": []}',
        b"[" * 100_000,
        b'{"value": [' + b"[" * 50_000 + b"]}",
    ],
)
def test_malformed_bodies_are_400(handler: WebhookHandler, store: Any, body: bytes) -> None:
    response = handler.handle_microsoft(graph_post(body=body))
    assert response.status == 400
    assert jobs_of(store) == []


def test_empty_value_array_is_accepted(handler: WebhookHandler, store: Any) -> None:
    assert handler.handle_microsoft(graph_post(body=b'{"value": []}')).status == 202
    assert jobs_of(store) == []


def test_huge_body_is_413_before_parsing(store: Any) -> None:
    handler = make_handler(store, max_body_bytes=1000)
    body = json.dumps({"value": [graph_item(f"M{i}") for i in range(20)]}).encode()
    assert len(body) > 1000
    response = handler.handle_microsoft(graph_post(body=body))
    assert response.status == 413
    assert jobs_of(store) == []


# ------------------------------------------------------------------ store failures


def test_store_failure_is_503_and_other_items_still_stored(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handler = make_handler(store)
    store.fail_enqueue = {"lifecycle"}
    lifecycle = {"subscriptionId": SUBSCRIPTION_ID, "clientState": CLIENT_STATE,
                 "lifecycleEvent": "missed"}
    response = handler.handle_microsoft(graph_post(lifecycle, graph_item("MSG-1")))
    assert response.status == 503
    assert [j.payload["message_id"] for j in jobs_of(store)] == ["MSG-1"]
    assert_no_secrets(caplog.text)
    # Graph retries the batch; the message job coalesces, the lifecycle job now lands.
    store.fail_enqueue = set()
    assert handler.handle_microsoft(graph_post(lifecycle, graph_item("MSG-1"))).status == 202
    assert sorted(j.kind for j in jobs_of(store)) == ["lifecycle", "message"]


def test_lookup_failure_is_503(store: Any) -> None:
    store.fail_lookup = True
    response = make_handler(store).handle_microsoft(graph_post(graph_item()))
    assert response.status == 503
    assert "Retry-After" in response.headers


def test_meta_failure_does_not_fail_the_request(store: Any) -> None:
    store.fail_meta = True
    response = make_handler(store).handle_microsoft(graph_post(graph_item("MSG-1")))
    assert response.status == 202
    assert len(jobs_of(store)) == 1


# ------------------------------------------------------------------ request/response types


def test_request_headers_are_case_insensitive_and_repr_hides_values() -> None:
    request = WebhookRequest(
        "post", {"validationToken": "tok"}, {"AUTHORIZATION": "Bearer abc.def.ghi"}, bytearray(b"x")
    )
    assert request.method == "POST"
    assert request.headers["authorization"] == "Bearer abc.def.ghi"
    assert request.headers.get("Authorization") == "Bearer abc.def.ghi"
    assert "authorization" in request.headers
    assert request.body == b"x"
    text = repr(request)
    assert "abc.def.ghi" not in text
    assert "tok" not in text.replace("validationToken", "")
    assert "AUTHORIZATION" in text


def test_headers_mapping() -> None:
    headers = Headers([("Content-Type", "a"), ("content-type", "b"), ("X-One", "1")])
    assert len(headers) == 2
    assert headers["CONTENT-TYPE"] == "b"
    assert list(headers) == ["Content-Type", "X-One"]
    assert 5 not in headers
    with pytest.raises(KeyError):
        headers["missing"]


def test_request_body_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        WebhookRequest("POST", {}, {}, 123)  # type: ignore[arg-type]
    assert WebhookRequest("POST", {}, {}, "é").body == "é".encode()  # type: ignore[arg-type]


def test_response_text() -> None:
    assert WebhookResponse(200, {}, b"ok").text == "ok"


def test_handler_repr_has_no_secrets(handler: WebhookHandler) -> None:
    assert_no_secrets(repr(handler))
