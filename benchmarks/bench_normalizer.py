"""Normalizer benchmarks: HTML to text, many related parts beside a large HTML body, and the
peak memory of reading a large message, each beside its goal (issue: real-world mail).

    python benchmarks/bench_normalizer.py [--html-mb 21] [--parts 4000] [--message-mb 30]

Self-contained (no provider fake, no network): the inputs are generated here. ``make bench``
(``benchmarks/run.py``) appends :func:`section`. Goals are reported, never asserted: every step
linear in its input, HTML to text at 20 MB/s or more, peak memory under 3x the message size.
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from typing import Any

from mailparity.html import html_to_text
from mailparity.mime import message_from_mime

HTML_GOAL_MB_S = 20.0
MEMORY_GOAL_RATIO = 3.0
#: The related-parts case must cost about what the same bytes cost without the references.
RELATED_GOAL_RATIO = 2.0

_PARAGRAPH = (
    '<div class="msg"><p>Hello <b>team</b>, the <a href="https://example.com/t/{i}">ticket {i}'
    "</a> is &amp; stays open.</p><table><tr><td>Owner</td><td>Ann &lt;ann@example.com&gt;"
    "</td></tr></table><br><span style=\"color:#333\">Thanks &mdash; support</span></div>\n"
)


def _html(size: int) -> str:
    chunks: list[str] = ["<html><head><style>p{margin:0}</style></head><body>"]
    total, index = 0, 0
    while total < size:
        chunk = _PARAGRAPH.format(i=index)
        chunks.append(chunk)
        total += len(chunk)
        index += 1
    chunks.append("</body></html>")
    return "".join(chunks)


def _read(raw: bytes) -> Any:
    return message_from_mime(
        raw,
        id="bench",
        provider="google",
        provider_id="bench",
        tenant="bench",
        mailbox="bench@example.com",
        received_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )


def html_rate(size_mb: float = 21.0) -> dict[str, Any]:
    """HTML to text throughput (MB of HTML per second) on a realistic mail body."""
    html = _html(int(size_mb * 1_000_000))
    started = time.perf_counter()
    text = html_to_text(html)
    seconds = time.perf_counter() - started
    rate = len(html) / 1_000_000 / seconds
    return {"mb": len(html) / 1_000_000, "seconds": seconds, "rate": rate,
            "ok": rate >= HTML_GOAL_MB_S, "chars_out": len(text)}


def _related(parts: int, html_bytes: int, referenced: bool) -> bytes:
    shown = range(parts) if referenced else range(0)
    refs = "".join(f'<img src="cid:img{i}@example.com">' for i in shown)
    html = _html(html_bytes) + refs
    out = [
        b"Subject: related\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/related; boundary="REL"\r\n\r\n'
        b"--REL\r\nContent-Type: text/html; charset=utf-8\r\n\r\n",
        html.encode(),
        b"\r\n",
    ]
    for i in range(parts):
        out.append(
            (f"--REL\r\nContent-Type: image/png\r\nContent-ID: <img{i}@example.com>\r\n"
             "Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n").encode()
        )
    out.append(b"--REL--\r\n")
    return b"".join(out)


def related_parts(parts: int = 4000, html_mb: float = 1.0) -> dict[str, Any]:
    """A multipart/related with ``parts`` images beside ``html_mb`` MB of HTML that shows them
    all, against the same message whose HTML references none (the inline rule's own cost)."""
    shown = _related(parts, int(html_mb * 1_000_000), referenced=True)
    plain = _related(parts, int(html_mb * 1_000_000), referenced=False)
    timings = {}
    for label, raw in (("shown", shown), ("plain", plain)):
        started = time.perf_counter()
        message = _read(raw)
        timings[label] = time.perf_counter() - started
        if label == "shown":
            inline = sum(1 for item in message.attachments if item.is_inline)
    ratio = timings["shown"] / timings["plain"] if timings["plain"] else None
    return {"seconds": timings["shown"], "baseline": timings["plain"], "ratio": ratio,
            "inline": inline, "ok": ratio is not None and ratio <= RELATED_GOAL_RATIO}


def _large_message(size_mb: float) -> bytes:
    """A message of about ``size_mb`` MB: an HTML body, a text body and a base64 PDF."""
    html = _html(int(size_mb * 1_000_000 * 0.25)).encode()
    blob = os.urandom(int(size_mb * 1_000_000 * 0.45))
    return b"".join([
        b"Subject: large\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="MIX"\r\n\r\n'
        b'--MIX\r\nContent-Type: multipart/alternative; boundary="ALT"\r\n\r\n'
        b"--ALT\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        b"plain text version\r\n" * 1000,
        b"--ALT\r\nContent-Type: text/html; charset=utf-8\r\n\r\n", html, b"\r\n--ALT--\r\n",
        b"--MIX\r\nContent-Type: application/pdf; name=big.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n",
        base64.encodebytes(blob), b"--MIX--\r\n",
    ])


def peak_memory(size_mb: float = 30.0) -> dict[str, Any]:
    """Peak memory allocated while reading one ``size_mb`` MB message, over its size."""
    raw = _large_message(size_mb)
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    message = _read(raw)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del message
    ratio = peak / len(raw)
    return {"mb": len(raw) / 1_000_000, "peak_mb": peak / 1_000_000, "ratio": ratio,
            "seconds": seconds, "ok": ratio < MEMORY_GOAL_RATIO}


def _goal(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def table_rows(html_mb: float = 21.0, parts: int = 4000, message_mb: float = 30.0) -> list[str]:
    """The benchmark table rows (Markdown) of the normalizer, each beside its goal."""
    html = html_rate(html_mb)
    related = related_parts(parts)
    memory = peak_memory(message_mb)
    return [
        f"| HTML to text, {html['mb']:.0f} MB of HTML (MB/s) | {html['rate']:.1f} | "
        f"{HTML_GOAL_MB_S:.0f} | | {_goal(html['ok'])} |",
        f"| multipart/related, {parts:,} parts shown by 1 MB of HTML (s) | "
        f"{related['seconds']:.2f} | {related['baseline']:.2f} (nothing shown) | "
        f"{related['ratio']:.2f}x | {_goal(related['ok'])} (linear: <= "
        f"{RELATED_GOAL_RATIO:.0f}x) |",
        f"| reading a {memory['mb']:.0f} MB message: peak memory (MB) | "
        f"{memory['peak_mb']:.0f} | {memory['mb'] * MEMORY_GOAL_RATIO:.0f} (3x the message) | "
        f"{memory['ratio']:.2f}x | {_goal(memory['ok'])} |",
    ]


_HEAD = [
    "| Benchmark (normalizer) | mailparity | goal / baseline | ratio | goal |",
    "|---|---|---|---|---|",
]


def section() -> str:
    """The normalizer's section of ``docs/benchmarks.md`` (markdown)."""
    return "\n".join(["### Normalizer: HTML to text, related parts, memory", "", *_HEAD,
                      *table_rows()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html-mb", type=float, default=21.0)
    parser.add_argument("--parts", type=int, default=4000)
    parser.add_argument("--message-mb", type=float, default=30.0)
    args = parser.parse_args(argv)
    for row in [*_HEAD, *table_rows(args.html_mb, args.parts, args.message_mb)]:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
