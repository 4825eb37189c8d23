"""The loopback server: both fakes behind one URL, one write per response, keep-alive, the
documented prefix scheme, and failure paths (unknown paths, bad bodies, a crashing fake)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from mailparity.testing.builder import build_message
from mailparity.testing.fake_gmail import FakeGmail
from mailparity.testing.fake_graph import FakeGraph
from mailparity.testing.server import FakeServer, serve


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never route loopback through an environment proxy
    return session


@pytest.fixture
def both(clock: Any) -> Iterator[tuple[FakeServer, FakeGraph, FakeGmail]]:
    graph = FakeGraph(clock=clock)
    gmail = FakeGmail(clock=clock)
    with serve(graph, gmail) as server:
        yield server, graph, gmail


def test_prefix_scheme_and_config_overrides(both: tuple[FakeServer, FakeGraph, FakeGmail]) -> None:
    server, graph, gmail = both
    assert server.url.startswith("http://127.0.0.1:")
    assert graph.base_url == f"{server.url}/graph/v1.0"
    assert graph.login_url == f"{server.url}/login"
    assert gmail.base_url == f"{server.url}/gmail"
    assert gmail.token_uri == f"{server.url}/google/token"
    assert gmail.certs_url == f"{server.url}/google/certs"
    assert server.config_overrides() == {
        "graph_base_url": graph.base_url,
        "login_base_url": graph.login_url,
        "gmail_base_url": gmail.base_url,
        "token_uri": gmail.token_uri,
        "auth_uri": gmail.auth_uri,
    }
    assert gmail.auth_uri == f"{server.url}/google/auth"
    assert "FakeServer(url=" in repr(server)


def test_both_fakes_answer_on_one_keep_alive_connection(
    both: tuple[FakeServer, FakeGraph, FakeGmail], monkeypatch: pytest.MonkeyPatch
) -> None:
    _server, graph, gmail = both
    writes: list[int] = []
    original = socketserver._SocketWriter.write

    def counting(self: Any, data: Any) -> int:
        writes.append(len(data))
        return original(self, data)

    monkeypatch.setattr(socketserver._SocketWriter, "write", counting)
    raw = build_message(from_="a@example.org", to="u@example.com", subject="hi", text="hello")
    graph_id = graph.deliver("u@contoso.example", raw)
    gmail_id = gmail.deliver("u@example.com", raw)
    graph_auth = {
        "Authorization": f"Bearer {graph.issue_tokens('u@contoso.example')['access_token']}"
    }
    gmail_auth = {"Authorization": f"Bearer {gmail.issue_tokens('u@example.com')['access_token']}"}
    session = _session()
    for _ in range(3):
        one = session.get(
            f"{graph.base_url}/me/messages/{graph_id}?$select=subject", headers=graph_auth
        )
        two = session.get(
            f"{gmail.base_url}/gmail/v1/users/me/messages/{gmail_id}", headers=gmail_auth
        )
        assert one.json()["subject"] == "hi"
        assert two.json()["id"] == gmail_id
        assert one.headers["Connection"] == "keep-alive"
        assert int(two.headers["Content-Length"]) == len(two.content)
    # Every response left in exactly one write (headers and body together).
    assert len(writes) == 6
    assert graph.count("/messages/") == 3
    assert gmail.count("/messages/") == 3


def test_token_endpoints_and_certs_over_http(both: tuple[FakeServer, FakeGraph, FakeGmail]) -> None:
    _, graph, gmail = both
    issued = graph.issue_tokens("u@contoso.example")
    token = _session().post(
        f"{graph.login_url}/common/oauth2/v2.0/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "fake-client-id",
            "refresh_token": issued["refresh_token"],
        },
    )
    assert token.status_code == 200
    assert token.json()["refresh_token"] != issued["refresh_token"]
    certs = _session().get(gmail.certs_url)
    assert certs.status_code == 200
    assert all("BEGIN CERTIFICATE" in v for v in certs.json().values())


def test_unknown_paths_bad_bodies_and_chunked_uploads(
    both: tuple[FakeServer, FakeGraph, FakeGmail],
) -> None:
    server, graph, _ = both
    missing = _session().get(f"{server.url}/nowhere")
    assert missing.status_code == 404
    auth = {"Authorization": f"Bearer {graph.issue_tokens('u@contoso.example')['access_token']}"}

    def chunks() -> Iterator[bytes]:
        yield b'{"displayName": '
        yield b'"Chunked"}'

    created = _session().post(
        f"{graph.base_url}/me/outlook/masterCategories",
        data=chunks(),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert created.status_code == 201
    assert created.json()["displayName"] == "Chunked"
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"POST /graph/v1.0/me HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")


def test_a_crashing_fake_answers_500(
    both: tuple[FakeServer, FakeGraph, FakeGmail], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, graph, _ = both

    def broken(request: Any) -> Any:
        raise RuntimeError("token=secret-value")

    monkeypatch.setattr(graph, "_dispatch", broken)
    response = _session().get(f"{graph.base_url}/me")
    assert response.status_code == 500
    assert "secret-value" not in response.text  # the message of the error is not echoed


def test_concurrent_clients(both: tuple[FakeServer, FakeGraph, FakeGmail]) -> None:
    _, graph, _ = both
    auth = {"Authorization": f"Bearer {graph.issue_tokens('u@contoso.example')['access_token']}"}
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        session = _session()
        for _ in range(10):
            status = session.get(f"{graph.base_url}/me", headers=auth).status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 40
    assert graph.count("/me") == 40


def test_serve_needs_a_fake_and_releases_the_port() -> None:
    with pytest.raises(ValueError, match="at least one fake"):
        serve()
    server = serve(FakeGraph())
    port = int(server.url.rsplit(":", 1)[1])
    server.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again
