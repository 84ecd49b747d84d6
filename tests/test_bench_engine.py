"""`make bench-engine` runs: a small data set through both modes, figures printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_engine_compares_compiled_and_source_on_a_small_data_set():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_engine.py"), "--events",
                          "3000", "--rounds", "1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert "data set: 3,000 records" in out
    rounds = re.findall(r"round 1 (compiled|source) \((\d+) modules compiled\): ([\d.]+) µs/record",
                        out)
    assert [mode for mode, _, _ in rounds] == ["compiled", "source"]
    assert int(rounds[1][1]) == 0 and all(float(us) > 0 for _, _, us in rounds)
    assert re.search(r"means over 1 rounds: compiled [\d.]+ µs/record, source [\d.]+ µs/record; "
                     r"compiled ÷ source time [\d.]+×", out)
