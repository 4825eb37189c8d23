"""The performance shortcuts give exactly what the plain code paths give.

Each fast path (store copies, the HTML fast tokenizer, cached request environment, the first
HTTP attempt outside tenacity, the FakeGraph indexes) is checked against the behaviour it
replaces, including the inputs that must take the slow path.
"""

from __future__ import annotations

import random
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, PrivateAttr

from mailparity import html as html_mod
from mailparity import http as http_mod
from mailparity import mime, webhooks
from mailparity.errors import ProviderUnavailableError
from mailparity.http import HttpClient
from mailparity.models import (
    EVENT_NAMESPACE,
    EmailBody,
    EmailMessage,
    Header,
    InboundEmailReceived,
    Job,
    MicrosoftProviderConfig,
    event_id_for,
)
from mailparity.processing import Processor
from mailparity.providers.graph import adapter as graph_adapter
from mailparity.providers.graph import messages as graph_messages
from mailparity.publishers import InMemoryPublisher
from mailparity.stores._common import copy_model
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.fake_graph import FakeGraph

# ---------------------------------------------------------------------- store copies


def _config() -> MicrosoftProviderConfig:
    return MicrosoftProviderConfig(
        provider_id="ms-1",
        tenant="t",
        mailbox="a@contoso.example",
        client_secret="s3cret",
        delta_links={"inbox": "https://graph.example/delta?token=1"},
        webhook_expires_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )


def test_copy_model_equals_a_deep_copy_and_shares_nothing_mutable() -> None:
    config = _config()
    clone = copy_model(config)
    assert clone == config.model_copy(deep=True)
    clone.scopes.append("extra")
    clone.delta_links["other"] = "x"
    assert config.scopes == ["https://graph.microsoft.com/.default"]
    assert "other" not in config.delta_links
    assert clone.client_secret is not None
    assert clone.client_secret.get_secret_value() == "s3cret"

    job = Job(kind="sync", provider_id="p", payload={"ids": ["a"], "nested": {"k": [1]}})
    job_clone = copy_model(job)
    assert job_clone == job
    job_clone.payload["ids"].append("b")
    job_clone.payload["nested"]["k"].append(2)
    assert job.payload == {"ids": ["a"], "nested": {"k": [1]}}


def test_memory_store_hands_out_isolated_configs_and_jobs() -> None:
    store = InMemoryStore()
    store.save_provider(_config())
    first = store.get_provider("ms-1")
    assert first is not None
    first.scopes.append("mutated")
    again = store.get_provider("ms-1")
    assert again is not None
    assert "mutated" not in again.scopes
    job = Job(kind="sync", provider_id="ms-1", payload={"reason": "x"})
    assert store.enqueue_job(job)
    job.payload["reason"] = "changed after enqueue"
    now = datetime.now(timezone.utc)
    (claimed,) = store.claim_jobs("w", limit=5, now=now, lease_until=now + timedelta(minutes=1))
    assert claimed.payload == {"reason": "x"}


def test_memory_store_unique_key_index_follows_the_job_states() -> None:
    store = InMemoryStore()
    now = datetime.now(timezone.utc)

    def job() -> Job:
        return Job(kind="sync", provider_id="p", unique_key="sync:p", available_at=now)

    first = job()
    assert store.enqueue_job(first)
    assert not store.enqueue_job(job())  # a pending job with the key exists
    assert not store.enqueue_job(first)  # same id
    store.claim_jobs("w", limit=1, now=now, lease_until=now + timedelta(minutes=1))
    second = job()
    assert store.enqueue_job(second)  # the first is running, not pending
    store.retry_job(first.id, error="x", available_at=now)
    assert not store.enqueue_job(job())  # both pending now
    store.complete_job(first.id)
    store.complete_job(second.id)
    assert store.enqueue_job(job())
    store.delete_provider("p")
    assert store.count_jobs() == 0
    assert store.enqueue_job(job())


# ---------------------------------------------------------------------- HTML and header text


def _parser_text(markup: str) -> str:
    parser = html_mod._TextExtractor()
    parser.feed(markup)
    parser.close()
    return html_mod._finish("".join(parser.out))


