"""The performance shortcuts give exactly what the plain code paths give.

Each fast path (store copies, the HTML fast tokenizer, cached request environment, the first
HTTP attempt outside tenacity, the FakeGraph indexes) is checked against the behaviour it
replaces, including the inputs that must take the slow path.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import responses

from mailparity import html as html_mod
from mailparity import mime, webhooks
from mailparity.errors import ProviderUnavailableError
from mailparity.http import HttpClient
from mailparity.models import Job, MicrosoftProviderConfig
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
