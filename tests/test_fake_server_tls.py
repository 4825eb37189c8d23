"""The loopback server's TLS mode: a throwaway CA and certificate, https URLs, msal refreshing
through the Graph adapter's session against FakeGraph, Gmail over TLS, clean-up, and clients that
fail the handshake."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from cryptography import x509

from mailparity.errors import ConfigurationError
from mailparity.models import OAuthTokens
from mailparity.providers.gmail import GmailAdapter
from mailparity.providers.graph import MicrosoftGraphAdapter
from mailparity.stores.memory import InMemoryStore
from mailparity.testing.builder import build_message
from mailparity.testing.connect import connect_google, connect_microsoft
from mailparity.testing.fake_gmail import FakeGmail
from mailparity.testing.fake_graph import FakeGraph
from mailparity.testing.server import FakeServer, serve

GRAPH_BOX = "desk@contoso.test"
GMAIL_BOX = "help@example.test"
RAW = build_message(from_="client@example.org", to=GRAPH_BOX, subject="over TLS", text="hi")


def _session(server: FakeServer) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no environment proxy or CA bundle for loopback
    session.verify = server.ca_path
    return session


def _expired(tokens: OAuthTokens | None) -> OAuthTokens:
    assert tokens is not None
    return tokens.model_copy(update={"expires_at": datetime(2020, 1, 1, tzinfo=timezone.utc)})


@pytest.fixture
def tls() -> Iterator[tuple[FakeServer, FakeGraph, FakeGmail]]:
    graph, gmail = FakeGraph(seed=5), FakeGmail(seed=5)
    with serve(graph, gmail, tls=True) as server:
        yield server, graph, gmail


def test_urls_certificate_and_trust(tls: tuple[FakeServer, FakeGraph, FakeGmail]) -> None:
    server, graph, gmail = tls
    assert server.url.startswith("https://127.0.0.1:")
    assert graph.base_url == f"{server.url}/graph/v1.0"
    assert graph.login_url == f"{server.url}/login"
    assert gmail.token_uri == f"{server.url}/google/token"
    assert server.ca_path is not None
    ca = x509.load_pem_x509_certificate(Path(server.ca_path).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The certificate the server presents names loopback and is signed by that CA.
    port = int(server.url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=server.ca_path)
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    assert cert.issuer == ca.subject
    # Trusted through ca_path only: the default bundle refuses it.
    assert _session(server).get(f"{graph.login_url}/common/discovery/instance").status_code == 200
    plain = requests.Session()
    plain.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(f"{graph.login_url}/common/discovery/instance")
    assert repr(server).startswith("FakeServer(url='https://")


def test_graph_adapter_refreshes_through_msal_and_fetches(
    tls: tuple[FakeServer, FakeGraph, FakeGmail],
) -> None:
    server, graph, _ = tls
    session = _session(server)
    store = InMemoryStore()
    config = connect_microsoft(store, graph, GRAPH_BOX, subscribe=False, session=session)
    assert config.login_base_url.startswith("https://127.0.0.1:")
    old = store.load_tokens(config.provider_id)
    assert old is not None
    assert old.refresh_token is not None
    store.save_tokens(config.provider_id, _expired(old))
    graph.expire_tokens()
    message_id = graph.deliver(GRAPH_BOX, RAW)
    adapter = MicrosoftGraphAdapter(config, store=store, session=session)

    email = adapter.get_message_details(message_id)

    assert email.subject == "over TLS"
    assert email.id == message_id
    # msal went through our session: its discovery and token requests reached the fake.
    assert graph.count("/.well-known/openid-configuration", "GET") == 1
    assert graph.count("/oauth2/v2.0/token", "POST") == 1
    saved = store.load_tokens(config.provider_id)
    assert saved is not None
    assert saved.refresh_token is not None
    assert saved.refresh_token.get_secret_value() != old.refresh_token.get_secret_value()
    assert saved.refresh_token.get_secret_value() in graph.refresh_tokens  # rotated, stored
    assert saved.expires_at > datetime.now(timezone.utc)


def test_graph_adapter_subscribes_and_syncs_over_tls(
    tls: tuple[FakeServer, FakeGraph, FakeGmail],
) -> None:
    server, graph, _ = tls
    session = _session(server)
    store = InMemoryStore()
    config = connect_microsoft(store, graph, GRAPH_BOX, session=session)
    assert config.webhook_subscription_id in graph.subscriptions
    assert config.delta_links  # the baseline taken at registration, over TLS too
    message_id = graph.deliver(GRAPH_BOX, RAW)
    adapter = MicrosoftGraphAdapter(config, store=store, session=session)
    assert adapter.fetch_changes().message_ids == [message_id]


def test_msal_refuses_a_plain_http_authority_with_a_clear_error() -> None:
    graph = FakeGraph(seed=5)
    with serve(graph) as server:
        session = requests.Session()
        session.trust_env = False
        store = InMemoryStore()
        config = connect_microsoft(store, graph, GRAPH_BOX, subscribe=False, session=session)
        store.save_tokens(config.provider_id, _expired(store.load_tokens(config.provider_id)))
        adapter = MicrosoftGraphAdapter(config, store=store, session=session)
        with pytest.raises(ConfigurationError, match=r"https.*tls=True"):
            adapter.refresh_access_token()
        assert server.ca_path is None
    assert graph.count("/oauth2/") == 0


def test_gmail_over_tls(tls: tuple[FakeServer, FakeGraph, FakeGmail]) -> None:
    server, _, gmail = tls
    session = _session(server)
    store = InMemoryStore()
    config = connect_google(store, gmail, GMAIL_BOX, session=session)
    assert config.history_id is not None  # the watch went over TLS
    store.save_tokens(config.provider_id, _expired(store.load_tokens(config.provider_id)))
    gmail.expire_tokens()
    message_id = gmail.deliver(GMAIL_BOX, RAW)
    adapter = GmailAdapter(config, store=store, session=session)
    email = adapter.get_message_details(message_id)
    assert email.subject == "over TLS"
    assert gmail.count("/google/token", "POST") == 1
    assert adapter.process_webhook_notification(
        {"emailAddress": GMAIL_BOX, "historyId": gmail.mailbox(GMAIL_BOX).history_id}
    ) == [message_id]


def test_a_failed_handshake_or_a_silent_client_does_not_stop_the_server(
    tls: tuple[FakeServer, FakeGraph, FakeGmail],
) -> None:
    server, graph, _ = tls
    port = int(server.url.rsplit(":", 1)[1])
    url = f"{graph.login_url}/common/discovery/instance"
    silent = socket.create_connection(("127.0.0.1", port))  # connects, never says hello
    try:
        with socket.create_connection(("127.0.0.1", port)) as garbage:
            garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to a TLS port
            garbage.settimeout(5)
            try:
                reply = garbage.recv(100)
            except OSError:
                reply = b""
            assert not reply.startswith(b"HTTP/1.1 200")
        refusing = requests.Session()
        refusing.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            refusing.get(url)  # the client rejects our certificate
        # The accept loop is not blocked by either: a trusting client is served.
        assert _session(server).get(url, timeout=5).status_code == 200
    finally:
        silent.close()


def test_close_deletes_the_certificate_files() -> None:
    server = serve(FakeGraph(), tls=True)
    assert server.ca_path is not None
    folder = Path(server.ca_path).parent
    assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "server-key.pem", "server.pem"]
    assert oct((folder / "server-key.pem").stat().st_mode & 0o777) == oct(0o600)
    assert _session(server).get(f"{server.url}/nowhere").status_code == 404
    server.close()
    assert not folder.exists()
    assert os.path.basename(server.ca_path) == "ca.pem"


def test_each_server_has_its_own_certificate() -> None:
    with serve(FakeGraph(), tls=True) as one, serve(FakeGraph(), tls=True) as two:
        assert one.ca_path != two.ca_path
        assert one.ca_path is not None
        assert two.ca_path is not None
        assert Path(one.ca_path).read_bytes() != Path(two.ca_path).read_bytes()
        # A client trusting one server's CA refuses the other.
        mixed = requests.Session()
        mixed.trust_env = False
        mixed.verify = one.ca_path
        with pytest.raises(requests.exceptions.SSLError):
            mixed.get(f"{two.url}/nowhere")
        assert _session(two).get(f"{two.url}/nowhere").status_code == 404


def test_a_named_host_is_in_the_certificate() -> None:
    with serve(FakeGraph(), host="localhost", tls=True) as server:
        assert server.ca_path is not None
        session = _session(server)
        port = server.url.rsplit(":", 1)[1]
        assert session.get(f"https://localhost:{port}/nowhere").status_code == 404
