"""The worker process of ``test_telemetry_worker_process.py``: runs the stored jobs with the
OpenTelemetry SDK and a Prometheus registry, and writes what it recorded to files.

    python telemetry_worker.py STATE_DB OUT_DIR NOW_ISO

A real, separate process on the parent's SqliteStore file (the Gmail fake is served over HTTP on
127.0.0.1; its URLs are in the stored config). Spans go to ``OUT_DIR/spans.jsonl`` as they end
(name, trace id, span id, parent span id, attributes), metric points to ``OUT_DIR/metrics.json``
and the Prometheus exposition to ``OUT_DIR/prometheus.txt``. Its clock is a fake one starting at
the parent's time, so nothing waits for real.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: make the test helpers importable
    sys.path.insert(0, str(HERE))

import requests  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from mailparity import telemetry  # noqa: E402
from mailparity.processing import Processor  # noqa: E402
from mailparity.publishers import JsonlFilePublisher  # noqa: E402
from mailparity.stores.sqlite import SqliteStore  # noqa: E402


class FileSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line (what the parent joins with its own)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a", encoding="utf-8") as out:
            for span in spans:
                out.write(json.dumps({
                    "name": span.name,
                    "trace_id": f"{span.context.trace_id:032x}",
                    "span_id": f"{span.context.span_id:016x}",
                    "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
                    "attributes": dict(span.attributes or {}),
                }) + "\n")
        return SpanExportResult.SUCCESS


class _Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _points(reader: InMemoryMetricReader) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    found.append({
                        "name": metric.name,
                        "labels": dict(point.attributes or {}),
                        "value": getattr(point, "value", None),
                        "count": getattr(point, "count", None),
                    })
    return found


def main(argv: list[str]) -> int:
    db_path, out_dir, now_iso = argv
    out = Path(out_dir)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(out / "spans.jsonl")))
    reader = InMemoryMetricReader()
    telemetry.configure(meter_provider=MeterProvider(metric_readers=[reader]),
                        tracer_provider=tracer_provider)
    registry = telemetry.enable_prometheus(CollectorRegistry())
    clock = _Clock(datetime.fromisoformat(now_iso))
    session = requests.Session()
    session.trust_env = False  # loopback only
    store = SqliteStore(db_path)
    processor = Processor(store, JsonlFilePublisher(out / "events.jsonl"), session=session,
                          clock=clock, sleep=clock.sleep, worker_id="telemetry-worker")
    ran = processor.run_pending()
    tracer_provider.shutdown()
    (out / "metrics.json").write_text(json.dumps(_points(reader)), encoding="utf-8")
    (out / "prometheus.txt").write_bytes(generate_latest(registry))
    store.close()
    sys.stdout.write(f"ran {ran}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
