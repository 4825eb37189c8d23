"""Attachment content: stream it on demand, or have it saved while messages are processed.

Events carry attachment metadata only (``EmailMessage.attachments``); the bytes stay with the
provider until asked for. Two ways to reach them:

* :func:`stream_attachment` (or :meth:`mailparity.App.stream_attachment`): from an event (or a
  provider id and a message id) and an attachment id, an :class:`AttachmentStream` of byte
  chunks, for a download view or a copy to storage. Graph's download is streamed as it
  arrives; Gmail answers the whole content as base64, which is decoded a chunk at a time; other
  providers' bytes are handed out in slices. The content is never held whole twice.
* An :class:`~mailparity.protocols.AttachmentStore` given to the ``Processor`` / ``App``
  (``attachment_store=``): every attachment within ``attachment_max_bytes`` is saved before the
  event is published, and the event carries where (``Attachment.stored_as``) or why not
  (``Attachment.not_stored``). Shipped stores: :class:`FilesystemAttachmentStore` and
  :class:`InMemoryAttachmentStore`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

from .adapter import EmailProviderAdapter, StreamAttachment
from .errors import BadRequestError, ConfigurationError, NotFoundError
from .mime import safe_file_name
from .models import Attachment, EmailMessage, InboundEmailReceived
from .protocols import AttachmentStore, SecretStore, StateStore

__all__ = [
    "DEFAULT_ATTACHMENT_MAX_BYTES",
    "AttachmentStream",
    "AttachmentTooLargeError",
    "FilesystemAttachmentStore",
    "InMemoryAttachmentStore",
    "SavedAttachment",
    "save_attachments",
    "stream_attachment",
]

log = logging.getLogger("mailparity.attachments")

#: The default size limit of saved attachments: 25 MiB (Gmail's limit for a whole message).
DEFAULT_ATTACHMENT_MAX_BYTES = 25 * 1024 * 1024
#: Bytes per chunk handed out.
CHUNK_SIZE = 64 * 1024


class AttachmentTooLargeError(Exception):
    """Raised inside an attachment's chunks when the content passes the size limit (the
    provider's reported size was 0, unknown, or wrong). The store drops what it got."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"attachment larger than {limit} bytes")
        self.limit = limit


