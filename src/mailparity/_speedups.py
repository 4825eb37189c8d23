"""Speed-ups that rely on private internals of requests or CPython: all of them, and only them.

Each one checks that the internals it relies on look as expected and otherwise returns None, so
that the caller takes the public code path, which gives the same result (the tests check both,
and check the fallback by breaking the internals on purpose). Each is kept only for a measured
gain of at least 3 % of the library's CPU time per fetched message: ``make bench`` measures every
one of them by turning it off (:data:`ENABLED`) and reports the gain in ``docs/benchmarks.md``.

``environ_snapshot``
    The process environment as a hashable value, read from ``os.environ._data`` (CPython's dict
    behind ``os.environ``) without copying it through the mapping interface. The HTTP layer keys
    its cache of requests' merged environment settings (proxies, CA bundle) on it: requests reads
    the whole environment twice on every request otherwise.
``prepare_direct``
    The ``PreparedRequest`` of a request without a body, built directly: the attributes that
    ``PreparedRequest.prepare`` sets (the private ``_cookies`` and ``_body_position`` included),
    with requests' own method, header and hook preparation, and the URL taken as it is where it
    is already in the exact form requests would give it (checked here; requests' URL preparation
    parses and re-encodes it character by character, the largest part of preparing a request).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Hashable, Mapping

import requests
import requests.cookies
import requests.hooks

__all__ = ["ENABLED", "environ_snapshot", "prepare_direct"]

#: Switches for the benchmark (and the tests) to measure each speed-up by turning it off.
ENABLED = {"environ_snapshot": True, "prepare_direct": True}

#: The attributes of a fresh PreparedRequest in the requests versions this module knows.
_PREPARED_ATTRIBUTES = frozenset(
    {"method", "url", "headers", "_cookies", "body", "hooks", "_body_position"}
)

# A path requests leaves unchanged: characters urllib3 does not escape, upper-case escapes
# (urllib3 upper-cases them) of characters that are not unreserved (requests decodes those).
_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*")
_UNRESERVED_ESCAPE = re.compile(r"%(?:3[0-9]|4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|2D|2E|5F|7E)")


def environ_snapshot() -> Hashable | None:
    """The environment as a tuple of its raw items, or None (turned off, or ``os.environ`` is
    not CPython's ``_Environ`` over a dict)."""
    if not ENABLED["environ_snapshot"]:
        return None
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict):
        return None
    return tuple(data.items())


@functools.lru_cache(maxsize=1)
def _prepared_layout_known() -> bool:
    try:
        return frozenset(vars(requests.PreparedRequest())) == _PREPARED_ATTRIBUTES
    except TypeError:  # no __dict__ any more
        return False


@functools.lru_cache(maxsize=64)
def _origin_kept(origin: str) -> bool:
    """Whether requests prepares ``origin + "/"`` unchanged (scheme and host already in their
    canonical form, no credentials, no default port written out)."""
    if "@" in origin:
        return False  # credentials in the URL: requests turns them into an Authorization header
    probe = requests.PreparedRequest()
    try:
        probe.prepare_url(origin + "/", None)
    except (requests.RequestException, ValueError, UnicodeError):
        return False
    return probe.url == origin + "/"


def _url_kept(url: str) -> bool:
    """Whether requests prepares ``url`` (without params) unchanged; False when in doubt."""
    if "?" in url or "#" in url:
        return False  # the HTTP layer hands the query over separately
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        return False
    host, slash, path = rest.partition("/")
    if not slash or not host:
        return False
    path = "/" + path
    if _PATH.fullmatch(path) is None or _UNRESERVED_ESCAPE.search(path) is not None:
        return False
    segments = path.split("/")
    if "." in segments or ".." in segments:
        return False  # dot segments are removed
    return _origin_kept(f"{scheme}://{host}")


def prepare_direct(
    method: str, url: str, headers: Mapping[str, str | bytes]
) -> requests.PreparedRequest | None:
    """What ``PreparedRequest.prepare(method=method, url=url, headers=headers, data={},
    files=[], json=None, params={}, auth=None, cookies=<an empty jar>, hooks=<none>)`` gives,
    for a URL requests would leave unchanged; None otherwise (or when turned off, or when
    ``PreparedRequest`` no longer looks as expected)."""
    if not ENABLED["prepare_direct"] or not _prepared_layout_known() or not _url_kept(url):
        return None
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    prepared.url = url
    prepared.prepare_headers(headers)  # validates every header as requests does
    prepared._cookies = requests.cookies.RequestsCookieJar()  # type: ignore[attr-defined]
    prepared.prepare_body(None, None, None)  # no body; Content-Length: 0 where requests sets it
    prepared.prepare_hooks({})
    return prepared
