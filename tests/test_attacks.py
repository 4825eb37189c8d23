"""The attack suite: what a hostile sender or a careless deployment could do, replayed.

Each test replays one attack, over real HTTP on 127.0.0.1 wherever the attack arrives over HTTP,
and asserts the safe outcome. They stay here so that each fix stays fixed:

* webhook floods: one summary log line per request, however many items; items per Graph
  notification capped;
* a Pub/Sub push signed by an allowed service account but delivered by another subscription than
  the mailbox's own: acknowledged, ignored, no job;
* attachment names built to escape a directory (``../../etc/cron.d/pwn``, absolute paths, NUL,
  CR LF, ``..``): the same safe name on the Graph, Gmail and raw-MIME paths;
* message and attachment ids that are dot segments (``..`` would turn ``/messages/..`` into
  ``/me/``): refused with a clear error before any request, at webhook intake too;
* a TLS server whose certificate is not trusted: a TLSVerificationError at once, naming the cause
  and the fix, never retried as an outage; the testing kit's trust recipe works even where
  ``REQUESTS_CA_BUNDLE`` is set.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import responses

from mailparity.errors import (
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    TLSVerificationError,
    is_transient,
)
from mailparity.mime import message_from_mime
from mailparity.models import EmailMessage
from mailparity.providers import create_adapter
from mailparity.providers.gmail import GmailAdapter
from mailparity.providers.graph import MicrosoftGraphAdapter
from mailparity.publishers import InMemoryPublisher
from mailparity.stores.memory import InMemoryStore
from mailparity.stores.sqlite import SqliteStore
from mailparity.testing import FakeGmail, FakeGraph, connect_google, connect_microsoft, serve
from mailparity.testing.oidc import TestOidcSigner, pubsub_push_body
from mailparity.urlpath import path_segment
from mailparity.webhooks import GOOGLE_CERTS_URL, WebhookHandler
from mailparity.wsgi import (
    ProductionServer,
    ServerLimits,
    WebhookServer,
    serve_in_thread,
    serve_production_in_thread,
)
from webhook_support import (
    AUDIENCE,
    CLIENT_STATE,
    GMAIL_MAILBOX,
    GMAIL_PROVIDER,
    PUSH_SA,
    T0,
    assert_no_secrets,
    gmail_config,
    graph_item,
    microsoft_config,
)

MEGABYTE = 1_000_000
LOOPBACK = re.compile(r"http://127\.0\.0\.1:\d+/")


@pytest.fixture(scope="module")
def signer() -> TestOidcSigner:
    return TestOidcSigner(kid="attack-kid")


class Site:
    """A webhook server on loopback with one Graph and one Gmail mailbox."""

    def __init__(self, server: WebhookServer, store: InMemoryStore, signer: TestOidcSigner,
                 handler: WebhookHandler) -> None:
        self.server = server
        self.store = store
        self.signer = signer
        self.handler = handler

    def post(self, path: str, body: bytes, **headers: str) -> requests.Response:
        return requests.post(f"{self.server.url}{path}", data=body, timeout=30,
                             headers={"Content-Type": "application/json", **headers})

    def push(self, body: bytes) -> requests.Response:
        token = self.signer.push_token(AUDIENCE, PUSH_SA)
        return self.post("/webhooks/google", body, Authorization=f"Bearer {token}")


@pytest.fixture
def site(signer: TestOidcSigner) -> Iterator[Site]:
    store = InMemoryStore()
    store.save_provider(microsoft_config())
    store.save_provider(gmail_config(
        history_id=1000, pubsub_subscription_name="gmail-push"))
    handler = WebhookHandler(store=store, publisher=InMemoryPublisher(),
                             google_audience=AUDIENCE, google_service_accounts=[PUSH_SA])
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(LOOPBACK)
        mock.get(GOOGLE_CERTS_URL, json=signer.certs_json(),
                 headers={"Cache-Control": "public, max-age=3600"})
        with serve_in_thread(handler) as server:
            yield Site(server, store, signer, handler)


def _records(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == logger]


# ------------------------------------------------------------------------------------------------
# Webhook floods


def _filled(item: Any, limit: int = MEGABYTE) -> bytes:
    """A ``{"value": [...]}`` body of about ``limit`` bytes, repeating ``item``."""
    one = len(json.dumps(item, separators=(",", ":"))) + 1
    count = (limit - 16) // one
    return json.dumps({"value": [item] * count}, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "item",
    [
        pytest.param({"subscriptionId": "guessed-subscription", "clientState": "guess"},
                     id="unknown-subscriptions"),
        pytest.param(7, id="list-of-numbers"),
    ],
)
def test_one_megabyte_graph_flood_is_refused_with_one_log_line(
    site: Site, caplog: pytest.LogCaptureFixture, item: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailparity")
    body = _filled(item)
    assert MEGABYTE * 0.9 < len(body) <= MEGABYTE
    response = site.post("/webhooks/microsoft", body)
    assert response.status_code == 413
    assert len(_records(caplog, "mailparity.webhooks")) == 1
    assert site.store.list_jobs() == []


def test_items_up_to_the_cap_are_summarised_in_one_line(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailparity")
    cap = site.handler.max_notification_items
    items: list[Any] = [graph_item("AAMkAGI2THVSAAA=")]
    items += [{"subscriptionId": f"guessed-{n}", "clientState": "forged-state-1"}
              for n in range(cap - 3)]
    items += [graph_item("AAMkAGI2THVTAAA=", client_state="forged-state-2"), 12]
    response = site.post("/webhooks/microsoft", json.dumps({"value": items}).encode())
    assert response.status_code == 202
    lines = _records(caplog, "mailparity.webhooks")
    assert len(lines) == 1
    line = lines[0]
    assert line.levelno == logging.WARNING
    text = line.getMessage()
    assert f"{cap} item(s), 1 job(s) queued" in text
    assert f"{cap - 3} unknown subscription ('guessed-0', 'guessed-1', 'guessed-2', ...)" in text
    assert "1 missing or wrong clientState (ms-1)" in text
    assert "1 not an object" in text
    assert_no_secrets(caplog.text, "forged-state-1", "forged-state-2")
    assert len(site.store.list_jobs()) == 1


def test_one_item_over_the_cap_is_refused_whole(site: Site) -> None:
    cap = site.handler.max_notification_items
    body = json.dumps({"value": [graph_item()] * (cap + 1)}).encode()
    assert site.post("/webhooks/microsoft", body).status_code == 413
    assert site.store.list_jobs() == []


def test_the_item_cap_is_configurable() -> None:
    store = InMemoryStore()
    store.save_provider(microsoft_config())
    handler = WebhookHandler(store=store, publisher=InMemoryPublisher(),
                             max_notification_items=2)
    with serve_in_thread(handler) as server:
        url = f"{server.url}/webhooks/microsoft"
        two = {"value": [graph_item("AAMkAGI2THVSAAA="), graph_item("AAMkAGI2THVTAAA=")]}
        assert requests.post(url, json=two, timeout=10).status_code == 202
        three = {"value": [*two["value"], graph_item("AAMkAGI2THVUAAA=")]}
        assert requests.post(url, json=three, timeout=10).status_code == 413
    assert len(store.list_jobs()) == 2


# ------------------------------------------------------------------------------------------------
# Pub/Sub pushes bound to the mailbox's own subscription


def test_push_from_another_subscription_is_acknowledged_and_ignored(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailparity")
    body = pubsub_push_body(GMAIL_MAILBOX, 2000,
                            subscription="projects/attacker/subscriptions/gmail-push")
    response = site.push(body)
    assert response.status_code == 204
    assert site.store.list_jobs() == []
    lines = [r.getMessage() for r in _records(caplog, "mailparity.webhooks")
             if r.levelno >= logging.WARNING]
    assert len(lines) == 1
    assert "projects/attacker/subscriptions/gmail-push" in lines[0]
    assert "projects/my-project/subscriptions/gmail-push" in lines[0]
    assert site.store.get_meta(GMAIL_PROVIDER, "last_push_at") is None


def test_push_from_the_mailbox_own_subscription_is_queued(site: Site) -> None:
    body = pubsub_push_body(GMAIL_MAILBOX, 2000,
                            subscription="projects/my-project/subscriptions/gmail-push")
    assert site.push(body).status_code == 204
    jobs = site.store.list_jobs()
    assert [(job.kind, job.provider_id) for job in jobs] == [("cursor", GMAIL_PROVIDER)]


@pytest.mark.parametrize(
    ("configured", "project", "pushed", "accepted"),
    [
        (None, "p", "projects/anything/subscriptions/x", True),
        ("sub", "p", "projects/p/subscriptions/sub", True),
        ("sub", "p", "projects/q/subscriptions/sub", False),
        ("sub", None, "projects/q/subscriptions/sub", True),
        ("sub", None, "projects/q/subscriptions/other", False),
        ("sub", None, "projects/a/b/subscriptions/sub", False),
        ("sub", None, "sub", False),
        ("projects/p/subscriptions/sub", None, "projects/p/subscriptions/sub", True),
        ("projects/p/subscriptions/sub", "q", "projects/q/subscriptions/sub", False),
    ],
)
def test_subscription_binding_rule(
    configured: str | None, project: str | None, pushed: str, accepted: bool
) -> None:
    config = gmail_config(pubsub_subscription_name=configured, project_id=project)
    assert config.accepts_push_subscription(pushed) is accepted


def test_client_state_is_never_logged_in_the_summary(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailparity")
    near_miss = CLIENT_STATE[:-1] + "x"
    body = json.dumps({"value": [graph_item(client_state=near_miss)]}).encode()
    assert site.post("/webhooks/microsoft", body).status_code == 202
    assert_no_secrets(caplog.text, near_miss)
    assert "missing or wrong clientState" in caplog.text


# ------------------------------------------------------------------------------------------------
# Attachment names: one rule on every path

HOSTILE_NAMES = (
    "../../../../etc/cron.d/pwn",
    "/etc/passwd",
    "C:\\Windows\\System32\\evil.dll",
    "report\x00.pdf.exe",
    "invoice\r\nX-Injected: yes.pdf",
    "..",
    ".",
    "..\\..\\boot.ini",
)


def _hostile_mime(mailbox: str) -> bytes:
    """A message whose attachments carry HOSTILE_NAMES, RFC 2231-encoded as a sender would."""
    lines = [
        "From: Mallory <mallory@example.org>",
        f"To: {mailbox}",
        "Subject: names",
        "Message-ID: <hostile-names@example.org>",
        "Date: Fri, 27 Feb 2026 09:31:02 +0000",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b0undary"',
        "",
        "--b0undary",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "see attached",
    ]
    for name in HOSTILE_NAMES:
        lines += [
            "--b0undary",
            "Content-Type: application/octet-stream",
            f"Content-Disposition: attachment; filename*=utf-8''{quote(name, safe='')}",
            "Content-Transfer-Encoding: base64",
            "",
            "cGF5bG9hZA==",
        ]
    lines += ["--b0undary--", ""]
    return "\r\n".join(lines).encode()


def _parse(raw: bytes) -> EmailMessage:
    return message_from_mime(raw, id="m1", provider="google", provider_id="p", tenant="t",
                             mailbox="box@example.test", received_at=T0)


def _assert_safe(name: str) -> None:
    assert name not in ("", ".", "..")
    assert "/" not in name
    assert "\\" not in name
    assert not re.search(r"[\x00-\x1f\x7f]", name)


def test_hostile_attachment_names_are_identical_and_safe_on_every_path() -> None:
    graph, gmail = FakeGraph(), FakeGmail()
    graph_box, gmail_box = "desk@contoso.test", "help@example.test"
    with serve(graph, gmail):
        session = requests.Session()
        session.trust_env = False
        store = InMemoryStore()
        ms = connect_microsoft(store, graph, graph_box, subscribe=False, session=session)
        gg = connect_google(store, gmail, gmail_box, subscribe=False, session=session)
        graph_id = graph.deliver(graph_box, _hostile_mime(graph_box))
        # Exchange hands the decoded name over verbatim: put exactly that into the fake's JSON.
        for attachment, name in zip(graph.message(graph_id).attachments, HOSTILE_NAMES,
                                    strict=True):
            attachment.name = name
        gmail_id = gmail.deliver(gmail_box, _hostile_mime(gmail_box))
        graph_names = [a.name for a in create_adapter(ms, store=store, session=session)
                       .get_message_details(graph_id).attachments]
        gmail_names = [a.name for a in create_adapter(gg, store=store, session=session)
                       .get_message_details(gmail_id).attachments]
        gmail_raw_names = [a.name for a in GmailAdapter(gg, store=store, session=session,
                                                         message_format="raw")
                           .get_message_details(gmail_id).attachments]
    mime_names = [a.name for a in _parse(_hostile_mime(gmail_box)).attachments]
    assert graph_names == gmail_names == gmail_raw_names == mime_names
    assert mime_names[:3] == ["pwn", "passwd", "evil.dll"]
    for name in mime_names:
        _assert_safe(name)
    assert len(set(mime_names)) == len(mime_names)


# ------------------------------------------------------------------------------------------------
# Dot segments and other path-breaking ids


@pytest.mark.parametrize("bad_id", ["..", ".", "", "a\r\nb", "x" * 5000])
def test_path_breaking_ids_are_refused_before_any_request(bad_id: str) -> None:
    graph, gmail = FakeGraph(), FakeGmail()
    with serve(graph, gmail) as server:
        session = requests.Session()
        session.trust_env = False
        store = InMemoryStore()
        ms = create_adapter(connect_microsoft(store, graph, "desk@contoso.test", subscribe=False,
                                              session=session, processed_strategy="mark_read"),
                            store=store, session=session)
        gg = create_adapter(connect_google(store, gmail, "help@example.test", subscribe=False,
                                           session=session), store=store, session=session)
        real = graph.deliver("desk@contoso.test", _hostile_mime("desk@contoso.test"))
        before = len(graph.requests) + len(gmail.requests)
        calls: list[Callable[[], object]] = [
            lambda: ms.get_message_details(bad_id),
            lambda: ms.get_attachment_content(real, bad_id),
            lambda: ms.get_attachment_content(bad_id, "AAMkAGI2THVSAAA="),
            lambda: ms.mark_message_processed(bad_id),
            lambda: gg.get_message_details(bad_id),
            lambda: gg.get_attachment_content("18c9a2b3c4d5e6f7", bad_id),
        ]
        for call in calls:
            with pytest.raises((BadRequestError, NotFoundError)) as raised:
                call()
            assert "id" in str(raised.value)
        assert len(graph.requests) + len(gmail.requests) == before
        assert server.url  # the server was up the whole time


def test_dot_segment_error_is_clear() -> None:
    with pytest.raises(BadRequestError, match=r"Graph message id '\.\.' is a dot segment"):
        path_segment("..", "Graph message id", provider="microsoft")
    assert path_segment("a/b?c#d", "id") == "a%2Fb%3Fc%23d"
    assert path_segment("%2E%2E", "id") == "%252E%252E"


def test_graph_notification_naming_a_dot_segment_queues_nothing(site: Site) -> None:
    body = json.dumps({"value": [graph_item(".."), graph_item(".")]}).encode()
    assert site.post("/webhooks/microsoft", body).status_code == 202
    assert site.store.list_jobs() == []


# ------------------------------------------------------------------------------------------------
# TLS: an untrusted certificate is named, never retried; the kit's trust survives the environment

GRAPH_BOX = "desk@contoso.test"


def test_untrusted_certificate_is_not_retried_and_names_cause_and_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    graph = FakeGraph()
    with serve(graph, tls=True) as server:
        store = InMemoryStore()
        config = connect_microsoft(store, graph, GRAPH_BOX, subscribe=False,
                                   session=server.session())
        message_id = graph.deliver(GRAPH_BOX, _hostile_mime(GRAPH_BOX))
        waits: list[float] = []
        untrusting = requests.Session()  # trusts the public CAs only, as in production
        adapter = MicrosoftGraphAdapter(config, store=store, session=untrusting,
                                        sleep=waits.append)
        with pytest.raises(TLSVerificationError) as raised:
            adapter.get_message_details(message_id)
    text = str(raised.value)
    assert server.url in text  # scheme, host and port: the server that was not trusted
    assert "certificate" in text.lower()
    assert "server.trust(session)" in text
    assert "/messages" not in text  # never the path or query
    assert waits == []  # not retried
    assert not is_transient(raised.value)
    assert isinstance(raised.value, ConfigurationError)


def test_the_trust_recipe_works_where_requests_ca_bundle_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    graph = FakeGraph()
    with serve(graph, tls=True) as server:
        store = InMemoryStore()
        session = server.trust(requests.Session())
        config = connect_microsoft(store, graph, GRAPH_BOX, subscribe=False, session=session)
        message_id = graph.deliver(GRAPH_BOX, _hostile_mime(GRAPH_BOX))
        graph.expire_tokens()  # the next call refreshes through msal, over the same session
        adapter = MicrosoftGraphAdapter(config, store=store, session=session)
        assert adapter.get_message_details(message_id).subject == "names"

        # The old recipe fails there, loudly and with the reason, instead of being retried.
        naive = requests.Session()
        naive.verify = server.ca_path
        naive_adapter = MicrosoftGraphAdapter(config, store=store, session=naive,
                                              sleep=lambda _: None)
        with pytest.raises(TLSVerificationError, match="REQUESTS_CA_BUNDLE is set"):
            naive_adapter.get_message_details(message_id)


# ------------------------------------------------------------------------------------------------
# The production server: slow clients hold no thread, real pushes get through

SLOW_CLIENTS = 200


def _graph_push(n: int) -> bytes:
    return json.dumps({"value": [graph_item(f"AAMkAGI2THV{n:04d}AAA=")]}).encode()


def _slow_connections(server: ProductionServer, count: int) -> list[socket.socket]:
    """``count`` connections that never finish a request: idle, half-sent headers, half-sent
    bodies (a Content-Length far above what is sent), in turn."""
    partials = (
        b"",
        b"POST /webhooks/microsoft HTTP/1.1\r\nHost: hooks\r\nContent-Ty",
        b"POST /webhooks/microsoft HTTP/1.1\r\nHost: hooks\r\nContent-Type: application/json"
        b"\r\nContent-Length: 900000\r\n\r\n{\"value\": [",
    )
    sockets = []
    for n in range(count):
        sock = socket.create_connection((server.host, server.port), timeout=10)
        if partials[n % 3]:
            sock.sendall(partials[n % 3])
        sockets.append(sock)
    return sockets


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` (within 20 s; the read timeout is far shorter)."""
    sock.settimeout(20)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_slow_clients_do_not_stop_real_pushes() -> None:
    store = InMemoryStore()
    store.save_provider(microsoft_config())
    handler = WebhookHandler(store=store, publisher=InMemoryPublisher())
    # Fewer worker threads than slow clients by far: reading requests must not take a thread.
    limits = ServerLimits(threads=2, connection_limit=SLOW_CLIENTS + 50)
    with serve_production_in_thread(handler, limits=limits) as server:
        slow = _slow_connections(server, SLOW_CLIENTS)
        try:
            with requests.Session() as session:
                session.trust_env = False
                for n in range(10):
                    response = session.post(f"{server.url}/webhooks/microsoft",
                                            data=_graph_push(n), timeout=15,
                                            headers={"Content-Type": "application/json"})
                    assert response.status_code == 202
        finally:
            for sock in slow:
                sock.close()
    assert len(store.list_jobs()) == 10


