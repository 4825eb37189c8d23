"""Provider parity: the same email gives the same EmailMessage through every path.

Every scenario of :mod:`parity_scenarios` is built once as raw RFC 5322 bytes, delivered to
:class:`~mailparity.testing.fake_graph.FakeGraph` and :class:`~mailparity.testing.fake_gmail.
FakeGmail` (which render it as Graph message JSON and as Gmail's ``format=full`` tree), and read
back through five paths, all over ``responses`` (never the network):

``graph``          MicrosoftGraphAdapter, headers from ``internetMessageHeaders``
``graph_mime``     MicrosoftGraphAdapter when Graph omits ``internetMessageHeaders`` (as it does
                   for some messages): the adapter falls back to the MIME of ``/$value``
``gmail_full``     GmailAdapter, ``format=full`` (structured walk)
``gmail_raw``      GmailAdapter, ``format=raw`` (shared MIME parser)
``mime``           ``mime.message_from_mime`` on the raw bytes: the reference

What "the same" means for each field is decided in ONE place, :func:`comparable` (see
``PARITY_RULES`` for the reasons); every other field must be equal, value for value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any

import pytest
import responses

from mailparity import mime
from mailparity.html import html_to_text
from mailparity.models import (
    EmailAddress,
    EmailMessage,
    GmailProviderConfig,
    MicrosoftProviderConfig,
)
from mailparity.providers.gmail import GmailAdapter
from mailparity.providers.graph import MicrosoftGraphAdapter
from mailparity.stores.memory import InMemoryStore
from mailparity.testing._fakebase import HandlerResult
from mailparity.testing.fake_gmail import FakeGmail
from mailparity.testing.fake_graph import FakeGraph
from parity_scenarios import SCENARIOS, Scenario

MAILBOX = "support@example.com"
#: When both providers accepted the mail (microseconds on purpose: Graph drops them, Gmail keeps
#: milliseconds).
DELIVERED_AT = datetime(2026, 2, 27, 9, 31, 2, 654321, tzinfo=timezone.utc)
#: The adapters' clock: later than the delivery, so a received_at taken from the clock (a
#: fallback) instead of the provider is caught; within the tokens' hour, so no refresh happens.
FETCHED_AT = DELIVERED_AT + timedelta(minutes=10)

#: Attachments whose content is fetched through every path (each fetch of a raw-path part reads
#: the whole message again: a message with hundreds of parts would cost minutes, not coverage).
CONTENT_CHECKS = 25

ADAPTER_PATHS = ("graph", "graph_mime", "gmail_full", "gmail_raw")
PATHS = (*ADAPTER_PATHS, "mime")
GRAPH_PATHS = ("graph", "graph_mime")
PROVIDER_OF = {
    "graph": "microsoft",
    "graph_mime": "microsoft",
    "gmail_full": "google",
    "gmail_raw": "google",
}

#: Why a field is compared the way it is. The code that applies these rules is ``comparable``.
PARITY_RULES: dict[str, str] = {
    "id, provider, provider_id, attachment ids": (
        "provider identifiers; never compared across paths (ids are checked by fetching the "
        "attachment content through each adapter instead)"
    ),
    "mailbox, tenant": "the configured connection: equal to the config on every adapter path",
    "thread_id": "provider-specific (conversationId / threadId): present on every adapter path",
    "received_at": (
        "the provider's receipt time (Graph receivedDateTime, Gmail internalDate), never the Date "
        "header: equal across providers within the same second (Graph has whole seconds, Gmail "
        "milliseconds), with or without a Date header"
    ),
    "body.text": (
        "Graph returns one body, as stored: for mail with an HTML part that is the HTML, and the "
        "text/plain alternative is not available; body.text is then the shared html_to_text of "
        "that HTML. Everywhere else body.text is the text/plain part, identical on every path"
    ),
    "attachments[].name": (
        "equal when the MIME part names a file; a part without a file name gets a name made up by "
        "the provider (Graph's attachment 'name' is a display name, not a filename): then only "
        "'not empty' is required"
    ),
    "attachments[].size": (
        "Gmail reports the decoded part size, exactly the raw path's; Graph reports its own "
        "'size' property, which counts Exchange's overhead too: never smaller than the content"
    ),
    "message_id": (
        "equal on every path; a message sent without Message-ID gets one from Exchange "
        "(internetMessageId) on the Graph paths, and none elsewhere"
    ),
    "attachments[].content_id": (
        "equal on every path for the parts the HTML shows; Graph lists attachments without "
        "contentId and the adapter asks for it (one request each) only for those parts"
    ),
    "defects": (
        "what the shared MIME reader met and worked around: compared where the library reads "
        "the MIME itself (Gmail raw, raw MIME); where the provider read the MIME (Graph JSON, "
        "Gmail format=full) nothing is left to report"
    ),
    "everything else": (
        "subject, from, to, cc, bcc, reply_to, body.html, message_id, in_reply_to, references, "
        "headers (order and duplicates kept), complete, attachments' content_type, content_id "
        "and is_inline: equal on every path"
    ),
}

_GENERATED_NAME = re.compile(r"^attachment-\d+\.[A-Za-z0-9]+$")


# ------------------------------------------------------------------------------------------
# The fakes and the paths


class HeaderlessGraph(FakeGraph):
    """Graph as it answers for messages without ``internetMessageHeaders`` (seen in the wild;
    notes/graph.md): the property is absent, the MIME at ``/$value`` still has every header."""

    def handle(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> HandlerResult:
        result = super().handle(method, url, headers, body)
        content_type = result.headers.get("Content-Type", "")
        if method.upper() != "GET" or not content_type.startswith("application/json"):
            return result
        data = result.json()
        if not isinstance(data, dict) or "internetMessageHeaders" not in data:
            return result
        data.pop("internetMessageHeaders")

        return HandlerResult(
            result.status, dict(result.headers), json.dumps(data, ensure_ascii=False).encode()
        )


@dataclass
class Fetched:
    """One scenario read through every path: the messages and each attachment's bytes."""

    scenario: Scenario
    messages: dict[str, EmailMessage]
    contents: dict[str, list[bytes]] = field(default_factory=dict)
    mime_fallback_calls: int = 0


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"no retry expected in the parity suite (asked to sleep {seconds}s)")


