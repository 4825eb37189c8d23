"""Runs in a fresh interpreter for the cold-start and memory benchmarks (spec as JSON on stdin).

``first-webhook``: import mailparity, handle one Graph notification, publish its event.
``memory``: the same for a message with a large attachment while sampling RSS, then stream the
attachment into a file with ``get_attachment_content(..., into=...)``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from typing import Any


def _rss() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """The highest RSS seen while running (sampled every millisecond, in a thread)."""

    def __init__(self) -> None:
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.001)

    def __enter__(self) -> Sampler:
        self.peak = _rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _setup(spec: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    from mailparity import InMemoryPublisher, InMemoryStore, WebhookHandler
    from mailparity.models import MicrosoftProviderConfig, OAuthTokens

    secrets = spec["secrets"]
    data = dict(spec["config"])
    data["client_secret"] = secrets["client_secret"]
    data["webhook_verification_token"] = secrets["webhook_verification_token"]
    config = MicrosoftProviderConfig.model_validate(data)
    store = InMemoryStore()
    store.save_provider(config)
    store.save_tokens(
        config.provider_id,
        OAuthTokens(
            access_token=secrets["access_token"],
            refresh_token=secrets["refresh_token"],
            expires_at=secrets["expires_at"],
        ),
    )
    publisher = InMemoryPublisher()
    return config, store, publisher, WebhookHandler(store=store, publisher=publisher)


def _notify(handler: Any, body: dict[str, Any]) -> None:
    from mailparity import WebhookRequest

    answer = handler.handle_microsoft(
        WebhookRequest(
            method="POST", query={}, headers={"Content-Type": "application/json"},
            body=json.dumps(body).encode("utf-8"),
        )
    )
    if answer.status != 202:
        raise SystemExit(f"notification answered {answer.status}")
    handler.run_pending()


def first_webhook(spec: dict[str, Any]) -> dict[str, Any]:
    _, _, publisher, handler = _setup(spec)
    _notify(handler, spec["body"])
    return {"events": len(publisher.events)}


def memory(spec: dict[str, Any]) -> dict[str, Any]:
    import mailparity.processing
    import mailparity.providers.graph  # noqa: F401

    config, store, publisher, handler = _setup(spec)
    size = int(spec["size"])
    base = _rss()
    with Sampler() as sampler:
        _notify(handler, spec["body"])
    events = publisher.events
    if len(events) != 1:
        raise SystemExit(f"{len(events)} events")
    event = events[0]
    dumped = event.model_dump_json(by_alias=True)
    attachments = event.email_data.attachments
    from mailparity.providers.graph import MicrosoftGraphAdapter

    adapter = MicrosoftGraphAdapter(config, store=store)
    base_download = _rss()
    with tempfile.TemporaryFile() as target, Sampler() as download:
        adapter.get_attachment_content(event.email_data.id, attachments[0].id, into=target)
        written = target.tell()
    return {
        "event_bytes": len(dumped),
        "attachment_size_reported": attachments[0].size,
        "content_in_event": len(dumped) > size // 2,
        "process_growth": sampler.peak - base,
        "download_growth": download.peak - base_download,
        "download_written": written,
        "size": size,
    }


def main() -> None:
    mode = sys.argv[1]
    spec = json.loads(sys.stdin.read())
    result = first_webhook(spec) if mode == "first-webhook" else memory(spec)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