def test_idle_and_half_sent_connections_are_closed_after_the_read_timeout() -> None:
    store = InMemoryStore()
    store.save_provider(microsoft_config())
    handler = WebhookHandler(store=store, publisher=InMemoryPublisher())
    # A cap of 8 descriptors (the listener and the wake-up pipe among them): the 6 slow
    # clients fill it, and a real push is accepted once the read timeout has closed them.
    limits = ServerLimits(threads=1, connection_limit=8, read_timeout=1, cleanup_interval=1)
    with serve_production_in_thread(handler, limits=limits) as server:
        slow = _slow_connections(server, 6)
        try:
            response = requests.post(f"{server.url}/webhooks/microsoft", data=_graph_push(1),
                                     timeout=20, headers={"Content-Type": "application/json"})
            assert response.status_code == 202
            for sock in slow:
                assert _closed_by_server(sock)
        finally:
            for sock in slow:
                sock.close()
    assert len(store.list_jobs()) == 1


def test_production_server_refuses_a_body_over_the_limit_unread() -> None:
    store = InMemoryStore()
    handler = WebhookHandler(store=store, publisher=InMemoryPublisher(), max_body_bytes=1000)
    with serve_production_in_thread(handler) as server:
        response = requests.post(f"{server.url}/webhooks/microsoft", data=b"x" * 5000,
                                 timeout=10)
    assert response.status_code == 413


