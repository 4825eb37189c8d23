"""Graph's catch-up cursor: message delta per folder (``fetch_changes`` / ``commit_cursor``),
the baseline taken when a subscription is created, and the bounded restart after a delta token
expired. :class:`DeltaCatchUp` is the part of :class:`~mailparity.providers.graph.adapter.
MicrosoftGraphAdapter` that does it; the adapter supplies the HTTP helpers declared abstract here.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from ...adapter import EmailProviderAdapter, SyncBatch
from ...errors import (
    AuthError,
    ConfigurationError,
    CursorExpiredError,
    MailParityError,
    ProviderUnavailableError,
)
from ...protocols import MetaStore
from .config import MicrosoftProviderConfig
from .messages import parse_graph_datetime
from .paths import segment as _q

__all__ = [
    "BASELINE_MARGIN",
    "DELTA_PAGE_SIZE",
    "MAX_DELTA_PAGES",
    "RESYNC_MARGIN",
    "DeltaCatchUp",
]

log = logging.getLogger("mailparity.graph")

#: Sent on every Graph request (ids then survive moves between folders).
_IMMUTABLE_ID_PREFER = 'IdType="ImmutableId"'
#: Delta page size asked for with ``Prefer: odata.maxpagesize``.
DELTA_PAGE_SIZE = 100
#: A delta round never needs more pages than this; more means a link loop on Graph's side.
MAX_DELTA_PAGES = 1000
#: How far before the last cursor commit a restarted (410) delta looks back.
RESYNC_MARGIN = timedelta(hours=1)
#: The baseline taken at registration starts this long before "now" (clock skew with Graph).
BASELINE_MARGIN = timedelta(minutes=5)
_META_COMMIT = "graph_delta_committed_at:"


#: Compare-and-set attempts of one commit while other folders' links keep moving.
_COMMIT_ATTEMPTS = 5


class DeltaCatchUp(EmailProviderAdapter[MicrosoftProviderConfig]):
    """The delta catch-up of the Graph adapter (the adapter's "catch-up (delta)" section)."""

    # ------------------------------------------------------------------ supplied by the adapter

    @abc.abstractmethod
    def _url(self, path: str) -> str:
        """The absolute URL of a mailbox-relative path (or a checked absolute link)."""

    @abc.abstractmethod
    def _check_link(self, link: str) -> None:
        """Refuse a link that leaves the Graph host (the bearer token goes with it)."""

    @abc.abstractmethod
    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        allow_status: frozenset[int] = frozenset(),
        absolute: bool = False,
    ) -> requests.Response:
        """One Graph request through the library's HTTP layer."""

    @staticmethod
    @abc.abstractmethod
    def _json(response: requests.Response) -> dict[str, Any]:
        """The JSON object of a response."""

    # ------------------------------------------------------------------ catch-up (delta)


    def _delta_start(self) -> tuple[str, dict[str, str]]:
        url = self._url(f"/mailFolders/{_q(self.config.folder)}/messages/delta")
        # changeType=created keeps our own isRead/category PATCHes out of later rounds; like every
        # query option it is encoded into the delta token, so it is sent on the first request only.
        return url, {"$select": "id,receivedDateTime", "changeType": "created"}

    def _read_delta(
        self, url: str, params: Mapping[str, str] | None
    ) -> tuple[list[tuple[str, datetime | None]], str]:
        """Follow nextLinks to the deltaLink; return (id, receivedDateTime) of live items."""
        headers = {"Prefer": f"{_IMMUTABLE_ID_PREFER}, odata.maxpagesize={DELTA_PAGE_SIZE}"}
        items: list[tuple[str, datetime | None]] = []
        seen_links: set[str] = set()
        next_url, next_params = url, params
        for _ in range(MAX_DELTA_PAGES):
            self._check_link(next_url)
            data = self._json(self._call("GET", next_url, params=next_params, headers=headers))
            for item in data.get("value") or []:
                if not isinstance(item, Mapping) or "@removed" in item:
                    continue
                item_id = item.get("id")
                if isinstance(item_id, str) and item_id:
                    items.append((item_id, parse_graph_datetime(item.get("receivedDateTime"))))
            delta_link = data.get("@odata.deltaLink")
            if isinstance(delta_link, str) and delta_link:
                self._check_link(delta_link)
                return items, delta_link
            next_link = data.get("@odata.nextLink")
            if not isinstance(next_link, str) or not next_link or next_link in seen_links:
                raise ProviderUnavailableError(
                    "Graph delta page without a usable nextLink or deltaLink",
                    provider=self.provider,
                )
            seen_links.add(next_link)
            next_url, next_params = next_link, None
        raise ProviderUnavailableError(
            f"Graph delta did not end within {MAX_DELTA_PAGES} pages", provider=self.provider
        )

    @staticmethod
    def _ordered_ids(items: list[tuple[str, datetime | None]]) -> list[str]:
        floor = datetime.min.replace(tzinfo=None)
        ordered = sorted(
            enumerate(items),
            key=lambda pair: (
                (pair[1][1].replace(tzinfo=None) if pair[1][1] else floor), pair[0]
            ),
        )
        result: list[str] = []
        seen: set[str] = set()
        for _, (item_id, _when) in ordered:
            if item_id not in seen:
                seen.add(item_id)
                result.append(item_id)
        return result

    def _last_commit(self, folder: str) -> datetime | None:
        if not isinstance(self.store, MetaStore):
            return None
        raw = self.store.get_meta(self.config.provider_id, _META_COMMIT + folder)
        return parse_graph_datetime(raw) if raw else None

    def fetch_changes(self) -> SyncBatch:
        """Read the folder's delta from the saved deltaLink (nothing is saved here).

        * No deltaLink yet: a baseline round; no ids (the mailbox is not replayed),
          ``baseline=True``.
        * Later rounds: the ids of messages created since, oldest first, ``@removed`` skipped.
        * The deltaLink expired (410 ``syncStateNotFound``): the folder's delta restarts bounded
          by ``$filter=receivedDateTime ge T`` (Graph allows exactly this filter on message delta),
          T = the last commit minus one hour, recorded in the store's MetaStore; the ids it finds
          come back with ``full_sync=True`` (the pipeline dedupes them). Without a MetaStore or a
          recorded commit the restart is a plain baseline (``baseline=True``).

        The new ``{folder: deltaLink}`` is in ``cursor``; :meth:`commit_cursor` saves it once
        every message has been handled.
        """
        folder = self.config.folder
        stored = self.config.delta_links.get(folder)
        start_url, start_params = self._delta_start()
        if stored is None:
            _, link = self._read_delta(start_url, start_params)
            return SyncBatch([], {folder: link}, expected=None, baseline=True)
        try:
            items, link = self._read_delta(stored, None)
            return SyncBatch(self._ordered_ids(items), {folder: link}, expected=stored)
        except CursorExpiredError as exc:
            log.warning(
                "provider %s: delta token of %s expired (%s); restarting the folder",
                self.config.provider_id, folder, exc.code,
            )
        since = self._last_commit(folder)
        if since is None:
            _, link = self._read_delta(start_url, start_params)
            return SyncBatch([], {folder: link}, expected=stored, baseline=True)
        bound = (since - RESYNC_MARGIN).strftime("%Y-%m-%dT%H:%M:%SZ")
        params = {**start_params, "$filter": f"receivedDateTime ge {bound}"}
        items, link = self._read_delta(start_url, params)
        return SyncBatch(self._ordered_ids(items), {folder: link}, expected=stored, full_sync=True)

    def establish_delta_baseline(self) -> bool:
        """Take and save the folder's delta starting point now, unless it already has one.

        Gmail's watch fixes its history cursor at registration; this is Graph's equivalent, so
        that a later :meth:`fetch_changes` returns every message that arrived after this call,
        even when its notification was dropped before the first catch-up sync.

        The round is bounded by ``$filter=receivedDateTime ge T`` (the one filter Graph allows
        on message delta), so it lists a few minutes of mail, not the whole folder. The filter
        is encoded in the delta token for good, so T must never be later than Graph's own
        clock: T is the earlier of our clock and the newest message's ``receivedDateTime``
        (Exchange stamps it), minus :data:`BASELINE_MARGIN`. A clock of ours running fast thus
        cannot hide new mail. An empty folder gets an unfiltered round (it is cheap).

        The deltaLink goes to ``config.delta_links`` and the commit time to the MetaStore,
        exactly as :meth:`commit_cursor` saves them. Returns True when a baseline was saved,
        False when the folder already had a deltaLink (or another worker saved one meanwhile).
        """
        folder = self.config.folder
        fresh = self.store.get_provider(self.config.provider_id)
        links = (
            fresh.delta_links if isinstance(fresh, MicrosoftProviderConfig)
            else self.config.delta_links
        )
        if links.get(folder):
            return False
        start_url, params = self._delta_start()
        bound = self._baseline_bound()
        if bound is not None:
            params = {**params, "$filter": f"receivedDateTime ge {bound}"}
        _, link = self._read_delta(start_url, params)
        saved = self.commit_cursor(SyncBatch([], {folder: link}, expected=None, baseline=True))
        if saved:
            log.info("provider %s: delta baseline of %s taken", self.config.provider_id, folder)
        return saved

    def _baseline_bound(self) -> str | None:
        """T of :meth:`establish_delta_baseline` in Graph's filter syntax; None: empty folder."""
        data = self._json(
            self._call(
                "GET", f"/mailFolders/{_q(self.config.folder)}/messages",
                params={
                    "$top": "1", "$orderby": "receivedDateTime desc",
                    "$select": "receivedDateTime",
                },
            )
        )
        value = data.get("value")
        if not isinstance(value, list) or not value:
            return None
        bound = self.clock()
        first = value[0]
        newest = parse_graph_datetime(first.get("receivedDateTime")) if isinstance(
            first, Mapping
        ) else None
        if newest is not None and newest < bound:
            bound = newest
        return (bound - BASELINE_MARGIN).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _baseline_at_registration(self) -> None:
        """:meth:`establish_delta_baseline`, without letting a failed read block the
        subscription: push still works, and the first catch-up sync takes the baseline then
        (the behaviour before this existed). Auth and configuration errors are raised; the
        subscription request would meet them anyway."""
        try:
            self.establish_delta_baseline()
        except (AuthError, ConfigurationError):
            raise
        except MailParityError as exc:
            log.warning(
                "provider %s: could not take the delta baseline of %s at registration (%s);"
                " the first catch-up sync takes it",
                self.config.provider_id, self.config.folder, exc.code or exc.status or
                type(exc).__name__,
            )

    def commit_cursor(self, batch: SyncBatch) -> bool:
        """Save the batch's deltaLink(s) if the stored link of each of its folders is still the one
        the batch started from (False, nothing saved, when another worker moved it meanwhile).

        Atomic: the whole ``delta_links`` mapping moves with the store's
        ``compare_and_set_cursor``. When that fails because another folder's link moved between
        the read and the write, the commit reads again and retries (a bounded number of times);
        a store without the method gets a check-then-save."""
        cursor = batch.cursor
        if not isinstance(cursor, Mapping) or not cursor:
            raise ValueError("SyncBatch.cursor must be a {folder: deltaLink} mapping")
        update = {str(k): str(v) for k, v in cursor.items()}
        for _ in range(_COMMIT_ATTEMPTS):
            outcome = self._commit_links(update, batch.expected)
            if outcome is not None:
                break
        else:
            log.warning(
                "provider %s: delta links kept moving meanwhile; not committed",
                self.config.provider_id,
            )
            return False
        if not outcome:
            return False
        if isinstance(self.store, MetaStore):
            for folder in cursor:
                self.store.set_meta(
                    self.config.provider_id, _META_COMMIT + str(folder), self.clock().isoformat()
                )
        return True

    def _commit_links(self, update: Mapping[str, str], expected: Any) -> bool | None:
        """One compare-and-set of ``delta_links`` with ``update`` applied: True when saved, False
        when a folder of ``update`` no longer has the ``expected`` link, None when the stored
        mapping changed elsewhere between the read and the write (read again)."""
        pid = self.config.provider_id
        fresh = self.store.get_provider(pid)
        stored = fresh if isinstance(fresh, MicrosoftProviderConfig) else None
        current = dict(stored.delta_links if stored is not None else self.config.delta_links)
        for folder in update:
            if current.get(folder) != expected:
                log.info("provider %s: delta cursor of %s moved meanwhile; not committed",
                         pid, folder)
                return False
        links = {**current, **update}
        cas = getattr(self.store, "compare_and_set_cursor", None)
        if stored is None or not callable(cas):
            self.save_config_changes({"delta_links": links})
            return True
        if not cas(pid, current, links):
            return None
        self.config = stored.model_copy(update={"delta_links": links})
        return True