@pytest.mark.parametrize(
    "markup",
    [
        "<html><body><p>One &amp; two</p><p>Three</p><table><tr><td>a</td><td>b</td></tr>"
        "</table></body></html>",
        "<div class='x>y'>quoted &gt; bracket</div><br/>next<br />line",
        "<P CLASS=x>Upper</P ><pre>  keep\n  this  </pre>after",
        "text only,   with  runs\tof\nwhite\xa0space &nbsp; and &#233;",
        "<ul><li>one</li><li>two</li></ul><h1>Title</h1><hr/>end",
    ],
)
def test_fast_html_path_matches_the_parser(markup: str) -> None:
    assert html_mod._fast_extract(markup) is not None
    assert html_mod.html_to_text(markup) == _parser_text(markup)


@pytest.mark.parametrize(
    "markup",
    [
        "<p>a<!-- hidden --></p>",
        "<img alt='logo'> text",
        "<head><style>p{}</style></head><p>x</p>",
        "<o:p>office</o:p>",
        "a < b and <p\xa0>",
        "<script>if (a<b) {}</script>ok",
        "<p unterminated",
    ],
)
def test_markup_beyond_the_fast_path_goes_to_the_parser(markup: str) -> None:
    assert html_mod._fast_extract(markup) is None
    assert html_mod.html_to_text(markup) == _parser_text(markup)


def test_fast_html_path_matches_the_parser_on_random_markup() -> None:
    pieces = [
        "<p>", "</p>", "<div>", "</div>", "<br>", "<br/>", "<td>", "</td>", "<tr>", "<pre>",
        "</pre>", " ", "  ", "\n", "\t", "\xa0", "word", "&amp;", "&nbsp;", "&bogus", "&", ">",
        "<", "<span a='1'>", "</span>", "<h2>", "</h2 >", "<li>", "<p/>",
    ]
    rng = random.Random(11)
    fast = 0
    for _ in range(3000):
        markup = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 20)))
        if html_mod._fast_extract(markup) is not None:
            fast += 1
        assert html_mod.html_to_text(markup) == _parser_text(markup), markup
    assert fast > 500  # the comparison exercised the fast path, not only the fallback


def test_one_line_and_control_char_checks_match_their_definitions() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        text = "".join(chr(rng.choice([0, 9, 10, 13, 31, 32, 65, 127, 0x85, 0x9F, 0xE9, 0xDC80]))
                       for _ in range(rng.randint(0, 12)))
        expected = "".join(
            " " if ch in "\r\n\t" else ch for ch in text if ch >= " " or ch in "\r\n\t"
        )
        assert mime._one_line(text) == expected
        assert webhooks._has_control_chars(text) == any(
            ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text
        )


# ---------------------------------------------------------------------- HTTP


def test_environment_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    session = requests.Session()
    client = HttpClient(session=session)
    url = "https://graph.example/v1.0/me"
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
                 "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    assert client._environment_settings(session, url, False) == (
        session.merge_environment_settings(url, {}, False, None, None)
    )
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/bundle.pem")
    settings = client._environment_settings(session, url, False)
    assert settings["proxies"]["https"] == "http://proxy.example:3128"
    assert settings["verify"] == "/etc/bundle.pem"
    assert settings == session.merge_environment_settings(url, {}, False, None, None)
    monkeypatch.setenv("NO_PROXY", "graph.example")
    assert "https" not in client._environment_settings(session, url, False)["proxies"]
    session.trust_env = False
    assert client._environment_settings(session, url, False)["verify"] is True


def test_a_session_with_its_own_request_is_called_as_it_is() -> None:
    calls: list[str] = []

    class Recording(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            calls.append(url)
            return super().request(method, url, *args, **kwargs)

    with responses.RequestsMock() as mock:
        mock.add(responses.GET, "https://api.example/x", json={"ok": True})
        response = HttpClient(session=Recording()).request("GET", "https://api.example/x")
    assert response.json() == {"ok": True}
    assert calls == ["https://api.example/x"]


def test_first_attempt_failure_is_retried_exactly_as_before() -> None:
    waits: list[float] = []
    client = HttpClient(sleep=waits.append)
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, "https://api.example/x", status=503, headers={"Retry-After": "3"})
        mock.add(responses.GET, "https://api.example/x", json={"ok": True})
        assert client.request("GET", "https://api.example/x").json() == {"ok": True}
    assert waits == [3.0]
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, "https://api.example/y", status=503)
        with pytest.raises(ProviderUnavailableError):
            client.request("GET", "https://api.example/y", retry=False)
    assert waits == [3.0]  # retry=False: no second attempt, no wait


