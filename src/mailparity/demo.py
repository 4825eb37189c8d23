"""The end-to-end demo behind ``mailparity demo`` (and ``make demo``): nothing but 127.0.0.1.

:func:`run_demo` runs the whole pipeline for real, with the provider fakes of
:mod:`mailparity.testing` standing in for Microsoft and Google:

1. a :class:`~mailparity.stores.sqlite.SqliteStore` file (the embedded default) in the output
   folder, events published as JSON lines beside it;
2. FakeGraph and FakeGmail served over HTTPS on 127.0.0.1 (a throwaway certificate), the webhook
   endpoints of a :class:`~mailparity.webhooks.WebhookHandler` served over HTTP by
   ``wsgi.serve_in_thread``;
3. one Microsoft 365 and one Gmail mailbox connected through the web connect flow
   (:class:`~mailparity.webconnect.WebConnect`), as a helpdesk's customer would: start (state and
   PKCE), the fake's authorization endpoint visited as the mailbox user (over HTTPS: msal speaks
   only to an ``https`` login host), the callback redeeming the code, then the Graph subscription
   (the fake performs Graph's validation handshake against our endpoint) and the Gmail watch;
   Pub/Sub push tokens are signed by a test key whose certificates the handler fetches from the
   fake;
4. the same realistic emails (attachments, an inline image, a reply with In-Reply-To/References,
   non-ASCII subjects and names) delivered to both mailboxes; the fakes POST their notifications
   to our endpoints, each one twice (providers deliver at least once);
5. a :class:`~mailparity.worker.Worker` runs until idle; the published events are shown as a
   table and written to ``events.json``.

The exit code is 0 when every delivered email produced exactly one complete event with the right
contents (and a reply landed in its original's thread), 1 otherwise.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import time
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit

if TYPE_CHECKING:
    import requests

    from .models import InboundEmailReceived, MailParityEvent
    from .publishers import InMemoryPublisher, JsonlFilePublisher
    from .stores.sqlite import SqliteStore
    from .webconnect import ConnectResult, WebConnect

__all__ = ["run_demo"]

STORE_FILE = "demo.sqlite3"
EVENTS_JSON = "events.json"
EVENTS_JSONL = "events.jsonl"

MICROSOFT_MAILBOX = "support@contoso.test"
GOOGLE_MAILBOX = "help@fabrikam.test"
MICROSOFT_PROVIDER_ID = "contoso-support"
GOOGLE_PROVIDER_ID = "fabrikam-help"
DEMO_TENANT = "acme-helpdesk"
#: What the Pub/Sub push subscription would be configured with (its ``oidcToken``).
GOOGLE_AUDIENCE = "https://helpdesk.acme.test/webhooks/google"
PUSH_SERVICE_ACCOUNT = "gmail-push@mailparity-test.iam.gserviceaccount.com"

#: The host's callback URL, registered with both fakes' OAuth clients. The demo has no web app
#: behind it: it reads the query the provider redirects the browser to and calls the callback.
CONNECT_CALLBACK = "https://helpdesk.acme.test/mail/connect/callback"
#: The helpdesk's OAuth clients (registered with the fakes only; nothing real).
MICROSOFT_CLIENT = ("acme-helpdesk-app", "acme-helpdesk-app-secret")
GOOGLE_CLIENT = ("acme-helpdesk.apps.googleusercontent.test", "acme-helpdesk-google-secret")

#: Worker polls (0.05 s each) that must find nothing before the demo calls the queue idle.
IDLE_POLLS = 3


# ---------------------------------------------------------------------------- the demo emails


def _tiny_png(rgb: tuple[int, int, int]) -> bytes:
    """A valid 1x1 PNG of one colour (a real image, so mail tools would render it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, *rgb]))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(
        b"IEND", b""
    )


_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


@dataclass(frozen=True)
class DemoEmail:
    """One email of the demo and what its event must show."""

    key: str
    sender: tuple[str, str]
    subject: str
    text: str | None
    html: str | None
    message_id: str
    attachments: tuple[tuple[str, bytes, str], ...] = ()
    inline_images: tuple[tuple[str, bytes, str, str], ...] = ()  # cid, bytes, type, filename
    cc: tuple[tuple[str, str], ...] = ()
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()

    @property
    def attachment_count(self) -> int:
        return len(self.attachments) + len(self.inline_images)

    def raw(self, to: str, sent: datetime) -> bytes:
        """The RFC 5322 bytes addressed to ``to``."""
        from .testing.builder import InlineImage, build_message

        return build_message(
            from_=self.sender,
            to=to,
            cc=list(self.cc),
            subject=self.subject,
            text=self.text,
            html=self.html,
            attachments=list(self.attachments),
            inline_images=[
                InlineImage(cid, data, ctype, filename)
                for cid, data, ctype, filename in self.inline_images
            ],
            message_id=self.message_id,
            in_reply_to=self.in_reply_to,
            references=list(self.references),
            date=sent,
        )


