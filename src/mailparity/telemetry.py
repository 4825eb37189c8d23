"""Metrics and traces: OpenTelemetry (optional), and a Prometheus endpoint (optional).

Every measurement of the library goes through the small functions of this module, called at a few
points of the pipeline (push sources, the processor, the HTTP transport, maintenance). Two sinks
can receive them, each optional and each a no-op when absent:

* **OpenTelemetry** (the ``otel`` extra, ``opentelemetry-api``): metrics on the meter
  ``mailparity`` and spans on the tracer ``mailparity``, from the global providers the host set up
  (or those given to :func:`configure`). Without ``opentelemetry`` installed nothing is recorded
  and nothing fails; with only the API installed and no SDK configured, the API's own no-op
  objects take the calls.
* **Prometheus** (the ``prometheus`` extra, ``prometheus-client``): :func:`enable_prometheus`
  creates the same metrics in a ``CollectorRegistry``; ``mailparity serve --metrics`` serves it at
  ``/metrics`` (:func:`prometheus_exposition`).

Gauges (pending and dead jobs, the oldest pending job, subscriptions expiring soon, silent
mailboxes) are computed from the store when they are collected, for the store given to
:func:`observe_store`. :data:`METRICS` lists every metric; ``docs/operations.md`` describes each,
with its labels and a suggested alert.

Traces: a push request is one span (``mailparity.push``); the W3C ``traceparent`` (and
``tracestate``) of that span is stored in the job's payload when the job is enqueued
(:func:`inject`), so the worker that runs the job, in any process, continues the same trace
(``mailparity.job``, then ``mailparity.fetch`` and ``mailparity.publish``). Nothing is injected
when no span is recording, so payloads only change when tracing is on.

Labels are low-cardinality and provider-neutral: ``provider`` is the provider's registry key
(``microsoft``, ``google``, ...), never a mailbox or an id. No label or span attribute carries a
secret.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from . import logs
from .errors import missing_extra
from .models import Job, MailParityEvent, utcnow

if TYPE_CHECKING:
    from .protocols import EventPublisher, StateStore

__all__ = [
    "METRICS",
    "TRACE_FIELDS",
    "MetricSpec",
    "PushRecorder",
    "auth_failure",
    "configure",
    "duplicate",
    "enable_prometheus",
    "fetching",
    "fetching_batch",
    "inject",
    "job_retried",
    "job_span",
    "observe_store",
    "otel_available",
    "prometheus_exposition",
    "prometheus_registry",
    "publish",
    "push",
    "push_rejected",
    "reset",
    "store_gauges",
    "subscription_lost",
    "throttle_wait",
]

log = logging.getLogger("mailparity.telemetry")

try:  # the optional ``otel`` extra
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry import trace as _otel_trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _PROPAGATOR: Any = TraceContextTextMapPropagator()
except ImportError:  # pragma: no cover - exercised in a subprocess without the package
    _otel_metrics = None  # type: ignore[assignment]
    _otel_trace = None  # type: ignore[assignment]
    _PROPAGATOR = None

#: The job payload fields that carry the trace context (W3C Trace Context header names).
TRACE_FIELDS = ("traceparent", "tracestate")

_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LATENCY_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its OpenTelemetry name (dotted), kind, unit, meaning and label names.

    ``prometheus_name`` is the dotted name with underscores (``prometheus-client`` adds
    ``_total`` to counters and ``_bucket`` / ``_count`` / ``_sum`` to histograms)."""

    name: str
    kind: Literal["counter", "histogram", "gauge"]
    unit: str
    description: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def prometheus_name(self) -> str:
        base = self.name.replace(".", "_")
        return f"{base}_seconds" if self.unit == "s" and not base.endswith("_seconds") else base