class AttachmentStream:
    """The content of one attachment as an iterator of non-empty ``bytes`` chunks.

    Nothing is requested before the first chunk is taken. Iterate it once; close it (or use it
    as a context manager) when you stop early, so the download's connection is released.
    ``attachment`` is the event's metadata (name, content type, size) when the stream was made
    from an event, else None.
    """

    def __init__(self, chunks: Iterator[bytes], attachment: Attachment | None = None) -> None:
        self._chunks = chunks
        self.attachment = attachment

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        """Stop the download (idempotent)."""
        close = getattr(self._chunks, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> AttachmentStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def copy_to(self, into: IO[bytes]) -> int:
        """Write every remaining chunk to ``into``; return the bytes written."""
        written = 0
        with self:
            for chunk in self:
                into.write(chunk)
                written += len(chunk)
        return written

    def read_all(self) -> bytes:
        """The whole remaining content in memory (for small attachments and tests)."""
        with self:
            return b"".join(self)

    def __repr__(self) -> str:
        name = self.attachment.name if self.attachment is not None else None
        return f"AttachmentStream(name={name!r})"


def attachment_chunks(
    adapter: EmailProviderAdapter[Any],
    message_id: str,
    attachment_id: str,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> Generator[bytes, None, None]:
    """The adapter's content of one attachment in chunks: its own streaming when it has one
    (:class:`~mailparity.adapter.StreamAttachment`), else slices of the bytes it returns."""
    if isinstance(adapter, StreamAttachment):
        yield from adapter.iter_attachment_content(
            message_id, attachment_id, chunk_size=chunk_size
        )
        return
    content = adapter.get_attachment_content(message_id, attachment_id)
    view = memoryview(content)
    for start in range(0, len(view), chunk_size):
        yield bytes(view[start : start + chunk_size])


def stream_attachment(
    source: InboundEmailReceived | EmailMessage | str,
    attachment_id: str,
    *,
    store: StateStore,
    message_id: str | None = None,
    secrets: SecretStore | None = None,
    session: requests.Session | None = None,
    adapter_factory: Callable[..., EmailProviderAdapter[Any]] | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> AttachmentStream:
    """Stream the content of one attachment of a received message.

    Args:
        source: the event (or its ``email_data``), or a provider id (then ``message_id`` is
            required).
        attachment_id: ``Attachment.id`` from the event.
        store: the host's store (the provider's config and tokens are read from it).
        message_id: the provider's message id, when ``source`` is a provider id.
        secrets: the host's tenant secrets, as for the adapters.
        session: a ``requests.Session``, as for the adapters.
        adapter_factory: builds the adapter (``create_adapter`` by default).
        chunk_size: the largest chunk handed out.

    Raises (at once): ConfigurationError for an unknown provider or a missing message id;
    NotFoundError for an attachment id the event does not list. Provider errors (the message
    or attachment is gone: NotFoundError; the token is revoked: AuthExpiredError) raise when the
    first chunk is taken.
    """
    if chunk_size < 1:
        raise ConfigurationError("chunk_size must be >= 1")
    provider_id, message_id, attachment = _locate(source, attachment_id, message_id)
    config = store.get_provider(provider_id)
    if config is None:
        raise ConfigurationError(f"no provider {provider_id!r} in the store")
    if adapter_factory is None:
        from .providers import create_adapter

        adapter_factory = create_adapter
    adapter = adapter_factory(config, store=store, secrets=secrets, session=session)
    chunks = attachment_chunks(adapter, message_id, attachment_id, chunk_size=chunk_size)
    return AttachmentStream(chunks, attachment)


def _locate(
    source: InboundEmailReceived | EmailMessage | str, attachment_id: str, message_id: str | None
) -> tuple[str, str, Attachment | None]:
    if not isinstance(attachment_id, str) or not attachment_id:
        raise ConfigurationError("attachment_id is empty")
    if isinstance(source, str):
        if not message_id:
            raise ConfigurationError("message_id is required with a provider id")
        return source, message_id, None
    message = source.email_data if isinstance(source, InboundEmailReceived) else source
    if not isinstance(message, EmailMessage):
        raise ConfigurationError(
            "stream_attachment needs an INBOUND_EMAIL_RECEIVED event, its email_data, or a "
            f"provider id; got {type(source).__name__}"
        )
    found = next((a for a in message.attachments if a.id == attachment_id), None)
    if found is None:
        raise NotFoundError(f"message {message.id} lists no attachment {attachment_id!r}")
    return message.provider_id, message.id, found


# ---------------------------------------------------------------------- saving during processing


def _limited(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise AttachmentTooLargeError(limit)
        yield chunk


def save_attachments(
    adapter: EmailProviderAdapter[Any],
    message: EmailMessage,
    store: AttachmentStore,
    *,
    max_bytes: int,
) -> EmailMessage:
    """Save every attachment of ``message`` within ``max_bytes`` to ``store``; return the
    message with ``stored_as`` / ``not_stored`` set on each attachment (a copy).

    An attachment the provider reports larger than ``max_bytes``, or whose download passes it,
    is ``not_stored="too_large"``; one the provider has no content for (gone, or a link to a
    cloud file) is ``not_stored="unavailable"``. Any other error (the store's, a transient
    provider error, an expired token) propagates: the caller retries the whole message, and
    the store's idempotent ``save`` makes the repeat harmless.
    """
    if not message.attachments:
        return message
    updated: list[Attachment] = []
    for attachment in message.attachments:
        updated.append(_save_one(adapter, message, attachment, store, max_bytes))
    return message.model_copy(update={"attachments": updated})


def _save_one(
    adapter: EmailProviderAdapter[Any],
    message: EmailMessage,
    attachment: Attachment,
    store: AttachmentStore,
    max_bytes: int,
) -> Attachment:
    if attachment.size > max_bytes:
        return attachment.model_copy(update={"stored_as": None, "not_stored": "too_large"})
    chunks = attachment_chunks(adapter, message.id, attachment.id)
    try:
        reference = store.save(message, attachment, _limited(chunks, max_bytes))
    except AttachmentTooLargeError:
        log.info("provider %s: attachment %s of %s is above %d bytes; not stored",
                 message.provider_id, attachment.id, message.id, max_bytes)
        return attachment.model_copy(update={"stored_as": None, "not_stored": "too_large"})
    except (NotFoundError, BadRequestError) as exc:
        # Gone since the message was read, or nothing to download (Graph answers a reference
        # attachment's $value with 405): retrying cannot change it.
        log.info("provider %s: attachment %s of %s has no content: %s",
                 message.provider_id, attachment.id, message.id, type(exc).__name__)
        return attachment.model_copy(update={"stored_as": None, "not_stored": "unavailable"})
    finally:
        chunks.close()
    if not isinstance(reference, str) or not reference:
        raise TypeError(f"{type(store).__name__}.save must return a non-empty str reference")
    return attachment.model_copy(update={"stored_as": reference, "not_stored": None})


# ---------------------------------------------------------------------- shipped stores


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


#: The longest file name (UTF-8 bytes) a saved attachment gets; file systems allow 255.
_NAME_BYTES = 180


def _short_name(name: str) -> str:
    """``name`` made safe, cut to :data:`_NAME_BYTES` UTF-8 bytes keeping a short extension."""
    safe = safe_file_name(name, limit=4 * _NAME_BYTES) or "attachment"
    if len(safe.encode("utf-8")) <= _NAME_BYTES:
        return safe
    stem, dot, ext = safe.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        stem, ext = safe, ""
    budget = _NAME_BYTES - len(ext.encode("utf-8")) - (1 if ext else 0)
    cut = stem.encode("utf-8")[:budget].decode("utf-8", "ignore").rstrip(" .")
    return f"{cut or 'attachment'}.{ext}" if ext else (cut or "attachment")


class FilesystemAttachmentStore:
    """Saves attachments under a folder: ``<root>/<mailbox>/<message>/<id>-<name>``.

    ``<mailbox>`` and ``<message>`` are hashes of the provider id and message id, ``<id>`` a
    short hash of the attachment id, and ``<name>`` the attachment's name made safe with the
    rule of :func:`mailparity.mime.safe_file_name` (cut to 180 bytes): nothing from the email
    can name a folder or leave ``root``. Content is written to a temporary file beside the
    target and renamed into place, so a reader never sees half a file and a failed save leaves
    nothing. Saving the same attachment again replaces it. The reference returned is the path
    relative to ``root`` (``/`` separated); :meth:`open` and :meth:`path` take it back.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FilesystemAttachmentStore(root={str(self.root)!r})"

    def reference_for(self, message: EmailMessage, attachment: Attachment) -> str:
        """The reference (relative path) ``attachment`` of ``message`` is saved under."""
        mailbox = _digest(message.provider_id)[:16]
        folder = _digest(message.provider_id, message.id)[:32]
        prefix = _digest(attachment.id)[:12]
        return f"{mailbox}/{folder}/{prefix}-{_short_name(attachment.name)}"

    def save(
        self, message: EmailMessage, attachment: Attachment, chunks: Iterable[bytes]
    ) -> str:
        """Write the content; return its reference (see the class docstring)."""
        reference = self.reference_for(message, attachment)
        target = self.path(reference)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return reference

    def path(self, reference: str) -> Path:
        """The file of ``reference``. Raises ValueError for a reference that is not one of
        this store's (absolute, or leading out of ``root``)."""
        if not reference or reference.startswith(("/", "\\")) or "\\" in reference:
            raise ValueError("not a reference of this attachment store")
        parts = reference.split("/")
        if len(parts) != 3 or any(p in ("", ".", "..") for p in parts):
            raise ValueError("not a reference of this attachment store")
        return self.root.joinpath(*parts)

    def open(self, reference: str) -> IO[bytes]:
        """The saved content of ``reference``, opened for reading (binary)."""
        return self.path(reference).open("rb")


@dataclass(frozen=True)
class SavedAttachment:
    """What :class:`InMemoryAttachmentStore` keeps of one saved attachment."""

    provider_id: str
    message_id: str
    attachment: Attachment
    content: bytes


class InMemoryAttachmentStore:
    """Keeps saved attachments in a dict (for tests and demos).

    ``saved`` maps each reference (``memory://<provider id>/<message id>/<attachment id>``) to
    a :class:`SavedAttachment`; ``saves`` counts calls of :meth:`save` (a retried job saves
    again, replacing the entry). ``fail_next`` makes the next saves raise ``OSError``, to test
    a host store that fails.
    """

    def __init__(self) -> None:
        self.saved: dict[str, SavedAttachment] = {}
        self.saves = 0
        self.fail_next = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"InMemoryAttachmentStore(saved={len(self.saved)})"

    def save(
        self, message: EmailMessage, attachment: Attachment, chunks: Iterable[bytes]
    ) -> str:
        """Collect the chunks; keep them under the attachment's reference."""
        with self._lock:
            self.saves += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                raise OSError("attachment store unavailable (InMemoryAttachmentStore.fail_next)")
        content = b"".join(chunks)
        reference = f"memory://{message.provider_id}/{message.id}/{attachment.id}"
        with self._lock:
            self.saved[reference] = SavedAttachment(
                message.provider_id, message.id, attachment, content
            )
        return reference

    def content(self, reference: str) -> bytes:
        """The saved bytes of ``reference`` (KeyError when there are none)."""
        return self.saved[reference].content
