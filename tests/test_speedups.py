"""The speed-ups that rely on private internals give what the public code paths give, and fall
back to those paths cleanly when the internals are not what they expect."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
import requests
import responses

from mailparity import _speedups
from mailparity.http import HttpClient


def _plain(method: str, url: str, headers: dict[str, Any]) -> requests.PreparedRequest:
    prepared = requests.PreparedRequest()
    prepared.prepare(
        method=method, url=url, headers=headers, files=[], data={}, json=None, params={},
        auth=None, cookies=requests.cookies.RequestsCookieJar(), hooks=None,
    )
    return prepared


def _same(fast: requests.PreparedRequest, plain: requests.PreparedRequest) -> None:
    assert fast.url == plain.url
    assert fast.method == plain.method
    assert list(fast.headers.items()) == list(plain.headers.items())
    assert fast.body == plain.body
    assert fast.hooks == plain.hooks
    assert fast._body_position == plain._body_position  # type: ignore[attr-defined]
    assert len(fast._cookies) == len(plain._cookies) == 0  # type: ignore[attr-defined]


HEADERS = {"Authorization": "Bearer t", "Prefer": 'IdType="ImmutableId"', "Accept": "*/*"}


@pytest.mark.parametrize("method", ["get", "GET", "DELETE", "POST", "PATCH"])
def test_a_graph_message_url_is_prepared_directly_and_equally(method: str) -> None:
    url = "https://graph.microsoft.com/v1.0/users/a%40contoso.example/messages/AAMk-_=x"
    fast = _speedups.prepare_direct(method, url, HEADERS)
    assert fast is not None
    _same(fast, _plain(method, url, HEADERS))


#: URL pieces: characters requests keeps and ones it rewrites, escapes of every kind.
_PIECES = [*"abcXYZ019-._~!$&'()*+,;=:@/", "%2F", "%2f", "%41", "%e9", "%E9", "%25", "%7E",
           "%", " ", "\u00fc", "..", ".", "//", "?", "#", "[", "]", "\x7f", "%zz"]
_HOSTS = ["h.example", "H.example", "h.example:80", "h.example:8080", "u:p@h.example",
          "127.0.0.1:5000", "[::1]:8000", "xn--bcher-kva.example", "b\u00fccher.example"]


def test_direct_preparation_equals_requests_on_random_urls() -> None:
    rng = random.Random(15)
    taken = 0
    for _ in range(4000):
        scheme = rng.choice(["http", "https", "https", "HTTP"])
        path = "".join(rng.choice(_PIECES[:27] if rng.random() < 0.6 else _PIECES)
                       for _ in range(rng.randint(0, 14)))
        url = f"{scheme}://{rng.choice(_HOSTS)}/{path}"
        fast = _speedups.prepare_direct("GET", url, HEADERS)
        if fast is None:
            continue
        taken += 1
        _same(fast, _plain("GET", url, HEADERS))
    assert taken > 1000


@pytest.mark.parametrize(
    "headers",
    [{"X-Bad": "line\nbreak"}, {" Lead": "x"}, {"X-Int": 5}, {"X-Trail": "x "},
     {"X-Bytes": b"raw"}],
)
def test_headers_are_validated_as_requests_validates_them(headers: dict[str, Any]) -> None:
    url = "https://graph.example/v1.0/me/messages/x"
    try:
        plain = _plain("GET", url, headers)
    except requests.exceptions.InvalidHeader as exc:
        with pytest.raises(type(exc)):
            _speedups.prepare_direct("GET", url, headers)
        return
    fast = _speedups.prepare_direct("GET", url, headers)
    assert fast is not None
    _same(fast, plain)


def test_changed_prepared_request_internals_fall_back_to_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_speedups, "_PREPARED_ATTRIBUTES", frozenset({"method", "url"}))
    _speedups._prepared_layout_known.cache_clear()
    try:
        url = "https://graph.example/v1.0/me/messages/x"
        assert _speedups.prepare_direct("GET", url, HEADERS) is None
        client = HttpClient(session=requests.Session())
        with responses.RequestsMock() as mock:
            mock.get(url, json={"id": "x"})
            assert client.request("GET", url, headers={"Authorization": "Bearer t"}).json() == {
                "id": "x"
            }
            assert mock.calls[0].request.url == url
            assert mock.calls[0].request.headers["Authorization"] == "Bearer t"
    finally:
        monkeypatch.undo()
        _speedups._prepared_layout_known.cache_clear()
    assert _speedups.prepare_direct("GET", "https://graph.example/x", HEADERS) is not None


def test_turned_off_each_speed_up_gives_way_to_the_public_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(_speedups.ENABLED, "prepare_direct", False)
    monkeypatch.setitem(_speedups.ENABLED, "environ_snapshot", False)
    assert _speedups.prepare_direct("GET", "https://graph.example/x", HEADERS) is None
    assert _speedups.environ_snapshot() is None
    client = HttpClient(session=requests.Session())
    with responses.RequestsMock() as mock:
        mock.get("https://graph.example/x", json={})
        client.request("GET", "https://graph.example/x")
        assert mock.calls[0].request.url == "https://graph.example/x"


def test_environment_without_cpython_internals_is_read_the_public_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class PlainEnviron(dict[str, str]):
        """An os.environ stand-in without CPython's private ``_data``."""

    environ = PlainEnviron(os.environ)
    environ["HTTPS_PROXY"] = "http://proxy.example:3128"
    environ.pop("NO_PROXY", None)
    environ.pop("no_proxy", None)
    monkeypatch.setattr(os, "environ", environ)
    assert _speedups.environ_snapshot() is None
    session = requests.Session()
    settings = HttpClient(session=session)._environment_settings(
        session, "https://graph.example/x", False
    )
    assert settings["proxies"].get("https") == "http://proxy.example:3128"


def test_environment_snapshot_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _speedups.environ_snapshot()
    monkeypatch.setenv("MAILPARITY_SPEEDUP_PROBE", "1")
    after = _speedups.environ_snapshot()
    assert before is not None
    assert after is not None
    assert before != after


def test_plain_session_fetch_takes_the_direct_path() -> None:
    session = requests.Session()
    url = "https://graph.example/v1.0/me/messages/AAMk?%24select=id"
    fast = HttpClient._prepare_with_query(
        session, "GET", url, headers={"Authorization": "Bearer t"}, data=None, json=None,
        params=None,
    )
    assert fast is not None
    plain = session.prepare_request(
        requests.Request("GET", url, headers={"Authorization": "Bearer t"})
    )
    assert fast.url == plain.url == url
    assert dict(fast.headers) == dict(plain.headers)


def test_model_aliases_are_what_pydantic_to_camel_gives() -> None:
    """The models' own camelCase generator agrees with pydantic's on every field name."""
    from pydantic import BaseModel
    from pydantic.alias_generators import to_camel as pydantic_to_camel

    from mailparity import models
    from mailparity.providers import gmail, graph

    seen = 0
    classes: list[type[BaseModel]] = []
    for module in (models, gmail, graph):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, models._Model):
                classes.append(value)
    for model in classes:
        for name in model.model_fields:
            assert models.to_camel(name) == pydantic_to_camel(name), name
            seen += 1
    assert seen > 100
    for name in ("a", "a_b", "a_b_c", "x_1", "ab_cd_ef", "already", "from_", "_x", "a__b",
                 "x_ab2cd", "ab2cd", "x_\u00e9t\u00e9", "Upper_case"):
        assert models.to_camel(name) == pydantic_to_camel(name), name
