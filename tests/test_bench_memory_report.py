"""The long replay's memory lines (`make bench-long`): what they read per day of history and
the slopes they print, on hand-made samples."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def bench():
    """bench/bench_pipeline.py as a module (bench/ is no package)."""
    name = "bench_pipeline_under_test"
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "bench_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_per_day_reads_the_day_from_the_checkpointed_share():
    b = bench()
    # (wall s, MiB, events checkpointed) of a 30-day log of 3,000 events: 100 events a day
    samples = [(0.0, 10.0, 0), (1.0, 30.0, 50), (2.0, 20.0, 99), (3.0, 5.0, 100),
               (4.0, 0.0, 150), (5.0, 7.0, 2999), (6.0, 9.0, 3000)]
    assert b.per_day(samples, 3000, 30) == [(1, 30.0), (2, 5.0), (30, 9.0)]
    assert b.per_day(samples, 3000, 30, pick=min) == [(1, 10.0), (2, 5.0), (30, 7.0)]


def test_slopes_from_the_full_state_and_over_its_second_half():
    b = bench()
    # grows 10 MiB/day to day 15, then 2 MiB/day: a level-off, not a leak
    by_day = [(d, 1000.0 + (10 * d if d <= 15 else 150 + 2 * (d - 15))) for d in range(1, 31)]
    text = b.rss_days_text(by_day)
    assert "day 8 1080 MiB" in text and "day 30 1180 MiB" in text
    assert "(day 8 → 30): 1080 → 1180 MiB, +4.5 MiB/day" in text
    assert text.endswith("day 19 → 30: +2.0 MiB/day")
    arenas = b.mib_days_text("pymalloc arenas (highest)", by_day)
    assert arenas.startswith("pymalloc arenas (highest) by day: day 1 1010 MiB")
    assert arenas.endswith("day 8 → 30: +4.5 MiB/day, day 19 → 30: +2.0 MiB/day")
    # too few days after the state is full: no slope at all, and no second half
    assert "MiB/day" not in b.mib_days_text("x", [(1, 5.0), (6, 9.0)])
    assert b.late_slope_text([(8, 1.0), (10, 2.0)]) == ""


def test_pymalloc_line_has_live_blocks_low_and_high_and_the_arenas():
    b = bench()
    low = [(8, 500.0), (30, 456.0)]
    high = [(8, 580.0), (30, 573.0)]
    arenas = [(8, 673.0), (19, 752.0), (30, 762.0)]
    text = b.pymalloc_days_text((low, high, arenas))
    parts = text.split("; ")
    assert parts[0] == ("pymalloc live blocks (lowest) by day: day 8 500 MiB, day 30 456 MiB")
    assert parts[1] == "day 8 → 30: -2.0 MiB/day"
    assert parts[2].startswith("pymalloc live blocks (highest) by day: day 8 580 MiB")
    assert parts[4] == "pymalloc arenas (highest) by day: day 8 673 MiB, day 19 752 MiB, day 30 762 MiB"
    assert parts[5] == "day 8 → 30: +4.0 MiB/day, day 19 → 30: +0.9 MiB/day"
