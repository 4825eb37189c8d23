"""Parity of the IMAP path: every corpus message and every parity scenario, APPENDed to a real
Dovecot and read back through :class:`ImapAdapter` (``BODY.PEEK[]``), equals the raw-MIME path
(``mime.message_from_mime`` on the bytes that were delivered), field for field.

IMAP hands over the message's own bytes, so nothing is left to a parity rule: only the ids and
the receipt time are the provider's (``received_at`` is the server's INTERNALDATE). The bytes are
compared in their wire form: IMAP (RFC 3501) and SMTP carry lines ended by CRLF, and the corpus
files on disk end theirs with LF, so the reference reads the file with CRLF line ends, as a mail
server delivers it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import corpus_files, require_corpus
from imap_support import APPENDUID, Dovecot, dovecot_or_skip
from mailparity.mime import message_from_mime
from mailparity.providers.imap.adapter import ImapAdapter, format_message_id
from mailparity.providers.imap.config import ImapProviderConfig
from mailparity.stores.memory import InMemoryStore
from parity_scenarios import SCENARIOS

FOLDERS = ("mime", "mime-world")
CORPUS = [(folder, name) for folder in FOLDERS for name in corpus_files(folder)
          if not (folder == "mime/tnef" and name.startswith("<"))]



@dataclass
class Delivered:
    adapter: ImapAdapter
    config: ImapProviderConfig
    ids: dict[str, str]  # key -> message id


@pytest.fixture(scope="module")
def delivered() -> Iterator[Delivered]:
    dovecot: Dovecot = dovecot_or_skip()
    config = dovecot.config(provider_id="imap-parity", max_message_bytes=64 * 1024 * 1024)
    client = dovecot.client(config)
    ids: dict[str, str] = {}
    try:
        for key, raw in _all_messages():
            answer = client.append("INBOX", raw)
            match = APPENDUID.search(answer)
            assert match is not None, answer
            ids[key] = format_message_id(int(match.group(1)), int(match.group(2)))
    finally:
        client.logout()
    adapter = ImapAdapter(config, store=InMemoryStore())
    yield Delivered(adapter, config, ids)
    adapter.close()


def _all_messages() -> Iterator[tuple[str, bytes]]:
    for scenario in SCENARIOS:
        yield f"scenario:{scenario.id}", scenario.raw
    root = corpus_root()
    if root is None:
        return
    for folder, name in CORPUS:
        path = root / folder / name
        if path.is_file():
            yield f"{folder}/{name}", path.read_bytes()


def corpus_root() -> Any:
    try:
        return require_corpus()
    except pytest.skip.Exception:
        return None


def _raw(key: str) -> bytes:
    if key.startswith("scenario:"):
        return next(s.raw for s in SCENARIOS if f"scenario:{s.id}" == key)
    return (require_corpus() / key).read_bytes()


def wire_form(raw: bytes) -> bytes:
    """``raw`` as IMAP carries it: every line ended by CRLF (a bare LF, as stored on disk, or a
    bare CR of old Mac mail, made CRLF), and NUL, which RFC 3501 forbids in a message literal,
    stored by Dovecot as 0x80."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", raw).replace(b"\x00", b"\x80")


def _check(delivered: Delivered, key: str) -> None:
    raw = wire_form(_raw(key))
    message_id = delivered.ids[key]
    got = delivered.adapter.get_message_details(message_id)
    config = delivered.config
    reference = message_from_mime(
        raw, id=message_id, provider="imap", provider_id=config.provider_id,
        tenant=config.tenant, mailbox=config.mailbox, received_at=got.received_at,
    )
    assert got.model_dump() == reference.model_dump()
    for attachment in reference.attachments[:3]:
        content = delivered.adapter.get_attachment_content(message_id, attachment.id)
        assert len(content) == attachment.size


@pytest.mark.parametrize("scenario_id", [s.id for s in SCENARIOS])
def test_imap_path_equals_the_mime_path_for_every_scenario(
    delivered: Delivered, scenario_id: str
) -> None:
    _check(delivered, f"scenario:{scenario_id}")


@pytest.mark.parametrize(("folder", "name"), CORPUS, ids=[f"{f}/{n}" for f, n in CORPUS])
def test_imap_path_equals_the_mime_path_for_every_corpus_message(
    delivered: Delivered, folder: str, name: str
) -> None:
    require_corpus()
    _check(delivered, f"{folder}/{name}")