#: Every metric the library records.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("mailparity.pushes.received", "counter", "1",
               "Push requests received (each Graph POST, each Pub/Sub push)", ("provider",)),
    MetricSpec("mailparity.pushes.rejected", "counter", "1",
               "Push requests refused, and notification items ignored, by reason",
               ("provider", "reason")),
    MetricSpec("mailparity.events.published", "counter", "1",
               "Events accepted by the host's publisher", ("provider", "event_type")),
    MetricSpec("mailparity.messages.duplicates", "counter", "1",
               "Messages not published again: already published (same id or Message-ID)",
               ("provider",)),
    MetricSpec("mailparity.jobs.retried", "counter", "1",
               "Jobs put back to run again later", ("kind",)),
    MetricSpec("mailparity.throttle.waits", "counter", "1",
               "Waits a provider asked for (429 / Retry-After): within a request, or a job"
               " rescheduled", ("provider", "scope")),
    MetricSpec("mailparity.auth.failures", "counter", "1",
               "Terminal authentication failures (the mailbox needs consent)", ("provider",)),
    MetricSpec("mailparity.subscriptions.lost", "counter", "1",
               "Subscriptions or watches that could not be recreated", ("provider",)),
    MetricSpec("mailparity.fetch.duration", "histogram", "s",
               "Time to fetch one message's details from the provider", ("provider", "outcome"),
               _SECONDS_BUCKETS),
    MetricSpec("mailparity.push_to_event.duration", "histogram", "s",
               "From the job's creation (the push, for pushed mail) to its event published",
               ("provider",), _LATENCY_BUCKETS),
    MetricSpec("mailparity.jobs.pending", "gauge", "1", "Jobs waiting to run (pending)"),
    MetricSpec("mailparity.jobs.running", "gauge", "1", "Jobs claimed by a worker (running)"),
    MetricSpec("mailparity.jobs.dead", "gauge", "1", "Jobs given up on (dead, kept for replay)"),
    MetricSpec("mailparity.jobs.oldest_pending_age", "gauge", "s",
               "Age of the oldest pending job (0 when none)"),
    MetricSpec("mailparity.subscriptions.expiring", "gauge", "1",
               "Active subscriptions / watches expiring within 24 hours (or expired)",
               ("provider",)),
    MetricSpec("mailparity.mailboxes.silent", "gauge", "1",
               "Active mailboxes with no push and no catch-up for longer than the silence"
               " threshold", ("provider",)),
)

_BY_NAME = {spec.name: spec for spec in METRICS}


# --------------------------------------------------------------------------------------------
# State: the sinks and the observed store


@dataclass
class _Observed:
    store: StateStore
    clock: Callable[[], datetime]
    silence_after: timedelta
    expiring_within: timedelta
    scan_limit: int


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    meter_provider: Any = None
    tracer_provider: Any = None
    otel: dict[str, Any] | None = None  # instrument by metric name, created on first use
    tracer: Any = None
    prometheus: dict[str, Any] | None = None
    prometheus_registry: Any = None
    prometheus_collector: Any = None
    observed: _Observed | None = None


_state = _State()


def otel_available() -> bool:
    """Whether ``opentelemetry-api`` is importable (the ``otel`` extra)."""
    return _otel_metrics is not None


def configure(*, meter_provider: Any = None, tracer_provider: Any = None) -> None:
    """Use these OpenTelemetry providers instead of the global ones (tests, or a host that keeps
    its providers out of the globals). None means the global provider (the default).

    Raises:
        MissingExtraError: a provider is given but ``opentelemetry-api`` is not installed.
    """
    if (meter_provider is not None or tracer_provider is not None) and not otel_available():
        raise missing_extra("otel", "OpenTelemetry metrics and traces")
    with _state.lock:
        _state.meter_provider = meter_provider
        _state.tracer_provider = tracer_provider
        _state.otel = None
        _state.tracer = None
        observed = _state.observed
    if observed is not None:
        _otel_instruments()  # the gauges of the observed store, on the new meter


def reset() -> None:
    """Back to the defaults: global OpenTelemetry providers, no Prometheus registry, no observed
    store (for tests)."""
    configure()
    _drop_prometheus()
    with _state.lock:
        _state.observed = None