# ------------------------------------------------------------------------------------------------
# `mailparity --verbose` raises mailparity's loggers only

#: Stands in for the browser and Google's token endpoint around the real installed-app flow
#: (google-auth-oauthlib, requests-oauthlib, oauthlib), all on 127.0.0.1.
_CONNECT_RUNNER = r'''
import json, sys, threading, webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

import mailparity.cli as cli
import mailparity.providers.gmail.connect as google_connect

token, refresh, code = sys.argv[1:4]


class TokenEndpoint(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"access_token": token, "refresh_token": refresh, "expires_in": 3599,
                           "token_type": "Bearer",
                           "scope": "https://www.googleapis.com/auth/gmail.modify"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


endpoint = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
threading.Thread(target=endpoint.serve_forever, daemon=True).start()
google_connect.GOOGLE_TOKEN_URI = f"http://127.0.0.1:{endpoint.server_address[1]}/token"
google_connect.profile_address = lambda access_token, ctx: "help@example.test"


class Browser:
    """Consents at once: follows the redirect with the authorization code."""

    def open(self, url, new=0, autoraise=True):
        query = parse_qs(urlsplit(url).query)
        target = (f"{query['redirect_uri'][0]}?state={query['state'][0]}&code={code}"
                  "&scope=https://www.googleapis.com/auth/gmail.modify")
        threading.Thread(target=requests.get, args=(target,), kwargs={"timeout": 10}).start()
        return True


webbrowser.get = lambda using=None: Browser()
sys.exit(cli.main(sys.argv[4:]))
'''