# ---------------------------------------------------------------------- FakeGraph indexes


def _subscribe(fake: FakeGraph, mailbox: str, clock: Any, client_id: str = "app") -> int:
    token = fake.issue_tokens(mailbox, client_id=client_id)["access_token"]
    body = {
        "changeType": "created",
        "notificationUrl": "https://hooks.example/graph",
        "resource": "me/mailFolders('Inbox')/messages",
        "expirationDateTime": (clock.now + timedelta(minutes=60)).isoformat(),
    }
    with responses.RequestsMock() as mock:
        fake.register(mock)
        return requests.post(
            f"{fake.base_url}/subscriptions", json=body,
            headers={"Authorization": f"Bearer {token}"}, timeout=10,
        ).status_code


def test_one_app_subscribes_every_mailbox_but_each_only_once(clock: Any) -> None:
    fake = FakeGraph(clock=clock, seed=1)
    assert _subscribe(fake, "a@contoso.example", clock) == 201
    assert _subscribe(fake, "b@contoso.example", clock) == 201  # another user: allowed
    assert _subscribe(fake, "A@contoso.example", clock) == 409  # same user, same app
    assert _subscribe(fake, "a@contoso.example", clock, client_id="other-app") == 201
    # Expired subscriptions are gone (checked lazily), so the combination is free again.
    clock.now += timedelta(minutes=61)
    assert _subscribe(fake, "a@contoso.example", clock) == 201
    assert len(fake.subscriptions) == 1


def test_subscription_expiry_follows_a_shortened_renewal(clock: Any) -> None:
    fake = FakeGraph(clock=clock, seed=1)
    assert _subscribe(fake, "a@contoso.example", clock) == 201
    (sub,) = fake.subscriptions.values()
    token = fake.issue_tokens("a@contoso.example", client_id="app")["access_token"]
    with responses.RequestsMock() as mock:
        fake.register(mock)
        answer = requests.patch(
            f"{fake.base_url}/subscriptions/{sub.id}",
            json={"expirationDateTime": (clock.now + timedelta(minutes=50)).isoformat()},
            headers={"Authorization": f"Bearer {token}"}, timeout=10,
        )
    assert answer.status_code == 200
    clock.now += timedelta(minutes=55)  # past the new expiry, before the original one
    assert fake._active_subscriptions() == []


def test_user_lookup_index(clock: Any) -> None:
    fake = FakeGraph(clock=clock, seed=1)
    users = [fake.add_mailbox(f"user{n}@contoso.example") for n in range(50)]
    assert fake.user("USER7@contoso.example") is users[7]
    assert fake.user(users[9].id.upper()) is users[9]
    assert fake.add_mailbox("User3@Contoso.example") is users[3]
    with pytest.raises(KeyError):
        fake.user("nobody@contoso.example")
    # A user added to ``users`` directly (not through add_mailbox) is found too.
    from mailparity.testing.fake_graph import GraphUser

    extra = GraphUser(id="00000000-0000-0000-0000-00000000abcd", mail="direct@contoso.example",
                      display_name="direct")
    fake.users[extra.id] = extra
    assert fake.user("Direct@contoso.example") is extra


# ---------------------------------------------------------------------- prepared URLs

_GRAPH_QUERY = graph_adapter._MESSAGE_QUERY


def _prepared_both_ways(
    url: str, session: requests.Session | None = None
) -> tuple[requests.PreparedRequest | None, requests.PreparedRequest]:
    session = session or requests.Session()
    headers = {"Authorization": "Bearer t", "Prefer": 'IdType="ImmutableId"'}
    fast = HttpClient._prepare_with_query(
        session, "get", url, headers=headers, data=None, json=None, params=None
    )
    plain = session.prepare_request(
        requests.Request(method="GET", url=url, headers=dict(headers), data={}, params={})
    )
    return fast, plain