def _drop_prometheus() -> None:
    with _state.lock:
        registry, created = _state.prometheus_registry, _state.prometheus
        collector = _state.prometheus_collector
        _state.prometheus = None
        _state.prometheus_registry = None
        _state.prometheus_collector = None
    if registry is None:
        return
    for metric in [*(created or {}).values(), collector]:
        with contextlib.suppress(Exception):  # already unregistered by the host
            registry.unregister(metric)


def observe_store(
    store: StateStore | None,
    *,
    clock: Callable[[], datetime] = utcnow,
    silence_after: timedelta = timedelta(hours=6),
    expiring_within: timedelta = timedelta(hours=24),
    scan_limit: int = 1000,
) -> None:
    """Compute the gauges from ``store`` whenever metrics are collected (None stops it).

    ``silence_after`` should be the maintenance sweep's; ``scan_limit`` bounds how many pending
    jobs are read to find the oldest one."""
    with _state.lock:
        _state.observed = None if store is None else _Observed(
            store, clock, silence_after, expiring_within, scan_limit
        )
    # The observable gauges exist once the instruments do (their callbacks read ``observed``).
    _otel_instruments()


# --------------------------------------------------------------------------------------------
# OpenTelemetry instruments


def _otel_instruments() -> dict[str, Any] | None:
    if _otel_metrics is None:
        return None
    instruments = _state.otel
    if instruments is not None:
        return instruments
    with _state.lock:
        if _state.otel is None:
            provider = _state.meter_provider
            meter = (
                provider.get_meter("mailparity")
                if provider is not None
                else _otel_metrics.get_meter("mailparity")
            )
            created: dict[str, Any] = {}
            for spec in METRICS:
                if spec.kind == "counter":
                    created[spec.name] = meter.create_counter(
                        spec.name, unit=spec.unit, description=spec.description
                    )
                elif spec.kind == "histogram":
                    created[spec.name] = meter.create_histogram(
                        spec.name, unit=spec.unit, description=spec.description,
                        explicit_bucket_boundaries_advisory=list(spec.buckets) or None,
                    )
                else:
                    created[spec.name] = meter.create_observable_gauge(
                        spec.name, callbacks=[_otel_gauge_callback(spec.name)], unit=spec.unit,
                        description=spec.description,
                    )
            _state.otel = created
        return _state.otel


def _otel_gauge_callback(name: str) -> Callable[[Any], list[Any]]:
    def callback(_options: Any) -> list[Any]:
        assert _otel_metrics is not None
        return [
            _otel_metrics.Observation(value, dict(labels))
            for metric, labels, value in _gauge_values()
            if metric == name
        ]

    return callback


def _tracer() -> Any:
    if _otel_trace is None:
        return None
    tracer = _state.tracer
    if tracer is None:
        provider = _state.tracer_provider
        tracer = (
            provider.get_tracer("mailparity")
            if provider is not None
            else _otel_trace.get_tracer("mailparity")
        )
        _state.tracer = tracer
    return tracer


# --------------------------------------------------------------------------------------------
# Prometheus


def enable_prometheus(registry: Any = None) -> Any:
    """Record every metric in a ``prometheus_client`` registry too; return the registry.

    ``registry``: a ``CollectorRegistry`` (a new one when None). Enabling again replaces the
    previous registry's metrics.

    Raises:
        MissingExtraError: ``prometheus-client`` is not installed (the ``prometheus`` extra).
    """
    try:
        import prometheus_client
    except ImportError as exc:
        raise missing_extra("prometheus", "the Prometheus endpoint") from exc
    _drop_prometheus()
    registry = registry if registry is not None else prometheus_client.CollectorRegistry()
    created: dict[str, Any] = {}
    for spec in METRICS:
        if spec.kind == "counter":
            created[spec.name] = prometheus_client.Counter(
                spec.prometheus_name, spec.description, spec.labels, registry=registry
            )
        elif spec.kind == "histogram":
            created[spec.name] = prometheus_client.Histogram(
                spec.prometheus_name, spec.description, spec.labels, registry=registry,
                buckets=spec.buckets,
            )
    collector = _GaugeCollector()
    registry.register(collector)
    with _state.lock:
        _state.prometheus = created
        _state.prometheus_registry = registry
        _state.prometheus_collector = collector
    return registry


