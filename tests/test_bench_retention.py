"""A tiny run of the retention benchmark: the store stops growing with retention on and keeps
growing with it off. Counts rows, never time."""

from __future__ import annotations

import itertools
import sys
from datetime import timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_retention  # noqa: E402

from mailparity.maintenance import RetentionPolicy  # noqa: E402

SHORT = RetentionPolicy(dedupe=timedelta(days=4), dead_jobs=timedelta(days=3),
                        message_meta=timedelta(days=4))


def _rows(sample: dict[str, int]) -> int:
    return sum(v for k, v in sample.items() if not k.startswith("bytes_"))


def test_the_store_is_flat_with_retention_and_grows_without(tmp_path: Path) -> None:
    on = bench_retention.simulate(14, 10, retention=SHORT, folder=tmp_path)
    off = bench_retention.simulate(14, 10, retention=None, folder=tmp_path)
    assert len(on) == len(off) == 14
    # Past the longest age (4 days, pruned daily) the store holds a constant window of days (a
    # dead job or a give-up mark more or less at the edges).
    settled = [_rows(sample) for sample in on[4:]]
    assert max(settled) - min(settled) <= 2
    # Without retention it grows by every day's state: two dedupe keys per published message
    # (the id and the Message-ID; none for one given up on), its dead job and give-up mark.
    grown = [_rows(sample) for sample in off]
    assert all(later > earlier for earlier, later in itertools.pairwise(grown))
    assert off[-1]["dedupe"] == 2 * (140 - 140 // bench_retention.POISON_EVERY)
    assert off[-1]["jobs"] == 140 // bench_retention.POISON_EVERY  # dead jobs, kept
    assert on[-1]["jobs"] == 0
    assert _rows(on[-1]) < _rows(off[-1]) / 3


def test_the_report_names_both_sides(tmp_path: Path) -> None:
    text = bench_retention.report(3, 2, every=1)
    assert "| 3 |" in text
    assert "retention on" in text