PRINTER_ID = "<printer-3og-1@nordlicht.example>"

DEMO_EMAILS: tuple[DemoEmail, ...] = (
    DemoEmail(
        key="printer",
        sender=("Zoë Ångström", "zoe.angstrom@nordlicht.example"),
        subject="Drucker im 3. OG druckt nur leere Seiten",
        text=(
            "Hallo Support,\n\nder Drucker im 3. OG gibt seit heute früh nur leere Seiten aus."
            "\nDas Fehlerprotokoll hängt an, das Display sieht so aus wie im Bild.\n\nGrüße\nZoë"
        ),
        html=(
            "<p>Hallo Support,</p><p>der Drucker im 3. OG gibt seit heute früh nur"
            " <b>leere Seiten</b> aus.</p><p>Das Display:<br>"
            '<img src="cid:display-foto@nordlicht.example" alt="Display"></p><p>Grüße<br>Zoë</p>'
        ),
        message_id=PRINTER_ID,
        attachments=(
            ("fehlerprotokoll.txt", b"E-204 Fuser temperature low\nE-117 Toner sensor\n",
             "text/plain"),
        ),
        inline_images=(
            ("display-foto@nordlicht.example", _tiny_png((40, 90, 200)), "image/png",
             "display.png"),
        ),
    ),
    DemoEmail(
        key="invoice",
        sender=("山田 太郎", "taro.yamada@sakura.example"),
        subject="請求書の件について (Invoice #4711)",
        text="ご担当者様\n\n請求書 #4711 の金額に誤りがあるようです。ご確認ください。\n\n山田",
        html=None,
        message_id="<invoice-4711@sakura.example>",
        attachments=(("請求書-4711.pdf", _PDF, "application/pdf"),),
        cc=(("Keiko Sato", "keiko.sato@sakura.example"),),
    ),
    DemoEmail(
        key="reply",
        sender=("Zoë Ångström", "zoe.angstrom@nordlicht.example"),
        subject="Re: Drucker im 3. OG druckt nur leere Seiten",
        text=(
            "Nachtrag: nach dem Neustart druckt er wieder, aber nur schwarz-weiß.\n\n"
            "> der Drucker im 3. OG gibt seit heute früh nur leere Seiten aus."
        ),
        html=None,
        message_id="<printer-3og-2@nordlicht.example>",
        in_reply_to=PRINTER_ID,
        references=(PRINTER_ID,),
    ),
    DemoEmail(
        key="vpn",
        sender=("François Müller", "f.muller@example.org"),
        subject="VPN 🔒 ne se connecte plus depuis la mise à jour",
        text=None,
        html=(
            "<html><body><p>Bonjour,</p><p>depuis la mise à jour d&rsquo;hier le VPN refuse"
            " la connexion&nbsp;: <code>TLS handshake failed</code>.</p>"
            "<p>Cordialement,<br>François</p></body></html>"
        ),
        message_id="<vpn-8812@example.org>",
    ),
)


# ---------------------------------------------------------------------------- plumbing


class _Console:
    """Prints to a stream that may not speak UTF-8 (a Windows console): unknown characters are
    replaced instead of failing the demo."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, line: str = "") -> None:
        try:
            self.stream.write(line + "\n")
        except UnicodeEncodeError:
            encoding = getattr(self.stream, "encoding", None) or "ascii"
            self.stream.write(line.encode(encoding, "replace").decode(encoding) + "\n")
        self.stream.flush()


class _DemoPublisher:
    """Publishes to the JSON-lines file (what ``mailparity events tail`` reads) and keeps every
    event in memory for the table."""

    def __init__(self, jsonl: JsonlFilePublisher, memory: InMemoryPublisher) -> None:
        self.jsonl = jsonl
        self.memory = memory

    def publish(self, event: MailParityEvent) -> None:
        self.jsonl.publish(event)
        self.memory.publish(event)


@dataclass
class _Check:
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)


def _clean_output(output_dir: Path) -> None:
    """Remove what an earlier run left (only the demo's own files): the fakes start empty, so
    an old store would see every message as already published."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in (
        STORE_FILE,
        f"{STORE_FILE}-wal",
        f"{STORE_FILE}-shm",
        f"{STORE_FILE}-journal",
        EVENTS_JSON,
        EVENTS_JSONL,
    ):
        (output_dir / name).unlink(missing_ok=True)