def _connect_google(tmp_path: Path, *options: str) -> tuple[int, str]:
    runner = tmp_path / "connect_runner.py"
    runner.write_text(_CONNECT_RUNNER)
    env = {**os.environ, "OAUTHLIB_INSECURE_TRANSPORT": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, str(runner), OAUTH_ACCESS, OAUTH_REFRESH, OAUTH_CODE,
         "--store", str(tmp_path / "store.sqlite3"), "--events", str(tmp_path / "events.jsonl"),
         *options,
         "connect", "google", "--client-id", "gclient.apps.googleusercontent.com",
         "--client-secret", OAUTH_CLIENT_SECRET, "--id", "g"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    return result.returncode, result.stdout + result.stderr


OAUTH_ACCESS = "ya29.access-token-never-logged-7f3a"
OAUTH_REFRESH = "1//refresh-token-never-logged-9c2e"
OAUTH_CODE = "4/auth-code-never-logged-1b8d"
OAUTH_CLIENT_SECRET = "GOCSPX-client-secret-never-logged"
OAUTH_SECRETS = (OAUTH_ACCESS, OAUTH_REFRESH, OAUTH_CODE, OAUTH_CLIENT_SECRET)


def test_verbose_connect_does_not_log_the_oauth_library_tokens(tmp_path: Path) -> None:
    code, output = _connect_google(tmp_path, "--verbose")
    assert code == 0, output
    assert "connected help@example.test as provider g" in output
    for secret in OAUTH_SECRETS:
        assert secret not in output


def test_a_third_party_logger_is_shown_only_when_named(tmp_path: Path) -> None:
    # The control: requests-oauthlib really logs the token at DEBUG, so the test above would
    # see it if --verbose raised every logger.
    code, output = _connect_google(tmp_path, "--debug-logger", "requests_oauthlib")
    assert code == 0, output
    assert OAUTH_ACCESS in output
    assert "DEBUG requests_oauthlib" in output


# ------------------------------------------------------------------------------------------------
# The SQLite store is private to its owner


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_sqlite_store_files_are_created_owner_only(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "store.sqlite3"
    previous = os.umask(umask)
    try:
        with SqliteStore(path) as store:
            store.save_provider(microsoft_config())
            modes = {
                suffix: stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode)
                for suffix in ("", "-wal", "-shm")
            }
    finally:
        os.umask(previous)
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


# ------------------------------------------------------------------------------------------------
# The built-in server's request log escapes control characters


def test_request_log_escapes_control_characters(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mailparity.wsgi")
    handler = WebhookHandler(store=InMemoryStore(), publisher=InMemoryPublisher())
    attacks = (
        b"GET /\x1b[2J\x1b[31mowned HTTP/1.0\r\n\r\n",
        b"GET /a\rINFO mailparity.webhooks: forged line\x07 HTTP/1.0\r\n\r\n",
        b"GET /\x9b31m\\x1b HTTP/1.0\r\n\r\n",
    )
    with serve_in_thread(handler) as server:
        for line in attacks:
            with socket.create_connection((server.host, server.port), timeout=10) as sock:
                sock.sendall(line)
                while sock.recv(4096):
                    pass
    logged = [r.getMessage() for r in caplog.records if r.name == "mailparity.wsgi"]
    assert len(logged) >= len(attacks)  # a malformed request line adds an error line
    for line in logged:
        assert not re.search(r"[\x00-\x1f\x7f-\x9f]", line)
    text = "\n".join(logged)
    assert r"/\x1b[2J\x1b[31mowned" in text
    assert r"/a\x0dINFO mailparity.webhooks: forged line\x07" in text
    assert r"\x9b31m\\x1b" in text  # a C1 control escaped, a literal backslash doubled


# ------------------------------------------------------------------------------------------------
# MIME: thousands of related parts beside a large HTML body cost one pass over the HTML

HTML_BYTES = 1_000_000


def _related_bomb(parts: int) -> bytes:
    """multipart/related: 1 MB of HTML (referencing one part) and ``parts`` tiny image parts."""
    html = "<html><body><img src=\"cid:part-0@x\">" + "<p>padding text</p>" * (
        HTML_BYTES // 19) + "</body></html>"
    lines = [
        "From: a@example.org",
        "To: b@example.org",
        "Subject: related bomb",
        "Message-ID: <bomb@example.org>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/related; boundary="rel"',
        "",
        "--rel",
        "Content-Type: text/html; charset=utf-8",
        "",
        html,
    ]
    for n in range(parts):
        lines += ["--rel", "Content-Type: image/png", f"Content-ID: <part-{n}@x>",
                  "Content-Transfer-Encoding: base64", "", "iVBORw0KGgo="]
    lines += ["--rel--", ""]
    return "\r\n".join(lines).encode()


def _html_calls(raw: bytes) -> tuple[int, EmailMessage]:
    """How many str methods were called on a string at least half the HTML's size while
    ``raw`` was normalized (lower(), find(), startswith(..., pos), ...). Turning the HTML into
    text makes many such calls, one per tag; what matters is that their number does not depend
    on the number of parts."""
    scans = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal scans
        if event == "c_call":
            owner = getattr(arg, "__self__", None)
            if isinstance(owner, str) and len(owner) >= HTML_BYTES // 2:
                scans += 1

    sys.setprofile(profile)
    try:
        message = _parse(raw)
    finally:
        sys.setprofile(None)
    return scans, message


@pytest.mark.timeout(120)
def test_related_parts_beside_large_html_cost_the_same_html_work_however_many() -> None:
    few_calls, few = _html_calls(_related_bomb(40))
    many_calls, many = _html_calls(_related_bomb(4000))
    assert len(few.attachments) == 40
    assert len(many.attachments) == 4000
    # The work on the HTML does not grow with the number of parts (it did: one lower-casing of
    # the whole HTML per part, 4,000 passes over 1 MB).
    assert many_calls == few_calls
    assert [a.is_inline for a in many.attachments[:2]] == [True, False]
