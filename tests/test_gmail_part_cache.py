"""Gmail ``part:`` attachments: the adapter's bounded part cache makes saving all N parts of one
message one download (counted on FakeGmail), in ``full`` and ``raw`` mode; the bounds hold; a
message too large for the cache is still served, downloaded per part; nothing crosses
mailboxes."""

from __future__ import annotations

from typing import Any

import pytest

from mailparity import GmailProviderConfig, InMemoryAttachmentStore, InMemoryStore, NotFoundError
from mailparity.attachments import save_attachments
from mailparity.providers.gmail.adapter import GmailAdapter
from mailparity.providers.gmail.parts import PartCache, inline_size
from mailparity.testing import FakeGmail, build_message
from mailparity.testing.connect import connect_google

IMAGES = [(f"img{n}@x", b"\x89PNG\r\n\x1a\n" + bytes([n]) * (200 + n)) for n in range(4)]
FILES = [(f"f{n}.bin", bytes([n + 10]) * (300 + n), "application/octet-stream") for n in range(3)]

RAW = build_message(
    from_="customer@example.com",
    to="help@example.test",
    subject="Four logos and three files",
    html="".join(f'<img src="cid:{cid}">' for cid, _ in IMAGES),
    attachments=FILES,
    inline_images=IMAGES,
)
CONTENTS = dict(IMAGES) | {name: data for name, data, _ in FILES}


def _adapter(store: InMemoryStore, config: Any, **kwargs: Any) -> GmailAdapter:
    return GmailAdapter(store.get_provider(config.provider_id), store=store, **kwargs)


def _downloads(fake: FakeGmail, fmt: str) -> int:
    return sum(
        1 for r in fake.requests
        if "/messages/" in r.path and "/attachments/" not in r.path
        and r.query.get("format") == [fmt]
    )


def _saved(adapter: GmailAdapter, message: Any) -> dict[str, bytes]:
    """Save every attachment of ``message``; ``{content id or name: saved bytes}``."""
    store = InMemoryAttachmentStore()
    saved = save_attachments(adapter, message, store, max_bytes=1_000_000)
    return {
        (a.content_id or a.name): store.content(a.stored_as or "") for a in saved.attachments
    }


def _one_part_read(
    fake: FakeGmail, config: GmailProviderConfig, store: InMemoryStore
) -> tuple[GmailAdapter, str, str]:
    """A raw-mode adapter that has read one part of a delivered RAW (so it holds the message);
    the message id and that part's id."""
    message_id = fake.deliver(config.mailbox, RAW)
    adapter = _adapter(store, config, message_format="raw")
    first = adapter.get_message_details(message_id).attachments[0]
    assert adapter.get_attachment_content(message_id, first.id)
    return adapter, message_id, first.id


def test_full_mode_inline_parts_cost_one_download(
    fake_gmail: FakeGmail, google_mailbox: GmailProviderConfig, mailparity_store: InMemoryStore,
) -> None:
    message_id = fake_gmail.deliver(google_mailbox.mailbox, RAW)
    adapter = _adapter(mailparity_store, google_mailbox)
    message = adapter.get_message_details(message_id)
    assert sum(a.id.startswith("part:") for a in message.attachments) == len(IMAGES)
    fake_gmail.clear_requests()

    assert _saved(adapter, message) == CONTENTS
    assert _downloads(fake_gmail, "full") == 1  # was one per inline part
    assert _downloads(fake_gmail, "raw") == 0
    assert fake_gmail.count("/attachments/") == len(FILES)  # real attachments: their own GET


def test_raw_mode_parts_cost_one_download(
    fake_gmail: FakeGmail, google_mailbox: GmailProviderConfig, mailparity_store: InMemoryStore,
) -> None:
    message_id = fake_gmail.deliver(google_mailbox.mailbox, RAW)
    adapter = _adapter(mailparity_store, google_mailbox, message_format="raw")
    message = adapter.get_message_details(message_id)
    assert all(a.id.startswith("part:") for a in message.attachments)
    assert len(message.attachments) == len(IMAGES) + len(FILES)
    fake_gmail.clear_requests()

    assert _saved(adapter, message) == CONTENTS
    assert _downloads(fake_gmail, "raw") == 1  # was N downloads and N parses
    # Streaming a part again comes from the cache too.
    part = message.attachments[0]
    assert b"".join(adapter.iter_attachment_content(message_id, part.id, chunk_size=7))
    assert _downloads(fake_gmail, "raw") == 1