# ---------------------------------------------------------------------------- the table


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal (CJK and emoji take two, combining marks none)."""
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def _fit(text: str, width: int) -> str:
    """``text`` cut (with an ellipsis) or padded to exactly ``width`` columns."""
    text = " ".join(text.split())
    if _width(text) > width:
        out = ""
        for char in text:
            if _width(out + char) > width - 1:
                break
            out += char
        text = out + "…"
    return text + " " * (width - _width(text))


def _attachment_text(event: InboundEmailReceived) -> str:
    items = event.email_data.attachments
    if not items:
        return "-"
    ordered = sorted(items, key=lambda a: a.is_inline)  # files first, then inline parts
    return ", ".join(f"{a.name} (inline)" if a.is_inline else a.name for a in ordered)


def _thread_labels(events: Sequence[InboundEmailReceived]) -> dict[str, str]:
    """``event_id -> "thread 1" / "thread 1, reply"``, threads numbered per provider."""
    numbers: dict[tuple[str, str], int] = {}
    per_provider: dict[str, int] = {}
    labels: dict[str, str] = {}
    for event in events:
        data = event.email_data
        key = (event.provider_id, data.thread_id or data.id)
        if key not in numbers:
            per_provider[event.provider_id] = per_provider.get(event.provider_id, 0) + 1
            numbers[key] = per_provider[event.provider_id]
        label = f"thread {numbers[key]}"
        labels[event.event_id] = f"{label}, reply" if data.in_reply_to else label
    return labels


def _table(events: Sequence[InboundEmailReceived], terminal_width: int) -> list[str]:
    fixed = [("PROVIDER", 9), ("MAILBOX", 20), ("FROM", 18), ("ATTACHMENTS", 42), ("THREAD", 15)]
    used = sum(width for _, width in fixed) + 2 * len(fixed)
    subject_width = max(24, min(50, terminal_width - used))
    columns = [*fixed[:3], ("SUBJECT", subject_width), *fixed[3:]]
    labels = _thread_labels(events)
    lines = ["  ".join(_fit(title, width) for title, width in columns).rstrip()]
    lines.append("  ".join("-" * width for _, width in columns))
    for event in events:
        data = event.email_data
        sender = data.from_.name or data.from_.email
        cells = [
            data.provider,
            data.mailbox,
            sender,
            data.subject,
            _attachment_text(event),
            labels[event.event_id],
        ]
        fitted = [_fit(cell, width) for cell, (_, width) in zip(cells, columns, strict=True)]
        lines.append("  ".join(fitted).rstrip())
    return lines


# ---------------------------------------------------------------------------- verification


def _verify(
    events: Sequence[InboundEmailReceived],
    delivered: Sequence[tuple[str, DemoEmail]],
    check: _Check,
) -> None:
    """Each delivered (provider_id, email) has exactly one complete, correct event; replies
    share their original's thread; nothing else was published."""
    by_key: dict[tuple[str, str | None], list[InboundEmailReceived]] = {}
    for event in events:
        by_key.setdefault((event.provider_id, event.email_data.message_id), []).append(event)
    threads: dict[tuple[str, str], str | None] = {}
    for provider_id, email in delivered:
        found = by_key.pop((provider_id, email.message_id), [])
        label = f"{provider_id}: {email.subject!r}"
        if len(found) != 1:
            check.fail(f"{label}: {len(found)} events instead of exactly one")
            continue
        data = found[0].email_data
        threads[(provider_id, email.message_id)] = data.thread_id
        if not data.complete:
            check.fail(f"{label}: only the minimal event was published")
        if data.subject != email.subject:
            check.fail(f"{label}: subject came out as {data.subject!r}")
        if data.from_.email != email.sender[1] or data.from_.name != email.sender[0]:
            check.fail(f"{label}: sender came out as {data.from_!r}")
        if len(data.attachments) != email.attachment_count:
            check.fail(f"{label}: {len(data.attachments)} attachments, {email.attachment_count}"
                       " expected")
        inline = [a for a in data.attachments if a.is_inline]
        if len(inline) != len(email.inline_images):
            check.fail(f"{label}: {len(inline)} inline parts, {len(email.inline_images)} expected")
        if data.in_reply_to != email.in_reply_to:
            check.fail(f"{label}: In-Reply-To came out as {data.in_reply_to!r}")
        if data.references != list(email.references):
            check.fail(f"{label}: References came out as {data.references!r}")
        if not data.body.text.strip():
            check.fail(f"{label}: empty text body")
    for provider_id, email in delivered:
        if email.in_reply_to is None:
            continue
        mine = threads.get((provider_id, email.message_id))
        original = threads.get((provider_id, email.in_reply_to))
        if mine is None or mine != original:
            check.fail(f"{provider_id}: the reply {email.subject!r} is not in its original's"
                       " thread")
    for (provider_id, message_id), extra in by_key.items():
        check.fail(f"{provider_id}: {len(extra)} unexpected event(s) for {message_id}")