def _same_request(fast: requests.PreparedRequest, plain: requests.PreparedRequest) -> None:
    assert fast.url == plain.url
    assert fast.method == plain.method
    assert dict(fast.headers) == dict(plain.headers)
    assert fast.body == plain.body


def test_graph_fetch_url_is_prepared_without_renormalizing_its_query() -> None:
    url = f"https://graph.example/v1.0/users/a%40contoso.example/messages/AAMk-_=?{_GRAPH_QUERY}"
    session = requests.Session()
    # A cookie scoped to the path: the cookie header must come out the same with the query gone.
    session.cookies.set("route", "r1", domain="graph.example", path="/v1.0/users")
    fast, plain = _prepared_both_ways(url, session)
    assert fast is not None  # the fast path was taken
    _same_request(fast, plain)
    assert plain.headers["Cookie"] == "route=r1"
    assert fast.url == url


@pytest.mark.parametrize(
    "url",
    [
        "https://graph.example/v1.0/me/messages/x?$select=a b",  # space: requests encodes it
        "https://graph.example/v1.0/me/messages/x?a=%7e",  # lower-case escape: rewritten
        "https://graph.example/v1.0/me/messages/x?a=%41",  # escaped unreserved: decoded
        "https://graph.example/v1.0/me/messages/x?a=ü",  # non-ASCII
        "https://graph.example/v1.0/me/messages/x?a=%zz",  # broken escape
        "https://GRAPH.example/v1.0/me/messages/x?a=1",  # host rewritten: not canonical
        "https://graph.example/v1.0/me/messages/ü?a=1",  # path rewritten
        "https://graph.example/v1.0/me/messages/x?a=1#frag",  # fragment
        "https://graph.example/v1.0/me/../messages/x?a=1",  # dot segments
        "https://graph.example?a=1",  # empty path becomes "/"
        "https://graph.example/v1.0/me/messages/x?",  # empty query
        "https://graph.example/v1.0/me/messages/x",  # no query
    ],
)
def test_urls_requests_would_rewrite_take_the_usual_path(url: str) -> None:
    fast, plain = _prepared_both_ways(url)
    if fast is not None:
        _same_request(fast, plain)
    if url.endswith(("a b", "%7e", "%41", "a=ü", "%zz")):
        assert fast is None


def test_params_or_a_session_auth_take_the_usual_path() -> None:
    url = f"https://graph.example/v1.0/me/messages/x?{_GRAPH_QUERY}"
    session = requests.Session()
    fast = HttpClient._prepare_with_query(
        session, "GET", url, headers={}, data=None, json=None, params={"a": "1"}
    )
    assert fast is None
    session.auth = ("user", "pass")  # an auth may sign the full URL
    fast = HttpClient._prepare_with_query(
        session, "GET", url, headers={}, data=None, json=None, params=None
    )
    assert fast is None


#: URL pieces, escapes included (valid, lower-case, of unreserved and reserved characters).
_URL_PIECES = [*"abcXYZ019-._~%/?#=&+$!*'(),;:@[] \u00fc\x7f", "%2F", "%41", "%e9", "%25"]


def test_fast_prepared_url_equals_requests_on_random_urls() -> None:
    rng = random.Random(11)
    fast_taken = refused = 0
    for _ in range(3000):
        path = "".join(rng.choice(_URL_PIECES) for _ in range(rng.randint(0, 12)))
        # Mostly characters requests keeps, so that the fast path is exercised often.
        safe = _URL_PIECES[:20] if rng.random() < 0.6 else _URL_PIECES
        query = "".join(rng.choice(safe) for _ in range(rng.randint(1, 16)))
        url = f"http://h.example/{path}?{query}"
        try:
            fast, plain = _prepared_both_ways(url)
        except (requests.RequestException, ValueError, UnicodeError) as exc:
            # The fast path may refuse a URL only where requests refuses it too.
            with pytest.raises(type(exc)):
                requests.Session().prepare_request(requests.Request("GET", url))
            refused += 1
            continue
        if fast is not None:
            fast_taken += 1
            _same_request(fast, plain)
    assert fast_taken > 200, (fast_taken, refused)


