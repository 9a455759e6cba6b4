"""benchmarks.compare flags a row whose ratio to its rival grew, and only such rows."""

from __future__ import annotations

from benchmarks.compare import compare


def _run(time_ratio, rss_ratio):
    row = {
        "role": "lsr",
        "method": "lsr.torch.smooth_ce (eager)",
        "case_name": "4096x1000",
        "dtype": "float32",
        "mode": "forward+backward",
        "versus": {"F.cross_entropy (eager)": {"time_ratio": time_ratio, "rss_ratio": rss_ratio}},
    }
    rival = {**row, "role": "rival", "method": "F.cross_entropy (eager)", "versus": {}}
    return {"backends": {"torch": {"measurements": [row, rival]}}}


def test_a_row_that_got_slower_than_its_rival_is_worse():
    lines, worse = compare(_run(0.9, 1.0), _run(1.3, 1.0), tolerance=0.15)
    assert worse == 1 and "time worse" in lines[2]


def test_noise_and_rows_still_faster_than_the_rival_are_not_worse():
    assert compare(_run(0.9, 1.0), _run(1.0, 1.05), tolerance=0.15)[1] == 0
    assert compare(_run(0.5, 0.5), _run(0.8, 0.9), tolerance=0.15)[1] == 0


def test_memory_is_compared_too():
    lines, worse = compare(_run(1.0, 1.0), _run(1.0, 2.0), tolerance=0.15)
    assert worse == 1 and "memory worse" in lines[2]