# ---------------------------------------------------------------------------- the web connect


class _ConnectFailedError(Exception):
    """A mailbox could not be connected through the web flow: the demo stops and fails."""


def _web_connect(
    connect: WebConnect,
    browser: requests.Session,
    provider: str,
    *,
    mailbox: str,
    provider_id: str,
    step: Callable[[str], None],
) -> ConnectResult:
    """Connect ``mailbox`` the way a helpdesk's customer does, narrated: start the flow, visit
    the fake's authorization URL signed in as ``mailbox`` (``fake_user``: the fake's stand-in
    for its login form and consent screen), then hand the query it redirects to to the callback,
    which redeems the code and creates the subscription / watch.

    Raises:
        _ConnectFailedError: the fake did not send the browser back with a code, the callback
            refused it, or the subscription / watch could not be created.
    """
    import requests

    from .errors import MailParityError

    started = connect.start(provider, owner=DEMO_TENANT, mailbox=mailbox, provider_id=provider_id)
    page = urlsplit(started.url)
    step(f"  start: state and PKCE challenge kept; the browser goes to {page.scheme}://"
         f"{page.netloc}{page.path}")
    try:
        visit = browser.get(
            f"{started.url}&{urlencode({'fake_user': mailbox})}", allow_redirects=False, timeout=10
        )
    except requests.RequestException as error:
        raise _ConnectFailedError(f"the {provider} sign-in page did not answer: {error}") from error
    back = urlsplit(visit.headers.get("Location", ""))
    query = dict(parse_qsl(back.query, keep_blank_values=True))
    if visit.status_code != 302 or f"{back.scheme}://{back.netloc}{back.path}" != CONNECT_CALLBACK:
        raise _ConnectFailedError(
            f"the {provider} sign-in page answered HTTP {visit.status_code} without sending the"
            " browser back to the callback"
        )
    answer = "a code" if "code" in query else f"error={query.get('error', '?')}"
    step(f"  signed in there as {mailbox} and consented: HTTP 302 back to {CONNECT_CALLBACK}"
         f" with {answer}")
    try:
        result = connect.callback(query, owner=DEMO_TENANT)
    except MailParityError as error:
        raise _ConnectFailedError(f"the {provider} callback refused: {error}") from error
    step(f"  callback: state spent, code redeemed with the PKCE verifier, {result.mailbox}"
         f" verified, tokens stored as {result.provider_id}")
    if result.subscription_error is not None:
        raise _ConnectFailedError(f"{result.provider_id}: no push: {result.subscription_error}")
    return result


def _provider_key(fake: object) -> str:
    """The key of the registered provider whose testing kit's fake ``fake`` is."""
    from .providers import specs

    for spec in specs():
        kit = spec.testing_kit()
        fake_class = None if kit is None else kit.fake_class()
        if fake_class is not None and isinstance(fake, fake_class):
            return spec.key
    raise _ConnectFailedError(f"no registered provider is served by {type(fake).__name__}")


def _push_text(store: SqliteStore, key: str, result: ConnectResult) -> str:
    """What the connection's push is: ``subscription <id>`` (Graph) or ``watch on <topic>
    (history from <id>)`` (Gmail), read back from the store."""
    from .providers import get_spec

    config = store.get_provider(result.provider_id or "")
    subscription = result.subscription
    if config is None or subscription is None:
        raise _ConnectFailedError(f"{result.provider_id} has no push after connecting")
    if subscription.id is not None:
        return f"subscription {subscription.id}"
    cursor_field = get_spec(key).cursor_field
    cursor = getattr(config, cursor_field) if cursor_field else None
    return f"watch on {subscription.resource} (history from {cursor})"