def test_graph_client_sends_the_same_url_as_before() -> None:
    client = HttpClient(session=requests.Session())
    url = f"https://graph.example/v1.0/me/messages/AAMk?{_GRAPH_QUERY}"
    with responses.RequestsMock() as mock:
        mock.get(url, json={"id": "AAMk"})
        response = client.request("GET", url, headers={"Authorization": "Bearer t"})
        assert response.json() == {"id": "AAMk"}
        assert mock.calls[0].request.url == url
        assert mock.calls[0].request.headers["Authorization"] == "Bearer t"


_PARAM_VALUES = st.one_of(
    st.none(), st.text(max_size=12), st.integers(-5, 10**12), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.lists(st.one_of(st.none(), st.text(max_size=6), st.integers(0, 99)), max_size=3),
    st.tuples(st.text(max_size=4)),
)


@settings(max_examples=300, deadline=None)
@given(
    params=st.dictionaries(st.text(max_size=8), _PARAM_VALUES, max_size=4),
    query=st.sampled_from(["", "?a=1", "?$select=id,subject"]),
)
def test_params_encoded_by_the_client_equal_requests(params: dict[str, Any], query: str) -> None:
    url = f"https://gmail.example/gmail/v1/users/me/messages/x{query}"
    encoded = http_mod._encode_params(params)
    assert encoded is not None
    joined = http_mod._with_query(url, encoded)
    assert joined is not None
    plain = requests.Session().prepare_request(requests.Request("GET", url, params=params))
    fast = requests.Session().prepare_request(requests.Request("GET", joined))
    assert fast.url == plain.url


@pytest.mark.parametrize(
    "params",
    [{"a": b"bytes"}, {"a": {"nested": 1}}, {"a": {1, 2}}, {1: "int name"}, {"a": [b"x"]}],
)
def test_params_beyond_the_plain_kinds_are_left_to_requests(params: dict[Any, Any]) -> None:
    assert http_mod._encode_params(params) is None


def test_a_url_with_a_fragment_or_an_empty_query_is_left_to_requests() -> None:
    assert http_mod._with_query("https://h.example/x#f", "a=1") is None
    assert http_mod._with_query("https://h.example/x?", "a=1") is None
    assert http_mod._with_query("https://h.example/x", "") == "https://h.example/x"


def test_gmail_style_params_are_sent_as_requests_would_send_them() -> None:
    client = HttpClient(session=requests.Session())
    url = "https://gmail.example/gmail/v1/users/me/history"
    params = {"startHistoryId": 1234, "historyTypes": "messageAdded", "labelId": "INBOX",
              "pageToken": None, "metadataHeaders": ["From", "Message-ID"]}
    expected = requests.Session().prepare_request(requests.Request("GET", url, params=params)).url
    with responses.RequestsMock() as mock:
        mock.get(url, json={"historyId": "1"})
        client.request("GET", url, params=params, headers={"Authorization": "Bearer t"})
        assert mock.calls[0].request.url == expected


# ---------------------------------------------------------------------- header values


@pytest.mark.parametrize(
    "value",
    [
        "plain", "  padded  ", "", "Zoë Åkesson <z@example.com>", "=?utf-8?q?R=C3=A9?= x",
        "a\r\n b", "tab\there", "nbsp\u00a0inside", "ctl\x01char", "del\x7fchar",
        "surrogate \udce9", "line\u2028sep", "=?", "trailing\u3000", b"bytes \xe9",
    ],
)
def test_header_value_fast_path_matches_the_full_decoder(value: str | bytes) -> None:
    assert mime.decode_header_value(value) == mime._decode_header_value_full(value)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_header_value_fast_path_matches_the_full_decoder_on_random_text(value: str) -> None:
    assert mime.decode_header_value(value) == mime._decode_header_value_full(value)


# ---------------------------------------------------------------------- event ids


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
       st.text(max_size=30).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
       st.booleans())
