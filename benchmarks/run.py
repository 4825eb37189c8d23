"""Run every mailparity benchmark in one go and rewrite docs/benchmarks.md with the table.

    python benchmarks/run.py [--messages 300] [--repeat 3] [--providers 10000] [--no-docs]

Everything runs against the provider fakes of ``mailparity.testing`` served on 127.0.0.1; each
side of a comparison uses the same server and the same messages. Benchmarks are not tests: goals
are reported (met / MISSED), never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _env  # noqa: E402
import system  # noqa: E402
import throughput  # noqa: E402

DOCS = HERE.parent / "docs" / "benchmarks.md"


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"
        f" ({platform.python_implementation()}), {platform.system()} {platform.release()}"
    )


def _alternate(repeat: int, sides: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Run the sides in turn ``repeat`` times (interleaved, so drift hits every side alike)."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, run in sides.items():
            try:
                results[name].append(run())
            except ImportError as exc:  # an optional peer is not installed
                results[name].append({"rate": None, "error": f"not installed: {exc.name}"})
    return results


def _rate(items: list[dict[str, Any]]) -> float | None:
    rates = [item["rate"] for item in items if item.get("rate")]
    return _env.median(rates) if rates else None


def _fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _goal(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**MISSED**")


def run(args: argparse.Namespace) -> str:
    logging.disable(logging.WARNING)
    started = time.perf_counter()
    raws = _env.realistic_messages(args.messages)
    sdk_raws = raws[: args.sdk_messages]
    served = _env.start_fakes()
    lines: list[str] = []
    try:
        print(f"throughput over {len(raws)} messages, {args.repeat} runs per side ...", flush=True)
        graph = _alternate(args.repeat, {
            "bare": lambda: throughput.graph_bare(served, raws),
            "single": lambda: throughput.graph_mailparity(served, raws, None),
            "pool": lambda: throughput.graph_mailparity(served, raws, args.threads),
            "sdk": lambda: throughput.graph_sdk(served, sdk_raws),
        })
        gmail = _alternate(args.repeat, {
            "bare": lambda: throughput.gmail_bare(served, raws),
            "single": lambda: throughput.gmail_mailparity(served, raws, None),
            "pool": lambda: throughput.gmail_mailparity(served, raws, args.threads),
            "sdk": lambda: throughput.gmail_apiclient(served, raws),
        })
        print("catch-up sync ...", flush=True)
        catchup = throughput.catchup_requests(served, args.catchup, raws)
        print("cold start ...", flush=True)
        cold = system.cold_start(served)
        print("memory ...", flush=True)
        mem = system.memory()
        print("dedupe store scale ...", flush=True)
        dedupe = system.dedupe_scale(served, raws, [1_000, 100_000], repeat=args.repeat)
    finally:
        served.close()
    print(f"renewal sweep over {args.providers} providers ...", flush=True)
    sweep = system.renewal_sweep(args.providers)

    lines.append("| Benchmark | mailparity | baseline / peer | ratio | goal |")
    lines.append("|---|---|---|---|---|")
    for provider, data, peer in (("Graph", graph, "msgraph-sdk"),
                                 ("Gmail", gmail, "google-api-python-client (httplib2)")):
        bare, single, pool, sdk = (_rate(data[k]) for k in ("bare", "single", "pool", "sdk"))
        ratio = single / bare if single and bare else None
        lines.append(
            f"| {provider} msgs/s, single worker vs bare requests | {_fmt(single)} | "
            f"{_fmt(bare)} | {_fmt(ratio, 2)} x | {_goal(None if ratio is None else ratio >= 0.8)}"
            " (>= 0.8 x) |"
        )
        ratio_pool = pool / bare if pool and bare else None
        lines.append(
            f"| {provider} msgs/s, worker pool ({args.threads} threads) vs bare | {_fmt(pool)} | "
            f"{_fmt(bare)} | {_fmt(ratio_pool, 2)} x | info |"
        )
        ratio_sdk = single / sdk if single and sdk else None
        lines.append(
            f"| {provider} msgs/s, single worker vs {peer} | {_fmt(single)} | {_fmt(sdk)} | "
            f"{_fmt(ratio_sdk, 2)} x | {_goal(None if ratio_sdk is None else ratio_sdk > 1)}"
            " (ahead) |"
        )
    graph_rpm = _env.median([r["requests_per_message"] for r in graph["single"]])
    gmail_rpm = _env.median([r["requests_per_message"] for r in gmail["single"]])
    lines.append(f"| Graph HTTP requests per pushed message | {graph_rpm:.2f} | 1 | | "
                 f"{_goal(graph_rpm <= 1.0)} (exactly 1) |")
    lines.append(f"| Gmail HTTP requests per pushed message (bursts of 10, history included) | "
                 f"{gmail_rpm:.2f} | 2 (bare: history per push + get) | | "
                 f"{_goal(gmail_rpm <= 1.1)} (<= 1.1) |")
    for name in ("graph", "gmail"):
        lines.append(f"| {name.capitalize()} catch-up sync of {args.catchup}: requests per message"
                     f" | {catchup[name]:.3f} | 1 (one by one) | | {_goal(catchup[name] < 0.5)}"
                     " (well under 1) |")
    base = cold["python (nothing)"]
    rp = cold["requests + pydantic"]
    mp = cold["mailparity"]
    lines.append(f"| import mailparity (ms, interpreter start subtracted) | "
                 f"{(mp - base) * 1000:.0f} | requests + pydantic: {(rp - base) * 1000:.0f} | | "
                 f"{_goal(mp <= rp + 0.1)} (<= requests + pydantic + 100 ms) |")
    for label in ("msgraph (msgraph-sdk)", "googleapiclient.discovery"):
        value = cold[label]
        shown = "n/a" if value is None else f"{(value - base) * 1000:.0f}"
        lines.append(f"| import {label} (ms) | | {shown} | | info |")
    lines.append(f"| provider libraries loaded by `import mailparity` | "
                 f"{cold['provider libraries loaded by import']} | | | "
                 f"{_goal(cold['provider libraries loaded by import'] == '[]')} (none) |")
    lines.append(f"| first webhook in a fresh process (ms, process start to event) | "
                 f"{cold['first webhook'] * 1000:.0f} | | | info |")
    size_mb = mem["size"] / 2**20
    growth = mem["process_growth"] / 2**20
    lines.append(f"| {size_mb:.0f} MB attachment: peak RSS growth processing it into an event (MB)"
                 f" | {growth:.1f} | limit {3 * size_mb:.0f} | {growth / size_mb:.2f} x size | "
                 f"{_goal(growth < 3 * size_mb)} (< 3 x) |")
    lines.append(f"| {size_mb:.0f} MB attachment: content held in the event | "
                 f"{'yes' if mem['content_in_event'] else 'no'} (event JSON "
                 f"{mem['event_bytes']:,} bytes) | | | {_goal(not mem['content_in_event'])} |")
    dl = mem["download_growth"] / 2**20
    lines.append(f"| get_attachment_content(into=file): peak RSS growth (MB) | {dl:.1f} | "
                 f"{mem['download_written'] / 2**20:.0f} MB written | | "
                 f"{_goal(dl < 3 * size_mb)} (chunks) |")
    for phase in ("create", "renew", "no-op"):
        lines.append(f"| renewal sweep, {args.providers:,} providers in SqliteStore, {phase}: "
                     f"ms and requests per provider | {sweep[f'{phase} s/provider'] * 1000:.2f} ms,"
                     f" {sweep[f'{phase} requests/provider']:.2f} req | | | info |")
    slow = dedupe[1_000] / dedupe[100_000] - 1 if dedupe[100_000] else None
    lines.append(f"| Graph msgs/s, SqliteStore with 100,000 vs 1,000 recorded messages | "
                 f"{dedupe[100_000]:.0f} | {dedupe[1_000]:.0f} | "
                 f"{_fmt(None if slow is None else slow * 100, 1)} % slower | "
                 f"{_goal(None if slow is None else slow <= 0.10)} (<= 10 %) |")
    total = time.perf_counter() - started
    header = (
        f"Machine: {machine()}.\n\nRun: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{len(raws)} messages per throughput side ({len(sdk_raws)} for msgraph-sdk), medians of "
        f"{args.repeat} interleaved runs, {total:.0f} s in all.\n"
    )
    return header + "\n" + "\n".join(lines) + "\n"


DOC_HEAD = """# Benchmarks