def _graph_adapter(fake: FakeGraph, store: InMemoryStore, provider_id: str) -> Any:
    config = MicrosoftProviderConfig.model_validate(
        {
            "provider_id": provider_id,
            "tenant": "tenant-1",
            "mailbox": MAILBOX,
            "client_id": "fake-client-id",
            "client_secret": "graph-secret",
            **fake.config_overrides(),
        }
    )
    store.save_provider(config)
    store.save_tokens(provider_id, fake.oauth_tokens(MAILBOX))
    return MicrosoftGraphAdapter(
        config, store=store, clock=lambda: FETCHED_AT, sleep=_no_sleep
    )


def _gmail_adapter(fake: FakeGmail, store: InMemoryStore, message_format: str) -> Any:
    provider_id = f"gmail-{message_format}"
    config = GmailProviderConfig.model_validate(
        {
            "provider_id": provider_id,
            "tenant": "tenant-1",
            "mailbox": MAILBOX,
            "client_id": "fake-google-client",
            "client_secret": "google-secret",
            **fake.config_overrides(),
        }
    )
    store.save_provider(config)
    store.save_tokens(provider_id, fake.oauth_tokens(MAILBOX))
    return GmailAdapter(
        config,
        store=store,
        clock=lambda: FETCHED_AT,
        sleep=_no_sleep,
        message_format=message_format,  # type: ignore[arg-type]
    )


def _fetch(raw: bytes) -> tuple[dict[str, EmailMessage], dict[str, list[bytes]], int]:
    store = InMemoryStore()
    graph = FakeGraph(clock=lambda: DELIVERED_AT, seed=1)
    headerless = HeaderlessGraph(
        "https://graph-headerless.test/v1.0",
        "https://login-headerless.test",
        clock=lambda: DELIVERED_AT,
        seed=2,
    )
    gmail = FakeGmail(clock=lambda: DELIVERED_AT, seed=3)
    messages: dict[str, EmailMessage] = {}
    contents: dict[str, list[bytes]] = {}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for fake in (graph, headerless, gmail):
            fake.register(mock)
        adapters: dict[str, tuple[Any, str]] = {
            "graph": (_graph_adapter(graph, store, "graph"), graph.deliver(MAILBOX, raw)),
            "graph_mime": (
                _graph_adapter(headerless, store, "graph-headerless"),
                headerless.deliver(MAILBOX, raw),
            ),
        }
        gmail_id = gmail.deliver(MAILBOX, raw)
        adapters["gmail_full"] = (_gmail_adapter(gmail, store, "full"), gmail_id)
        adapters["gmail_raw"] = (_gmail_adapter(gmail, store, "raw"), gmail_id)
        for path, (adapter, message_id) in adapters.items():
            message = adapter.get_message_details(message_id)
            messages[path] = message
            contents[path] = [
                adapter.get_attachment_content(message_id, item.id)
                for item in message.attachments[:CONTENT_CHECKS]
            ]
        fallback_calls = headerless.count("/$value", "GET") - sum(
            len(message.attachments) for message in [messages["graph_mime"]]
        )
    reference = mime.message_from_mime(
        raw,
        id="raw-1",
        provider="google",
        provider_id="raw",
        tenant="tenant-1",
        mailbox=MAILBOX,
        received_at=DELIVERED_AT,
    )
    messages["mime"] = reference
    parsed = mime.parse_mime(raw)
    contents["mime"] = [
        found.payload
        for found in (parsed.attachment(item.id) for item in reference.attachments[:CONTENT_CHECKS])
        if found is not None
    ]
    return messages, contents, fallback_calls