class _GaugeCollector:
    """Yields the store gauges at scrape time (a ``prometheus_client`` custom collector)."""

    def describe(self) -> list[Any]:
        # Without describe(), registering would call collect() (and read the store) at once.
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        values = _gauge_values()
        for spec in METRICS:
            if spec.kind != "gauge":
                continue
            family = GaugeMetricFamily(spec.prometheus_name, spec.description,
                                       labels=list(spec.labels))
            for name, labels, value in values:
                if name == spec.name:
                    family.add_metric([labels.get(label, "") for label in spec.labels], value)
            yield family


def prometheus_registry() -> Any:
    """The registry :func:`enable_prometheus` records into (None when not enabled)."""
    return _state.prometheus_registry


def prometheus_exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of the enabled registry, and its content type.

    Raises:
        RuntimeError: :func:`enable_prometheus` was not called.
    """
    registry = _state.prometheus_registry
    if registry is None:
        raise RuntimeError("Prometheus metrics are not enabled (telemetry.enable_prometheus())")
    import prometheus_client

    return prometheus_client.generate_latest(registry), str(prometheus_client.CONTENT_TYPE_LATEST)


# --------------------------------------------------------------------------------------------
# Recording


def _record(name: str, value: float, labels: Mapping[str, str]) -> None:
    spec = _BY_NAME[name]
    try:
        instruments = _otel_instruments()
        if instruments is not None:
            instrument = instruments[name]
            if spec.kind == "counter":
                instrument.add(value, dict(labels))
            else:
                instrument.record(value, dict(labels))
        prometheus = _state.prometheus
        if prometheus is not None:
            metric = prometheus[name]
            bound = metric.labels(**{label: labels.get(label, "") for label in spec.labels})
            if spec.kind == "counter":
                bound.inc(value)
            else:
                bound.observe(value)
    except Exception:  # measuring must never break the pipeline
        log.debug("recording metric %s failed", name, exc_info=True)


def _label(value: str | None) -> str:
    return (value or "unknown")[:64]


def _reason(text: str) -> str:
    """A label value from a reason phrase: lower case, words joined by underscores."""
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    return "_".join(words)[:64] or "unknown"


def push_rejected(provider: str, reason: str, count: int = 1) -> None:
    """``count`` push requests (or notification items) of ``provider`` refused or ignored."""
    if count > 0:
        _record("mailparity.pushes.rejected", count,
                {"provider": _label(provider), "reason": _reason(reason)})


def duplicate(provider: str) -> None:
    """A message was not published again (already published)."""
    _record("mailparity.messages.duplicates", 1, {"provider": _label(provider)})


def job_retried(kind: str) -> None:
    """A job was put back to run later."""
    _record("mailparity.jobs.retried", 1, {"kind": _label(kind)})


def throttle_wait(provider: str | None, scope: Literal["request", "job"]) -> None:
    """The provider asked to wait: ``request`` (the transport waits, then retries) or ``job``
    (the job is due again after the wait)."""
    _record("mailparity.throttle.waits", 1, {"provider": _label(provider), "scope": scope})


def auth_failure(provider: str) -> None:
    """A terminal authentication failure (the mailbox needs consent)."""
    _record("mailparity.auth.failures", 1, {"provider": _label(provider)})


def subscription_lost(provider: str) -> None:
    """A subscription or watch could not be recreated."""
    _record("mailparity.subscriptions.lost", 1, {"provider": _label(provider)})


# --------------------------------------------------------------------------------------------
# Pushes


_STATUS_REASONS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    500: "internal_error",
    503: "store_unavailable",
}


class PushRecorder:
    """What :func:`push` yields: call :meth:`answered` with the response status."""

    def __init__(self, provider: str, span: Any) -> None:
        self.provider = provider
        self.span = span

    def answered(self, status: int) -> None:
        """Record the answer: a status of 400 and above counts as a rejection (by status)."""
        if self.span is not None:
            self.span.set_attribute("http.response.status_code", status)
        if status >= 400:
            push_rejected(self.provider, _STATUS_REASONS.get(status, f"status_{status}"))


@contextlib.contextmanager
def push(provider: str) -> Iterator[PushRecorder]:
    """Count one push request of ``provider`` and trace it (span ``mailparity.push``); jobs
    enqueued inside carry this span's context (:func:`inject`)."""
    _record("mailparity.pushes.received", 1, {"provider": _label(provider)})
    with _span("mailparity.push", {"mailparity.provider": provider}, kind="SERVER") as span:
        yield PushRecorder(provider, span)


