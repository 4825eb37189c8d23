"""FakeImap: an in-process stand-in for an IMAP server, for tests where none can run.

The IMAP adapter and listener take a ``client_factory``; :meth:`FakeImap.client_factory` gives
them :class:`FakeImapClient` objects with the ``imapclient.IMAPClient`` methods they call, over
one shared in-memory state: accounts with a password, folders with a UIDVALIDITY, UIDs, flags
and a mod-sequence, IDLE that reports ``EXISTS`` when mail is delivered. Errors are imapclient's
own exceptions (the ``imap`` extra is needed), so the adapter maps them as it does a server's.

    imap = FakeImap()
    imap.add_account("support@example.com", "app-password")
    adapter = ImapAdapter(config, store=store, client_factory=imap.client_factory)
    imap.deliver("support@example.com", build_message(...))

For the real protocol, the project's own tests run a Dovecot (see ``docs/imap-setup.md``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = ["FakeImap", "FakeImapClient"]

_CAPABILITIES = (b"IMAP4REV1", b"IDLE", b"UIDPLUS", b"MOVE", b"CONDSTORE")


@dataclass
class _Message:
    raw: bytes
    flags: set[bytes]
    internal_date: datetime


@dataclass
class _Folder:
    uidvalidity: int
    uidnext: int = 1
    modseq: int = 1
    messages: dict[int, _Message] = field(default_factory=dict)


class FakeImap:
    """The shared state of the fake server (thread-safe).

    Args:
        capabilities: what the server announces (drop ``b"MOVE"`` to exercise COPY + expunge,
            ``b"IDLE"`` to exercise polling).
    """

    def __init__(self, capabilities: Sequence[bytes] = _CAPABILITIES) -> None:
        self.capabilities = tuple(capabilities)
        self.lock = threading.Condition()
        self.passwords: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.folders: dict[tuple[str, str], _Folder] = {}
        self.logins: list[str] = []
        self._validity = 1000

    def __repr__(self) -> str:
        return f"FakeImap(accounts={len(self.passwords)}, folders={len(self.folders)})"

    # ------------------------------------------------------------------ set-up

    def add_account(self, user: str, password: str = "", *, token: str = "") -> None:
        """An account signing in with ``password`` (LOGIN) or ``token`` (XOAUTH2)."""
        with self.lock:
            self.passwords[user] = password
            if token:
                self.tokens[user] = token
            self._folder(user, "INBOX", create=True)

    def _folder(self, user: str, name: str, *, create: bool = False) -> _Folder:
        key = (user, name.upper() if name.upper() == "INBOX" else name)
        folder = self.folders.get(key)
        if folder is None:
            if not create:
                from imapclient.exceptions import IMAPClientError

                raise IMAPClientError(f"select failed: Mailbox doesn't exist: {name}")
            self._validity += 1
            folder = self.folders[key] = _Folder(uidvalidity=self._validity)
        return folder

    def create_folder(self, user: str, name: str) -> None:
        """Create a folder (a no-op if it exists)."""
        with self.lock:
            self._folder(user, name, create=True)

    def recreate_folder(self, user: str, name: str) -> None:
        """Delete and create the folder again: empty, with a new UIDVALIDITY."""
        with self.lock:
            self.folders.pop((user, name), None)
            self._folder(user, name, create=True)

    def deliver(self, user: str, raw: bytes, *, folder: str = "INBOX",
                flags: Iterable[bytes] = (), internal_date: datetime | None = None) -> int:
        """Append ``raw`` to the folder; returns its UID. IDLE sessions are told (EXISTS)."""
        with self.lock:
            box = self._folder(user, folder, create=True)
            uid = box.uidnext
            box.uidnext += 1
            box.modseq += 1
            box.messages[uid] = _Message(
                raw, set(flags), internal_date or datetime.now(timezone.utc)
            )
            self.lock.notify_all()
            return uid

    def flags(self, user: str, folder: str, uid: int) -> set[bytes]:
        """The flags of one message (KeyError when it is not there)."""
        with self.lock:
            return set(self._folder(user, folder).messages[uid].flags)

    def uids(self, user: str, folder: str = "INBOX") -> list[int]:
        """The UIDs in the folder."""
        with self.lock:
            return sorted(self._folder(user, folder).messages)

    def client_factory(self, config: Any) -> FakeImapClient:
        """A new, unauthenticated client (the ``client_factory`` of the adapter / listener)."""
        return FakeImapClient(self)


class FakeImapClient:
    """One connection to a :class:`FakeImap` (the IMAPClient methods the provider uses)."""

    def __init__(self, server: FakeImap) -> None:
        self.server = server
        self.normalise_times = True
        self.user: str | None = None
        self.selected: str | None = None
        self.closed = False
        self._idle_from = 0

    def _box(self) -> _Folder:
        if self.closed:
            from imapclient.exceptions import IMAPClientAbortError

            raise IMAPClientAbortError("connection closed")
        if self.user is None or self.selected is None:
            from imapclient.exceptions import IMAPClientError

            raise IMAPClientError("no folder selected")
        return self.server._folder(self.user, self.selected)

    # ------------------------------------------------------------------ session

    def login(self, user: str, password: str) -> bytes:
        from imapclient.exceptions import LoginError

        with self.server.lock:
            self.server.logins.append(user)
            if self.server.passwords.get(user) != password or not password:
                raise LoginError("[AUTHENTICATIONFAILED] Authentication failed.")
            self.user = user
        return b"Logged in"

    def oauth2_login(self, user: str, access_token: str, mech: str = "XOAUTH2") -> bytes:
        from imapclient.exceptions import LoginError

        with self.server.lock:
            self.server.logins.append(user)
            if not access_token or self.server.tokens.get(user) != access_token:
                raise LoginError("[AUTHENTICATIONFAILED] Authentication failed.")
            self.user = user
        return b"Logged in"

    def has_capability(self, capability: str) -> bool:
        return capability.upper().encode() in self.server.capabilities

    def capabilities(self) -> tuple[bytes, ...]:
        return self.server.capabilities

    def select_folder(self, folder: str, readonly: bool = False) -> dict[bytes, Any]:
        with self.server.lock:
            if self.user is None:
                from imapclient.exceptions import IMAPClientError

                raise IMAPClientError("not authenticated")
            box = self.server._folder(self.user, folder)
            self.selected = folder
            self._idle_from = box.uidnext
            return {b"UIDVALIDITY": box.uidvalidity, b"UIDNEXT": box.uidnext,
                    b"EXISTS": len(box.messages), b"HIGHESTMODSEQ": box.modseq}

    def folder_status(self, folder: str, what: Sequence[bytes]) -> dict[bytes, int]:
        with self.server.lock:
            assert self.user is not None
            box = self.server._folder(self.user, folder)
            values = {b"UIDVALIDITY": box.uidvalidity, b"UIDNEXT": box.uidnext,
                      b"HIGHESTMODSEQ": box.modseq, b"MESSAGES": len(box.messages)}
            return {key: values[key] for key in what}

    def noop(self) -> tuple[bytes, list[Any]]:
        with self.server.lock:
            self._box()
        return b"NOOP completed", []

    def logout(self) -> bytes:
        self.closed = True
        return b"Logging out"

    def shutdown(self) -> None:
        self.closed = True

    # ------------------------------------------------------------------ messages

    def search(self, criteria: Sequence[str]) -> list[int]:
        with self.server.lock:
            uids = sorted(self._box().messages)
        if list(criteria) == ["ALL"]:
            return uids
        if len(criteria) == 2 and criteria[0] == "UID" and criteria[1].endswith(":*"):
            start = int(criteria[1][:-2])
            found = [uid for uid in uids if uid >= start]
            # "n:*" matches the highest UID even below n (RFC 3501), as servers answer it.
            return found or uids[-1:]
        raise NotImplementedError(f"FakeImap does not search {criteria!r}")

    def fetch(self, uids: Sequence[int], items: Sequence[bytes]) -> dict[int, dict[bytes, Any]]:
        with self.server.lock:
            box = self._box()
            answer: dict[int, dict[bytes, Any]] = {}
            for uid in uids:
                message = box.messages.get(uid)
                if message is None:
                    continue
                data: dict[bytes, Any] = {}
                for item in items:
                    if item == b"RFC822.SIZE":
                        data[item] = len(message.raw)
                    elif item == b"INTERNALDATE":
                        data[item] = message.internal_date
                    elif item == b"BODY.PEEK[]":
                        data[b"BODY[]"] = message.raw
                    elif item == b"BODY.PEEK[HEADER]":
                        end = message.raw.find(b"\r\n\r\n")
                        data[b"BODY[HEADER]"] = message.raw if end < 0 else message.raw[:end + 4]
                    elif item == b"FLAGS":
                        data[item] = tuple(sorted(message.flags))
                    else:
                        raise NotImplementedError(f"FakeImap does not fetch {item!r}")
                answer[uid] = data
            return answer

    def add_flags(self, uids: Sequence[int], flags: Sequence[bytes],
                  silent: bool = False) -> dict[int, tuple[bytes, ...]]:
        with self.server.lock:
            box = self._box()
            for uid in uids:
                if uid in box.messages:
                    box.messages[uid].flags.update(flags)
            box.modseq += 1
            return {} if silent else {u: tuple(box.messages[u].flags) for u in uids
                                      if u in box.messages}

    def copy(self, uids: Sequence[int], folder: str) -> bytes:
        with self.server.lock:
            box = self._box()
            assert self.user is not None
            for uid in uids:
                message = box.messages.get(uid)
                if message is not None:
                    self.server.deliver(self.user, message.raw, folder=folder,
                                        flags=message.flags,
                                        internal_date=message.internal_date)
            return b"Copy completed"

    def move(self, uids: Sequence[int], folder: str) -> bytes:
        if not self.has_capability("MOVE"):
            from imapclient.exceptions import CapabilityError

            raise CapabilityError("Server does not support MOVE")
        with self.server.lock:
            self.copy(uids, folder)
            box = self._box()
            for uid in uids:
                box.messages.pop(uid, None)
            return b"Move completed"

    def uid_expunge(self, uids: Sequence[int]) -> bytes:
        with self.server.lock:
            box = self._box()
            for uid in uids:
                if b"\\Deleted" in box.messages.get(uid, _Message(b"", set(), _EPOCH)).flags:
                    box.messages.pop(uid)
            return b"Expunge completed"

    def expunge(self) -> bytes:
        with self.server.lock:
            box = self._box()
            for uid in [u for u, m in box.messages.items() if b"\\Deleted" in m.flags]:
                box.messages.pop(uid)
            return b"Expunge completed"

    # ------------------------------------------------------------------ IDLE

    def idle(self) -> None:
        with self.server.lock:
            self._box()

    def idle_check(self, timeout: float | None = None) -> list[tuple[Any, ...]]:
        """Waits up to ``timeout`` seconds for delivered mail; ``(n, b"EXISTS")`` for it."""
        with self.server.lock:
            box = self._box()
            if box.uidnext == self._idle_from:
                self.server.lock.wait(timeout)
                box = self._box()
            if box.uidnext == self._idle_from:
                return []
            self._idle_from = box.uidnext
            return [(len(box.messages), b"EXISTS")]

    def idle_done(self) -> tuple[bytes, list[tuple[Any, ...]]]:
        return b"Idle completed", self.idle_check(0)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