# ---------------------------------------------------------------------------- the run


def run_demo(output_dir: Path, verbose: bool = False, *, out: TextIO | None = None) -> int:
    """Run the end-to-end demo against local provider fakes; see the module docstring.

    Args:
        output_dir: where the store (``demo.sqlite3``), ``events.jsonl`` and ``events.json`` are
            written; the demo's files from an earlier run are replaced.
        verbose: also show every notification POST and the requests each fake received.
        out: where to print (standard output by default).

    Returns:
        0 when every delivered email produced exactly one complete event, 1 otherwise.
    """
    import requests

    from .models import InboundEmailReceived
    from .publishers import InMemoryPublisher, JsonlFilePublisher
    from .stores.sqlite import SqliteStore
    from .testing.fake_gmail import FakeGmail
    from .testing.fake_graph import FakeGraph
    from .testing.oidc import TestOidcSigner
    from .testing.server import serve
    from .webconnect import WebConnect
    from .webhooks import WebhookHandler
    from .worker import Worker
    from .wsgi import serve_in_thread

    say = _Console(out if out is not None else sys.stdout)
    try:
        import cryptography  # noqa: F401 - the test signer of Pub/Sub push tokens needs it
    except ImportError:
        say("mailparity demo needs the 'cryptography' package: pip install cryptography")
        return 2
    started = time.monotonic()
    output_dir = Path(output_dir)
    _clean_output(output_dir)

    def step(message: str) -> None:
        say(f"[{time.monotonic() - started:5.2f}s] {message}")

    # Loopback only: never send the demo's requests through a proxy from the environment.
    session = requests.Session()
    session.trust_env = False
    store = SqliteStore(output_dir / STORE_FILE)
    memory = InMemoryPublisher()
    publisher = _DemoPublisher(JsonlFilePublisher(output_dir / EVENTS_JSONL), memory)
    validations: list[tuple[str, int]] = []
    base_validator = FakeGraph.http_validator(session)

    def validator(url: str) -> tuple[int, str]:
        status, body = base_validator(url)
        validations.append((url, status))
        return status, body

    signer = TestOidcSigner(kid="mailparity-demo")
    graph = FakeGraph(validator=validator, seed=7)
    gmail = FakeGmail(signer=signer, seed=7)
    graph.add_client(*MICROSOFT_CLIENT, [CONNECT_CALLBACK])
    gmail.add_client(*GOOGLE_CLIENT, [CONNECT_CALLBACK])
    graph.add_mailbox(MICROSOFT_MAILBOX, "Contoso Support")
    gmail.add_mailbox(GOOGLE_MAILBOX)
    # HTTPS: msal refuses a plain-http login host. The session trusts the throwaway certificate.
    fake_server = serve(graph, gmail, tls=True)
    fake_server.trust(session)
    handler = WebhookHandler(
        store=store,
        publisher=publisher,
        session=session,
        google_audience=GOOGLE_AUDIENCE,
        google_service_accounts=[PUSH_SERVICE_ACCOUNT],
        google_certs_url=gmail.certs_url,
    )
    webhook_server = serve_in_thread(handler)
    check = _Check()
    delivered: list[tuple[str, DemoEmail]] = []
    try:
        say("mailparity demo: Microsoft 365 and Gmail fakes on 127.0.0.1, the real pipeline")
        step(f"store: {output_dir / STORE_FILE} (SqliteStore)")
        step(f"provider fakes served at {fake_server.url} (Graph, Entra, Gmail, Google OAuth)")
        step(f"webhook endpoints served at {webhook_server.url}/webhooks/{{microsoft,google}}")

        # The provider keys come from the registry (the fake each provider's testing kit names):
        # the demo, like the core, names no provider key.
        graph_key, gmail_key = _provider_key(graph), _provider_key(gmail)
        connect = WebConnect(
            store,
            redirect_uri=CONNECT_CALLBACK,
            providers={
                graph_key: {
                    "client_id": MICROSOFT_CLIENT[0],
                    "client_secret": MICROSOFT_CLIENT[1],
                    "webhook_notification_url": f"{webhook_server.url}/webhooks/microsoft",
                    **graph.config_overrides(),
                },
                gmail_key: {
                    "client_id": GOOGLE_CLIENT[0],
                    "client_secret": GOOGLE_CLIENT[1],
                    "project_id": "fabrikam-helpdesk",
                    "pubsub_topic_name": "gmail-inbound",
                    **gmail.config_overrides(),
                },
            },
            session=session,
        )
        for label, key, mailbox, provider_id in (
            ("Microsoft", graph_key, MICROSOFT_MAILBOX, MICROSOFT_PROVIDER_ID),
            ("Gmail", gmail_key, GOOGLE_MAILBOX, GOOGLE_PROVIDER_ID),
        ):
            step(f"connecting {label} mailbox {mailbox} through the web connect flow")
            result = _web_connect(
                connect, session, key, mailbox=mailbox, provider_id=provider_id, step=step
            )
            step(f"connected {label} mailbox {mailbox}: {_push_text(store, key, result)}")
            if key == graph_key:
                shown = ", ".join(f"HTTP {status}" for _, status in validations) or "none"
                step(f"  Graph validated our notification and lifecycle URLs over HTTP: {shown}")
                if not validations or any(status != 200 for _, status in validations):
                    check.fail("Graph's validation handshake did not succeed")

        google_url = f"{webhook_server.url}/webhooks/google"
        sent = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
        for index, email in enumerate(DEMO_EMAILS):
            moment = sent + timedelta(minutes=5 * index)
            graph.deliver(MICROSOFT_MAILBOX, email.raw(MICROSOFT_MAILBOX, moment))
            delivered.append((MICROSOFT_PROVIDER_ID, email))
            gmail.deliver(GOOGLE_MAILBOX, email.raw(GOOGLE_MAILBOX, moment))
            delivered.append((GOOGLE_PROVIDER_ID, email))
            # Each notification twice: both providers deliver at least once.
            graph_posts = graph.push(duplicate_rate=1.0, session=session)
            gmail_posts = [
                gmail.push(google_url, GOOGLE_MAILBOX, audience=GOOGLE_AUDIENCE, session=session)
                for _ in range(2)
            ]
            for post in [*graph_posts, *gmail_posts]:
                if verbose:
                    step(f"  POST {post.url} -> {post.status or post.error}")
                if not post.ok:
                    outcome = post.status or post.error
                    check.fail(f"notification POST to {post.url} failed: {outcome}")
        step(
            f"delivered {len(DEMO_EMAILS)} emails to each mailbox; the fakes pushed every"
            " notification twice to our endpoints"
        )

        worker = Worker(store, publisher, threads=4, poll_interval=0.05, session=session)
        ran = worker.run(stop_after=IDLE_POLLS)
        step(f"worker ran {ran} jobs and is idle ({store.count_jobs(status='pending')} pending)")
        if verbose:
            step(f"  Graph fake answered {graph.count()} requests, Gmail fake {gmail.count()}")

        events = [e for e in memory.events if isinstance(e, InboundEmailReceived)]
        order = {email.message_id: index for index, email in enumerate(DEMO_EMAILS)}
        providers = {MICROSOFT_PROVIDER_ID: 0, GOOGLE_PROVIDER_ID: 1}
        events.sort(
            key=lambda e: (
                providers.get(e.provider_id, 2),
                order.get(e.email_data.message_id or "", len(order)),
            )
        )
        others = [e for e in memory.events if not isinstance(e, InboundEmailReceived)]
        for event in others:
            check.fail(f"unexpected {event.event_type} event for {event.provider_id}")
        _verify(events, delivered, check)
        dumped = [e.model_dump(mode="json", by_alias=True) for e in memory.events]
        (output_dir / EVENTS_JSON).write_text(
            json.dumps(dumped, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

        say()
        say(f"{len(events)} INBOUND_EMAIL_RECEIVED events published:")
        say()
        terminal = shutil.get_terminal_size((160, 24)).columns
        for line in _table(events, terminal):
            say(line)
        say()
        step(f"events written to {output_dir / EVENTS_JSON} (and {EVENTS_JSONL}, one per line)")
    except _ConnectFailedError as error:
        check.fail(f"connecting through the web flow failed: {error}")
    finally:
        webhook_server.shutdown()
        fake_server.close()
        store.close()
        session.close()

    if check.problems:
        say(f"FAILED: {len(check.problems)} problem(s):")
        for problem in check.problems:
            say(f"  - {problem}")
        return 1
    say(
        f"OK: each of the {len(delivered)} deliveries produced exactly one complete event,"
        " the same on both providers."
    )
    return 0



if __name__ == "__main__":  # python -m mailparity.demo [--output DIR] [-v]
    from .cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