# --------------------------------------------------------------------------------------------
# Trace context in jobs


def inject(payload: MutableMapping[str, Any]) -> None:
    """Store the current span's W3C trace context in a job payload (``traceparent``, and
    ``tracestate`` when there is one). Nothing when no span is recording or OpenTelemetry is
    absent; an existing ``traceparent`` is kept (a job keeps the trace it started in)."""
    if _PROPAGATOR is None or "traceparent" in payload:
        return
    assert _otel_trace is not None
    if not _otel_trace.get_current_span().get_span_context().is_valid:
        return
    carrier: dict[str, str] = {}
    try:
        _PROPAGATOR.inject(carrier)
    except Exception:
        log.debug("injecting the trace context failed", exc_info=True)
        return
    for name in TRACE_FIELDS:
        if carrier.get(name):
            payload[name] = carrier[name]


def _extract(payload: Mapping[str, Any]) -> Any:
    if _PROPAGATOR is None:
        return None
    carrier = {
        name: payload[name] for name in TRACE_FIELDS if isinstance(payload.get(name), str)
    }
    if not carrier:
        return None
    try:
        return _PROPAGATOR.extract(carrier)
    except Exception:  # a malformed stored value starts a new trace
        return None


#: The job running in this thread or task (for the push-to-event latency of its events).
_current_job_var: contextvars.ContextVar[Job | None] = contextvars.ContextVar(
    "mailparity_current_job", default=None
)


@contextlib.contextmanager
def job_span(job: Job) -> Iterator[None]:
    """Run one job inside span ``mailparity.job``, child of the trace stored in its payload
    (a new trace when there is none), with the job's ids as log fields."""
    token = _current_job_var.set(job)
    try:
        with logs.bind(job_id=job.id, provider_id=job.provider_id), _span(
            "mailparity.job",
            {
                "mailparity.job.id": job.id,
                "mailparity.job.kind": job.kind,
                "mailparity.job.attempts": job.attempts,
                "mailparity.provider_id": job.provider_id,
            },
            kind="CONSUMER",
            parent=job.payload,
        ):
            yield
    finally:
        _current_job_var.reset(token)


@contextlib.contextmanager
def fetching(provider: str, message_id: str) -> Iterator[None]:
    """Time and trace one message fetch (span ``mailparity.fetch``, histogram
    ``mailparity.fetch.duration`` with ``outcome`` ok / error)."""
    started = time.perf_counter()
    outcome = "error"
    try:
        with logs.bind(message_id=message_id), _span("mailparity.fetch", {
            "mailparity.provider": provider, "mailparity.message_id": message_id,
        }):
            yield
        outcome = "ok"
    finally:
        _record("mailparity.fetch.duration", time.perf_counter() - started,
                {"provider": _label(provider), "outcome": outcome})


@contextlib.contextmanager
def fetching_batch(provider: str, count: int) -> Iterator[None]:
    """Trace one batched fetch of ``count`` messages (span ``mailparity.fetch`` with
    ``mailparity.batch_size``; not in the per-message histogram)."""
    with _span("mailparity.fetch", {
        "mailparity.provider": provider, "mailparity.batch_size": count,
    }):
        yield