def test_a_message_above_the_byte_bound_is_not_kept_but_still_served(
    fake_gmail: FakeGmail, google_mailbox: GmailProviderConfig, mailparity_store: InMemoryStore,
) -> None:
    message_id = fake_gmail.deliver(google_mailbox.mailbox, RAW)
    adapter = _adapter(mailparity_store, google_mailbox, message_format="raw")
    adapter.part_cache = PartCache(max_bytes=100)
    message = adapter.get_message_details(message_id)
    fake_gmail.clear_requests()
    assert _saved(adapter, message) == CONTENTS
    assert _downloads(fake_gmail, "raw") == len(message.attachments)
    assert adapter.part_cache.size == (0, 0)


def test_the_cache_never_serves_another_mailbox(
    fake_gmail: FakeGmail, google_mailbox: GmailProviderConfig, mailparity_store: InMemoryStore,
) -> None:
    adapter, message_id, part_id = _one_part_read(fake_gmail, google_mailbox, mailparity_store)
    other = connect_google(mailparity_store, fake_gmail, mailbox="other@example.test")
    other_adapter = _adapter(mailparity_store, other, message_format="raw")
    assert other_adapter.part_cache is not adapter.part_cache
    with pytest.raises(NotFoundError):
        other_adapter.get_attachment_content(message_id, part_id)


def test_an_unknown_part_of_a_cached_message_is_not_found(
    fake_gmail: FakeGmail, google_mailbox: GmailProviderConfig, mailparity_store: InMemoryStore,
) -> None:
    adapter, message_id, _ = _one_part_read(fake_gmail, google_mailbox, mailparity_store)
    fake_gmail.clear_requests()
    with pytest.raises(NotFoundError):
        adapter.get_attachment_content(message_id, "part:9.9")
    assert _downloads(fake_gmail, "raw") == 0


# ---------------------------------------------------------------------- the cache itself


def test_the_cache_keeps_the_most_recent_entries_within_count_and_bytes() -> None:
    cache = PartCache(max_messages=2, max_bytes=100)
    cache.put(("p", "raw", "a"), {"1": b"a"}, 40)
    cache.put(("p", "raw", "b"), {"1": b"b"}, 40)
    assert cache.get(("p", "raw", "a")) == {"1": b"a"}  # now the most recent
    cache.put(("p", "raw", "c"), {"1": b"c"}, 10)  # the count bound drops b
    assert cache.get(("p", "raw", "b")) is None
    assert cache.size == (2, 50)
    cache.put(("p", "raw", "d"), {"1": b"d"}, 90)  # the count bound drops a; c + d fit exactly
    assert cache.size == (2, 100)
    assert cache.get(("p", "raw", "a")) is None
    cache.put(("p", "raw", "e"), {"1": b"e"}, 95)  # c by count, then d by bytes
    assert cache.size == (1, 95)
    assert cache.get(("p", "raw", "e")) == {"1": b"e"}
    cache.put(("p", "raw", "f"), {}, 101)  # larger than the bound: not kept, nothing dropped
    assert cache.size == (1, 95)
    cache.put(("p", "raw", "e"), {"1": b"E"}, 5)  # replacing counts the new size only
    assert cache.size == (1, 5)
    assert cache.get(("q", "raw", "e")) is None  # another provider id is another key
    cache.clear()
    assert cache.size == (0, 0)
    assert "bytes=0" in repr(cache)


def test_a_cache_with_no_room_keeps_nothing_and_bad_bounds_are_refused() -> None:
    cache = PartCache(max_messages=0)
    cache.put(("p", "raw", "a"), {"1": b"a"}, 1)
    assert cache.get(("p", "raw", "a")) is None
    with pytest.raises(ValueError, match="negative"):
        PartCache(max_bytes=-1)


def test_inline_size_counts_the_inline_data_of_every_part() -> None:
    payload = {"body": {"size": 0}, "parts": [
        {"body": {"data": "abcd"}}, {"body": {"attachmentId": "x"}},
        {"parts": [{"body": {"data": "ef"}}, "not a part"]},
    ]}
    assert inline_size(payload) == 6
