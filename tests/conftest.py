"""Shared test fixtures.

The corpus of real emails and API payloads lives beside the repository in ``../shared/corpus`` (it
is not copied into the project); ``MAILPARITY_CORPUS`` points elsewhere. Tests that need it skip
with a clear reason when it is absent, except under ``CI=true``, where a missing corpus fails them:
a CI run that silently skips the real-mail tests would prove nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def corpus_path() -> Path:
    """Where the shared corpus is (it may not exist)."""
    env = os.environ.get("MAILPARITY_CORPUS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "corpus"


def corpus_required() -> bool:
    """Whether a missing corpus is a failure (``CI=true``) rather than a reason to skip."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_corpus() -> Path:
    """The shared corpus folder; skips the calling test when it is absent, fails it under CI."""
    path = corpus_path()
    if not path.is_dir():
        reason = f"shared corpus not found at {path} (set MAILPARITY_CORPUS to its folder)"
        if corpus_required():
            pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
        pytest.skip(reason)
    return path


def corpus_files(folder: str, pattern: str = "*.eml") -> list[str]:
    """File names of a corpus folder, for parametrizing at collection time.

    Without the corpus the list is one placeholder, so the test still runs, reaches
    :func:`require_corpus` (or the ``corpus_dir`` fixture) and skips or, under CI, fails."""
    path = corpus_path() / folder
    names = sorted(item.name for item in path.glob(pattern)) if path.is_dir() else []
    return names or ["<corpus missing>"]


@pytest.fixture
def corpus_dir() -> Path:
    """The shared corpus folder; skips the test when it is absent (fails under ``CI=true``)."""
    return require_corpus()


class FakeClock:
    """A controllable UTC clock with a sleep that advances it instead of waiting."""

    def __init__(self, start: str = "2026-01-01T00:00:00+00:00") -> None:
        from datetime import datetime

        self.now = datetime.fromisoformat(start)
        self.sleeps: list[float] = []

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now

    def sleep(self, seconds: float) -> None:
        from datetime import timedelta

        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock; pass ``clock=clock, sleep=clock.sleep`` to adapters."""
    return FakeClock()


@pytest.fixture
def otel() -> Iterator[Any]:
    """mailparity.telemetry recording into the OpenTelemetry SDK's in-memory exporters and a
    fresh Prometheus registry (a ``telemetry_support.Telemetry``); reset afterwards."""
    from telemetry_support import recording

    yield from recording()


@pytest.fixture(params=["microsoft", "fake"])
def provider_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """A provider kind the provider-generic suites run over: a built-in provider, and the third,
    test-only provider of ``third_provider.py`` (registered for the test's duration)."""
    from third_provider import KEY, registered

    if request.param != KEY:
        yield request.param
        return
    with registered():
        yield request.param
