"""``StorageAttachmentStore``: an :class:`~mailparity.protocols.AttachmentStore` on a Django
storage (``default_storage``: the media folder, or S3 and the like through django-storages).

::

    MAILPARITY = {
        "ATTACHMENTS": {
            "STORE": "mailparity.contrib.django.attachments.StorageAttachmentStore",
            "MAX_BYTES": 10 * 1024 * 1024,
        },
    }

Names are ``<prefix>/<mailbox>/<message>/<id>-<name>``: hashes of the provider id, the message id
and the attachment id, and the attachment's name made safe (nothing from the email can name a
folder). The content is spooled to a temporary file first (in memory up to 1 MiB) and handed to
the storage only once it arrived whole, so a provider failing midway leaves nothing; saving the
same attachment again replaces it. The reference returned (``Attachment.stored_as``) is the
storage name: ``storage.open(attachment.stored_as)`` reads it back.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import default_storage

from ...attachments import _digest, _short_name
from ...models import Attachment, EmailMessage

__all__ = ["StorageAttachmentStore"]

_SPOOL_IN_MEMORY = 1024 * 1024


class StorageAttachmentStore:
    """Saves attachments to a Django storage (see the module docstring).

    Args:
        storage: the storage (Django's ``default_storage`` by default).
        prefix: the folder of the names (``mailparity/attachments``).
    """

    def __init__(self, storage: Any = None, *, prefix: str = "mailparity/attachments") -> None:
        self._storage = storage
        self.prefix = prefix.strip("/")

    def __repr__(self) -> str:
        return f"StorageAttachmentStore(prefix={self.prefix!r})"

    @property
    def storage(self) -> Any:
        """The storage (``default_storage`` is looked up when used, so settings apply)."""
        return self._storage if self._storage is not None else default_storage

    def reference_for(self, message: EmailMessage, attachment: Attachment) -> str:
        """The storage name ``attachment`` of ``message`` is saved under."""
        mailbox = _digest(message.provider_id)[:16]
        folder = _digest(message.provider_id, message.id)[:32]
        prefix = _digest(attachment.id)[:12]
        name = f"{mailbox}/{folder}/{prefix}-{_short_name(attachment.name)}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def save(
        self, message: EmailMessage, attachment: Attachment, chunks: Iterable[bytes]
    ) -> str:
        """Store the content; return its storage name (raises when it was not stored)."""
        name = self.reference_for(message, attachment)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            for chunk in chunks:  # raises midway: nothing reached the storage
                spool.write(chunk)
            spool.seek(0)
            storage = self.storage
            # Idempotent: a retried job replaces the file instead of adding "name_x7Kd2.txt".
            if storage.exists(name):
                storage.delete(name)
            saved = storage.save(name, File(spool, name=name.rsplit("/", 1)[-1]))
        return str(saved)

    def open(self, reference: str) -> IO[bytes]:
        """The saved content of ``reference``, opened for reading (binary)."""
        opened: IO[bytes] = self.storage.open(reference, "rb")
        return opened