`make bench` (or `python benchmarks/run.py`) runs every benchmark below in one go against the
provider fakes of `mailparity.testing`, served on 127.0.0.1 by one threaded server in the same
process (every response in one write, `TCP_NODELAY`). Each side of a comparison fetches the same
messages from the same server; sides run interleaved and the table shows medians. This page is
rewritten by each run.

What each row measures:

- **Throughput**: notifications in, complete events out. mailparity runs the whole pipeline
  (WebhookHandler, durable job in an InMemoryStore, fetch, normalize, dedupe, publish to an
  InMemoryPublisher; marking processed off) either in one thread (`run_pending`) or on the
  Worker's thread pool. The *bare* baseline is a `requests` loop making only the minimum calls
  (Graph: one GET with the same `$select`/`$expand`; Gmail: one `history.list` per push and one
  `messages.get` per message) with no parsing or publishing. Peers fetch the same way with
  `msgraph-sdk` and with `google-api-python-client` on httplib2. Gmail pushes arrive in bursts of
  10 per mailbox over 4 mailboxes; the time the fake spends accepting mail and signing pushes is
  taken out of every side. Each timed side starts right after a full garbage collection: the
  fakes live in the same process, and a collection walking their accumulated mail would
  otherwise land in one side only. Every Graph mailbox belongs to the same app, as in a host.
- **Requests per message** are counted at the fake (a batch is one request; token and
  certificate endpoints are not counted).
- **Cold start** runs fresh interpreters (interpreter start-up subtracted); the first webhook
  is a fresh process importing mailparity, handling one Graph notification and publishing its
  event.
- **Memory** runs in a subprocess that samples its own RSS every millisecond.
- **Scale**: the renewal sweep over Graph providers in a SqliteStore (creating every
  subscription, renewing them two days later, and a sweep with nothing due), and single-worker
  throughput with 1,000 versus 100,000 messages already recorded in the dedupe store (fresh
  store files, interleaved, medians).

Benchmarks are not tests: nothing asserts on time; a missed goal is marked **MISSED**.

## Latest run

"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--sdk-messages", type=int, default=60,
                        help="messages for the (slow) msgraph-sdk side")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--catchup", type=int, default=500)
    parser.add_argument("--providers", type=int, default=10_000)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    table = run(args)
    print()
    print(table)
    if not args.no_docs:
        DOCS.write_text(DOC_HEAD + table, encoding="utf-8")
        print(f"wrote {DOCS.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
