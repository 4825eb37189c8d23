"""Shared test fixtures.

The corpus of real emails and API payloads lives beside the repository in ``../shared/corpus`` (it
is not copied into the project); ``MAILPARITY_CORPUS`` points elsewhere. Tests that need it skip
with a clear reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def corpus_path() -> Path:
    """Where the shared corpus is (it may not exist)."""
    env = os.environ.get("MAILPARITY_CORPUS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture
def corpus_dir() -> Path:
    """The shared corpus folder; skips the test when it is absent."""
    path = corpus_path()
    if not path.is_dir():
        pytest.skip(f"shared corpus not found at {path} (set MAILPARITY_CORPUS to its folder)")
    return path


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