@dataclass
class Readings:
    """Every path's reading of one raw message (``messages``) and its attachments' bytes."""

    messages: dict[str, EmailMessage]
    contents: dict[str, list[bytes]]


def fetched_raw(raw: bytes) -> Readings:
    """Every path's result for any raw message (the corpus parity test reads real mail)."""
    messages, contents, _ = _fetch(raw)
    return Readings(messages, contents)


@cache
def fetched(scenario_id: str) -> Fetched:
    """Every path's result for one scenario (computed once per test session)."""
    scenario = next(item for item in SCENARIOS if item.id == scenario_id)
    messages, contents, fallback_calls = _fetch(scenario.raw)
    return Fetched(scenario, messages, contents, fallback_calls)


# ------------------------------------------------------------------------------------------
# The parity rules (the ONE place that decides what "equal" means per field)


def _address(value: EmailAddress) -> tuple[str, str | None]:
    return (value.email, value.name)


def comparable(message: EmailMessage, path: str, reference: EmailMessage) -> dict[str, Any]:
    """The fields of ``message`` (read through ``path``) that must equal the reference's.

    ``reference`` is the raw-MIME message of the same scenario; it decides which rule applies
    (for example whether an attachment name was made up). See ``PARITY_RULES``."""
    text = message.body.text
    if path in GRAPH_PATHS and reference.body.html is not None:
        # Graph's one body is the HTML: the text must be what the shared normalizer derives from
        # it, which we express as "the reference's text would be that derivation too".
        text = "<derived>" if text == html_to_text(message.body.html or "") else text
    attachments = []
    for index, item in enumerate(message.attachments):
        ref = reference.attachments[index] if index < len(reference.attachments) else None
        generated = ref is not None and _GENERATED_NAME.match(ref.name) is not None
        name = ("<generated>" if item.name.strip() else "") if generated else item.name
        if path in GRAPH_PATHS and ref is not None:
            size: Any = "<reported>" if item.size >= ref.size else item.size
        else:
            size = item.size
        content_id = item.content_id
        if path in GRAPH_PATHS and ref is not None and not ref.is_inline:
            # Graph lists attachments without contentId; the adapter asks for it (one request
            # each) only for the parts the HTML shows.
            content_id = "<not fetched>"
        attachments.append(
            {
                "name": name,
                "content_type": item.content_type,
                "size": size,
                "content_id": content_id,
                "is_inline": item.is_inline,
            }
        )
    return {
        "tenant": message.tenant,
        "subject": message.subject,
        "from": _address(message.from_),
        "to": [_address(item) for item in message.to],
        "cc": [_address(item) for item in message.cc],
        "bcc": [_address(item) for item in message.bcc],
        "reply_to": [_address(item) for item in message.reply_to],
        "body.text": text,
        "body.html": message.body.html,
        "attachments": attachments,
        "message_id": _message_id(message, path, reference),
        "in_reply_to": message.in_reply_to,
        "references": list(message.references),
        "headers": [(item.name, item.value) for item in message.headers],
        "complete": message.complete,
        "defects": "<no MIME>" if path in (*GRAPH_PATHS, "gmail_full") else message.defects,
    }


def _message_id(message: EmailMessage, path: str, reference: EmailMessage) -> str | None:
    if path in GRAPH_PATHS and reference.message_id is None and message.message_id:
        # Exchange gives a message without Message-ID one of its own (internetMessageId).
        return "<assigned by Exchange>"
    return message.message_id