def test_event_id_equals_uuid5(provider_id: str, message_id: str, complete: bool) -> None:
    kind = "complete" if complete else "minimal"
    expected = uuid.uuid5(EVENT_NAMESPACE, f"{provider_id}\x00{message_id}\x00{kind}")
    assert event_id_for(provider_id, message_id, complete=complete) == str(expected)


# ---------------------------------------------------------------------- processing


class _NoMark:
    def mark_message_processed(self, message_id: str) -> None:
        return None


def _message(complete: bool) -> EmailMessage:
    return EmailMessage(
        id="m1", provider="microsoft", provider_id="ms-1", tenant="t",
        mailbox="a@contoso.example", received_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        body=EmailBody(text="hi"), complete=complete,
    )


@pytest.mark.parametrize("complete", [True, False])
def test_published_event_is_complete_and_the_fetched_message_untouched(complete: bool) -> None:
    store = InMemoryStore()
    store.save_provider(_config())
    publisher = InMemoryPublisher()
    processor = Processor(store, publisher)
    message = _message(complete)
    result = processor.process_message(
        _NoMark(), _config(), "m1", prefetched=message  # type: ignore[arg-type]
    )
    assert result.status == "published"
    (event,) = publisher.events
    assert isinstance(event, InboundEmailReceived)
    assert event.email_data.complete is True
    assert event.email_data == message.model_copy(update={"complete": True})
    assert event.event_id == event_id_for("ms-1", "m1", complete=True)
    assert message.complete is complete  # the caller's message is never changed