@contextlib.contextmanager
def _span(
    name: str,
    attributes: Mapping[str, Any],
    kind: str = "INTERNAL",
    parent: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """A current span (None without OpenTelemetry). ``parent``: a job payload whose stored
    trace context the span continues. An exception marks the span as failed with its type only:
    a foreign exception's text may quote a request and its token."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    assert _otel_trace is not None
    with tracer.start_as_current_span(
        name,
        context=None if parent is None else _extract(parent),
        kind=getattr(_otel_trace.SpanKind, kind),
        attributes=dict(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(_otel_trace.Status(_otel_trace.StatusCode.ERROR, type(exc).__name__))
            raise


def publish(publisher: EventPublisher, event: MailParityEvent, provider: str) -> None:
    """Publish ``event`` through ``publisher`` in span ``mailparity.publish``; once accepted,
    count it and, for a new-mail event published by a job, record the push-to-event latency.
    Whatever the publisher raises is raised unchanged."""
    with _span("mailparity.publish", {
        "mailparity.provider": provider,
        "mailparity.event_type": event.event_type,
        "mailparity.event_id": event.event_id,
    }, kind="PRODUCER"):
        publisher.publish(event)
    _record("mailparity.events.published", 1,
            {"provider": _label(provider), "event_type": event.event_type})
    job = _current_job_var.get()
    if job is not None and event.event_type == "INBOUND_EMAIL_RECEIVED":
        seconds = (event.occurred_at - job.created_at).total_seconds()
        _record("mailparity.push_to_event.duration", max(seconds, 0.0),
                {"provider": _label(provider)})


# --------------------------------------------------------------------------------------------
# Gauges from the store


def store_gauges(
    store: StateStore,
    now: datetime,
    *,
    silence_after: timedelta = timedelta(hours=6),
    expiring_within: timedelta = timedelta(hours=24),
    scan_limit: int = 1000,
) -> list[tuple[str, dict[str, str], float]]:
    """The gauge values of ``store`` at ``now``: ``(metric name, labels, value)`` each.

    Every provider key seen in the store gets a value (0 included), so an alert on a labelled
    gauge sees the series before it first fires."""
    from .maintenance import _aware, last_heard
    from .providers import spec_for

    summary = store.jobs_summary()
    pending = store.list_jobs(status="pending", limit=scan_limit) if summary.get("pending") else []
    oldest = max(((now - job.created_at).total_seconds() for job in pending), default=0.0)
    values: list[tuple[str, dict[str, str], float]] = [
        ("mailparity.jobs.pending", {}, float(summary.get("pending", 0))),
        ("mailparity.jobs.running", {}, float(summary.get("running", 0))),
        ("mailparity.jobs.dead", {}, float(summary.get("dead", 0))),
        ("mailparity.jobs.oldest_pending_age", {}, max(oldest, 0.0)),
    ]
    expiring: dict[str, int] = {}
    silent: dict[str, int] = {}
    for config in store.list_providers():
        key = config.provider
        expiring.setdefault(key, 0)
        silent.setdefault(key, 0)
        if not config.active or config.needs_consent:
            continue
        rule = spec_for(config).renewal
        if rule is not None:
            _sub_id, expires = rule.state(config)
            if expires is not None and _aware(expires) - now <= expiring_within:
                expiring[key] += 1
        heard = last_heard(store, config.provider_id)
        if heard is None or now - heard > silence_after:
            silent[key] += 1
    values += [("mailparity.subscriptions.expiring", {"provider": k}, float(v))
               for k, v in sorted(expiring.items())]
    values += [("mailparity.mailboxes.silent", {"provider": k}, float(v))
               for k, v in sorted(silent.items())]
    return values


def _gauge_values() -> list[tuple[str, dict[str, str], float]]:
    observed = _state.observed
    if observed is None:
        return []
    try:
        return store_gauges(
            observed.store, observed.clock(), silence_after=observed.silence_after,
            expiring_within=observed.expiring_within, scan_limit=observed.scan_limit,
        )
    except Exception:  # a store outage must not break a scrape: the gauges are left out
        log.warning("computing the store gauges failed", exc_info=True)
        return []

