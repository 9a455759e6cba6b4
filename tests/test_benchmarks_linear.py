"""The linear + loss part of the benchmark: which methods run, the floor, the table."""

from __future__ import annotations

from benchmarks.common import LinearCase, linear_floor_bytes, linear_methods
from benchmarks.summary import linear_table


def test_rivals_that_make_the_whole_logits_are_left_out_where_they_cannot_fit():
    small, large = LinearCase(1024, 128, 32000), LinearCase(32768, 512, 32000)
    assert linear_methods("torch", small) == (
        "lsr",
        "plain",
        "native_fused",
        "native_fused_smoothing",
    )
    # 32768 x 32000 float32 logits are 4 GiB: only the fused losses run.
    assert linear_methods("torch", large) == ("lsr", "native_fused")
    assert linear_methods("jax", small) == ("lsr", "plain")


def test_the_floor_is_the_gradients_and_one_block_of_logits():
    # 16 Mi logits per block by default: 524 rows of 32000 classes.
    case = LinearCase(4096, 128, 32000)
    assert linear_floor_bytes(case) == 4 * (4096 * 128 + 128 * 32000 + 524 * 32000)
    assert linear_floor_bytes(LinearCase(10, 4, 7, chunk_size=3)) == 4 * (40 + 28 + 21)


def test_the_table_gives_ratios_to_each_rival_and_reads_older_files():
    def row(key, seconds, peak, **extra):
        return {
            "case": {"rows": 8, "width": 2, "classes": 5, "chunk_size": None},
            "method": f"method {key}",
            "median_s": seconds,
            "allocator_peak_bytes": peak,
            "rss_steady_bytes": peak,
            **extra,
        }

    results = {
        "backends": {
            "torch": {
                "linear": [
                    row("lsr", 1.0, 2 << 20, method_key="lsr"),
                    row("native_fused", 4.0, 8 << 20, method_key="native_fused"),
                ]
            },
            # Written before the rivals: a "fused" flag instead of a method key.
            "jax": {
                "linear": [row("lsr", 3.0, 1 << 20, fused=True), row("p", 1.5, 0, fused=False)]
            },
        }
    }
    lines = linear_table(results).splitlines()
    assert "| torch | 8 (2, 5) | method native_fused | 8 (8) |" in lines[3]
    assert lines[3].endswith("| 4 | 0.25 | 0.25 |")
    assert lines[5].startswith("| jax | 8 (2, 5) | method p |")
    assert "| 1.5 | 2.00 |" in lines[5]