def reference_view(reference: EmailMessage, path: str) -> dict[str, Any]:
    """What ``comparable`` of a correct ``path`` message must produce for this reference."""
    view = comparable(reference, "mime", reference)
    if path in GRAPH_PATHS:
        if reference.body.html is not None:
            view["body.text"] = "<derived>"
        for item, ref in zip(view["attachments"], reference.attachments, strict=True):
            item["size"] = "<reported>"
            if not ref.is_inline:
                item["content_id"] = "<not fetched>"
        if reference.message_id is None:
            view["message_id"] = "<assigned by Exchange>"
    if path in (*GRAPH_PATHS, "gmail_full"):
        view["defects"] = "<no MIME>"
    return view


def differences(left: Mapping[str, Any], right: Mapping[str, Any]) -> list[str]:
    """Readable field-by-field differences (empty when equal)."""
    out = []
    for key in sorted(set(left) | set(right)):
        if left.get(key) != right.get(key):
            out.append(f"{key}:\n    got      {left.get(key)!r}\n    expected {right.get(key)!r}")
    return out


# ------------------------------------------------------------------------------------------
# Tests

SCENARIO_IDS = [scenario.id for scenario in SCENARIOS]


def _cases() -> Iterator[Any]:
    for scenario in SCENARIOS:
        for path in ADAPTER_PATHS:
            yield pytest.param(scenario.id, path, id=f"{scenario.id}-{path}")


@pytest.mark.parametrize(("scenario_id", "path"), list(_cases()))
def test_every_field_matches_the_raw_mime_path(scenario_id: str, path: str) -> None:
    result = fetched(scenario_id)
    reference = result.messages["mime"]
    got = comparable(result.messages[path], path, reference)
    diff = differences(got, reference_view(reference, path))
    assert not diff, f"{scenario_id} via {path} differs from the raw MIME path:\n" + "\n".join(
        diff
    )


@pytest.mark.parametrize("scenario_id", SCENARIO_IDS)
def test_both_gmail_formats_agree_exactly(scenario_id: str) -> None:
    """format=full and format=raw are two readings of the same Gmail message: everything but the
    attachment ids (attachmentId vs part path) is identical, received_at included."""
    result = fetched(scenario_id)
    # provider_id differs only because the suite configures two connections, one per format.
    full = result.messages["gmail_full"].model_dump(exclude={"attachments", "provider_id"})
    raw = result.messages["gmail_raw"].model_dump(exclude={"attachments", "provider_id"})
    assert full == raw
    strip = {"id"}
    assert [a.model_dump(exclude=strip) for a in result.messages["gmail_full"].attachments] == [
        a.model_dump(exclude=strip) for a in result.messages["gmail_raw"].attachments
    ]


@pytest.mark.parametrize(("scenario_id", "path"), list(_cases()))
def test_provider_specific_fields(scenario_id: str, path: str) -> None:
    result = fetched(scenario_id)
    message = result.messages[path]
    assert message.provider == PROVIDER_OF[path]
    assert message.mailbox == MAILBOX
    assert message.tenant == "tenant-1"
    assert message.id
    assert message.thread_id
    # The provider's receipt time, not the Date header and not the adapter's clock.
    assert message.received_at.tzinfo is not None
    assert abs(message.received_at - DELIVERED_AT) < timedelta(seconds=1)
    assert message.received_at.replace(microsecond=0) == DELIVERED_AT.replace(microsecond=0)
    assert all(item.id for item in message.attachments)
    assert len({item.id for item in message.attachments}) == len(message.attachments)


@pytest.mark.parametrize("scenario_id", SCENARIO_IDS)
def test_received_at_agrees_across_providers(scenario_id: str) -> None:
    messages = fetched(scenario_id).messages
    times = {path: messages[path].received_at for path in ADAPTER_PATHS}
    assert max(times.values()) - min(times.values()) < timedelta(seconds=1), times


@pytest.mark.parametrize("scenario_id", SCENARIO_IDS)
def test_attachment_ids_fetch_the_same_bytes_everywhere(scenario_id: str) -> None:
    """Each path's attachment ids are accepted by its adapter and give the part's bytes."""
    result = fetched(scenario_id)
    expected = result.contents["mime"]
    assert len(expected) == len(result.messages["mime"].attachments)
    for path in ADAPTER_PATHS:
        assert result.contents[path] == expected, path
    for item, content in zip(result.messages["mime"].attachments, expected, strict=True):
        assert item.size == len(content)


