"""The OpenTelemetry SDK in-memory exporters and a Prometheus registry, for mailparity.telemetry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from mailparity import telemetry


@dataclass
class Telemetry:
    """What a test reads: metric points (OpenTelemetry), spans, and the Prometheus registry."""

    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter
    registry: CollectorRegistry

    def points(self) -> dict[tuple[str, frozenset[tuple[str, Any]]], Any]:
        """``{(metric name, labels): point}`` of the collected metrics (a counter's point has
        ``.value``, a histogram's ``.count`` and ``.sum``)."""
        found: dict[tuple[str, frozenset[tuple[str, Any]]], Any] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = (metric.name, frozenset(dict(point.attributes or {}).items()))
                        found[key] = point
        return found

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's value (0 when never recorded)."""
        point = self.points().get((name, frozenset(labels.items())))
        return 0.0 if point is None else float(point.value)

    def count(self, name: str, **labels: str) -> int:
        """A histogram's count (0 when never recorded)."""
        point = self.points().get((name, frozenset(labels.items())))
        return 0 if point is None else int(point.count)

    def prometheus(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]


def recording() -> Iterator[Telemetry]:
    """mailparity.telemetry recording into fresh in-memory exporters and a Prometheus registry."""
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.configure(
        meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracer_provider
    )
    registry = telemetry.enable_prometheus(CollectorRegistry())
    try:
        yield Telemetry(reader, exporter, registry)
    finally:
        telemetry.reset()