def test_dedupe_owners_are_unique_per_attempt_and_per_processor() -> None:
    store = InMemoryStore()
    first = Processor(store, InMemoryPublisher(), worker_id="w")
    second = Processor(store, InMemoryPublisher(), worker_id="w")  # same id, other process
    owners: list[str] = []

    def take(processor: Processor) -> None:
        for _ in range(500):
            owners.append(processor._owner())

    threads = [threading.Thread(target=take, args=(p,)) for p in (first, first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(owners) == 1500
    assert len(set(owners)) == 1500
    assert all(owner.startswith("w:") for owner in owners)


# ---------------------------------------------------------------------- copies, more shapes


class _Extra(BaseModel):
    model_config = ConfigDict(extra="allow")

    tags: list[str] = []
    nested: dict[str, list[int]] = {}
    _cache: dict[str, list[str]] = PrivateAttr(default_factory=dict)


def test_copy_model_keeps_extra_private_and_fields_set_apart() -> None:
    model = _Extra(tags=["a"], nested={"k": [1]}, more=[{"x": 1}])  # type: ignore[call-arg]
    model._cache["c"] = ["v"]
    clone = copy_model(model)
    reference = model.model_copy(deep=True)
    assert clone == reference
    assert clone.model_fields_set == reference.model_fields_set
    assert clone.__pydantic_extra__ == reference.__pydantic_extra__
    assert clone._cache == {"c": ["v"]}
    clone.tags.append("b")
    clone.nested["k"].append(2)
    assert clone.__pydantic_extra__ is not None
    clone.__pydantic_extra__["more"][0]["x"] = 2
    clone._cache["c"].append("w")
    clone.model_fields_set.add("zzz")
    assert model.tags == ["a"]
    assert model.nested == {"k": [1]}
    assert model.__pydantic_extra__ == {"more": [{"x": 1}]}
    assert model._cache == {"c": ["v"]}
    assert "zzz" not in model.model_fields_set


def test_copy_model_copies_a_list_of_str_subclass_items_like_before() -> None:
    class Tag(str):
        pass

    model = _Extra(tags=[Tag("a"), "b"])
    clone = copy_model(model)
    assert clone == model.model_copy(deep=True)
    assert clone.tags is not model.tags


# ---------------------------------------------------------------------- Graph header lists


class _Name(str):
    pass


def test_graph_headers_validated_at_once_equal_one_header_at_a_time() -> None:
    items: list[Any] = [
        {"name": "Subject", "value": "=?utf-8?q?R=C3=A9?= plain"},
        {"name": "To", "value": " a@contoso.example "},
        {"name": _Name("X-Sub"), "value": "folded\r\n value"},
        {"name": "X-None", "value": None},  # no value: an empty one
        {"name": "", "value": "dropped"},
        {"value": "no name"},
        "not an object",
        {"name": "X-Ctl", "value": "a\x01b"},
    ]
    expected = [
        Header(
            name=item["name"],
            value=mime.decode_header_value(item["value"] if isinstance(item["value"], str) else ""),
        )
        for item in items
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]
    ]
    got = graph_messages.graph_headers(items)
    assert got == expected
    assert [h.model_fields_set for h in got] == [h.model_fields_set for h in expected]
    pairs = zip(got, expected, strict=True)
    assert all(type(h) is Header and type(h.name) is type(e.name) for h, e in pairs)
    assert graph_messages.graph_headers([]) == []
    assert graph_messages.graph_headers(None) == []
    assert graph_messages.graph_headers([{"name": "", "value": "x"}]) == []


# ---------------------------------------------------------------------- plain sessions


def _plain_both_ways(
    session: requests.Session, headers: dict[str, Any], data: Any = None, json: Any = None
) -> tuple[requests.PreparedRequest | None, requests.PreparedRequest]:
    url = "https://graph.example/v1.0/me/messages/AAMk="
    fast = http_mod._prepare_plain(session, "post", url, headers=headers, data=data, json=json)
    plain = session.prepare_request(
        requests.Request(method="POST", url=url, headers=dict(headers), data=data or {},
                         json=json, params={})
    )
    return fast, plain


def _same_prepared(fast: requests.PreparedRequest, plain: requests.PreparedRequest) -> None:
    assert (fast.method, fast.url, fast.body) == (plain.method, plain.url, plain.body)
    assert list(fast.headers.items()) == list(plain.headers.items())  # names, case and order
    assert fast.hooks == plain.hooks
    assert type(fast._cookies) is type(plain._cookies)  # type: ignore[attr-defined]
    assert len(fast._cookies) == len(plain._cookies) == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("headers", "data", "json"),
    [
        ({"Authorization": "Bearer t", "Prefer": 'IdType="ImmutableId"'}, None, None),
        ({"accept": "text/plain", "USER-AGENT": "mine"}, None, {"isRead": True}),  # overrides
        ({"Accept-Encoding": None, "X-A": "1"}, b"raw bytes", None),  # None drops a header
        ({}, "text body", None),
    ],
)
def test_plain_session_is_prepared_as_requests_does(
    headers: dict[str, Any], data: Any, json: Any, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no netrc file there
    monkeypatch.delenv("NETRC", raising=False)
    session = requests.Session()
    session.headers["X-Session"] = "s"
    fast, plain = _plain_both_ways(session, headers, data, json)
    assert fast is not None
    _same_prepared(fast, plain)


def test_sessions_with_state_are_prepared_by_requests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    headers = {"Authorization": "Bearer t"}
    changes: list[Any] = [
        lambda s: s.cookies.set("c", "1", domain="graph.example"),
        lambda s: setattr(s, "auth", ("u", "p")),
        lambda s: s.params.update({"a": "1"}),
        lambda s: s.hooks["response"].append(lambda r, *a, **k: r),
    ]
    for change in changes:
        session = requests.Session()
        change(session)
        fast, _ = _plain_both_ways(session, headers)
        assert fast is None
    # A netrc file: requests may take credentials from it.
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine graph.example login u password p\n")
    session = requests.Session()
    fast, plain = _plain_both_ways(session, headers)
    assert fast is None
    assert plain.headers["Authorization"].startswith("Basic ")  # why it must be requests' way
    netrc.unlink()
    monkeypatch.setenv("NETRC", str(tmp_path / "elsewhere"))
    fast, plain = _plain_both_ways(session, headers)
    assert fast is not None
    _same_prepared(fast, plain)
    session.trust_env = False  # netrc is not read at all then
    (tmp_path / "elsewhere").write_text("machine graph.example login u password p\n")
    fast, plain = _plain_both_ways(session, headers)
    assert fast is not None
    _same_prepared(fast, plain)