@pytest.mark.parametrize("scenario_id", SCENARIO_IDS)
def test_headerless_graph_message_reads_the_mime(scenario_id: str) -> None:
    """The graph_mime path really took the /$value fallback (one MIME fetch per message)."""
    result = fetched(scenario_id)
    assert result.mime_fallback_calls == 1
    assert result.messages["graph_mime"].headers == result.messages["graph"].headers


def _expected_value(message: EmailMessage, key: str) -> Any:
    if key.startswith("header:"):
        return message.header(key.split(":", 1)[1])
    if key.startswith("header_values:"):
        return message.header_values(key.split(":", 1)[1])
    if key == "attachment_names":
        return [item.name for item in message.attachments]
    if key == "attachments":
        return [
            (item.name, item.content_type, item.content_id, item.is_inline)
            for item in message.attachments
        ]
    if key == "html":
        return message.body.html
    value = getattr(message, key)
    if isinstance(value, EmailAddress):
        return _address(value)
    if isinstance(value, list) and value and isinstance(value[0], EmailAddress):
        return [_address(item) for item in value]
    return value


_CHECKS: dict[str, Callable[[EmailMessage, Any], None]] = {}


def _check_text_contains(message: EmailMessage, wanted: Any) -> None:
    assert wanted in message.body.text


def _check_text_excludes(message: EmailMessage, unwanted: Any) -> None:
    for item in unwanted:
        assert item not in message.body.text


def _check_html_contains(message: EmailMessage, wanted: Any) -> None:
    assert message.body.html is not None
    assert wanted in message.body.html


_CHECKS.update(
    text_contains=_check_text_contains,
    text_excludes=_check_text_excludes,
    html_contains=_check_html_contains,
)


@pytest.mark.parametrize(
    ("scenario_id", "path"),
    [
        pytest.param(scenario.id, path, id=f"{scenario.id}-{path}")
        for scenario in SCENARIOS
        for path in PATHS
    ],
)
def test_scenario_expectations(scenario_id: str, path: str) -> None:
    """The values each scenario is about, on every path (parity on a wrong value still fails)."""
    result = fetched(scenario_id)
    message = result.messages[path]
    assert result.scenario.expect, "a scenario without expectations proves nothing"
    for key, wanted in result.scenario.expect.items():
        if key in _CHECKS:
            _CHECKS[key](message, wanted)
            continue
        if key == "attachments":
            got = _expected_value(message, key)
            assert len(got) == len(wanted), (key, got)
            for found, spec in zip(got, wanted, strict=True):
                if spec[0] is None:
                    # No file name in the MIME: any non-empty provider-made name.
                    assert found[0].strip(), found
                    assert found[1:] == spec[1:], (key, found, spec)
                else:
                    assert found == spec, (key, found, spec)
            continue
        assert _expected_value(message, key) == wanted, key


def test_missing_date_keeps_no_date_header_and_uses_receipt_time() -> None:
    result = fetched("missing_date")
    assert not result.scenario.has_date
    for path in ADAPTER_PATHS:
        message = result.messages[path]
        assert message.header("Date") is None
        assert abs(message.received_at - DELIVERED_AT) < timedelta(seconds=1), path


def test_dated_scenarios_carry_their_date_header() -> None:
    for scenario in SCENARIOS:
        message = fetched(scenario.id).messages["gmail_full"]
        assert (message.header("Date") is not None) is scenario.has_date, scenario.id


def test_every_scenario_is_distinct_and_exercises_the_issue() -> None:
    ids = [scenario.id for scenario in SCENARIOS]
    assert len(set(ids)) == len(ids)
    wanted = {
        "plain_text", "html_only", "alternative", "inline_image", "attachments",
        "forwarded_message", "reply_threading", "non_ascii", "many_recipients",
        "missing_date", "duplicate_headers",
    }
    assert wanted <= set(ids)
    reply = next(item for item in SCENARIOS if item.id == "reply_threading")
    # Multi-line References: the header really is folded in the raw bytes.
    assert re.search(rb"References: <[^\r\n]+>\r\n [<]", reply.raw)


def test_a_real_difference_is_reported_field_by_field() -> None:
    """The comparison itself: a changed field is named, not hidden in a blob."""
    reference = fetched("plain_text").messages["mime"]
    changed = reference.model_copy(update={"subject": "other", "cc": [EmailAddress(email="x@y")]})
    diff = differences(
        comparable(changed, "gmail_full", reference), reference_view(reference, "gmail_full")
    )
    assert [line.split(":", 1)[0] for line in diff] == ["cc", "subject"]
    assert PARITY_RULES  # the rules are documented next to the code that applies them
