"""The benchmark harness' binary (multi-label) rows: cases, selection, bound and report.

No framework is imported: these check the harness' bookkeeping, not timings.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import report, run, summary
from benchmarks.common import LOSSES, SIZES, Case, bound_seconds, cases


@pytest.mark.parametrize("size", SIZES)
def test_every_size_has_binary_cases_after_the_softmax_ones(size):
    softmax, binary = cases(size, ("softmax",)), cases(size, ("binary",))
    assert binary and all(case.kind == "multilabel" and case.loss == "binary" for case in binary)
    assert all(case.loss == "softmax" for case in softmax)
    assert cases(size) == cases(size, LOSSES) == softmax + binary
    # Rows are keyed by case name and dtype: no binary case may share a softmax one's.
    keys = [(case.name, case.dtype) for case in cases(size)]
    assert len(set(keys)) == len(keys)
    # Both dtypes in every run that measures (the smoke run's bfloat16 path is softmax).
    dtypes = {case.dtype for case in (softmax if size == "smoke" else binary)}
    assert {"float32", "bfloat16"} <= dtypes


def test_a_multilabel_case_has_dense_targets_counted_by_the_bound():
    case = Case("multilabel", (4096, 80))
    assert case.name == "4096x80, multi-label"
    assert (case.axis, case.num_classes, case.label_shape) == (1, 80, (4096, 80))
    assert case.input_bytes == 2 * case.logits_bytes == 2 * 4096 * 80 * 4
    bandwidth = {"read_bytes_per_s": 1e9, "copy_read_write_bytes_per_s": 1e9}
    # Read the logits and the targets; also write the gradient.
    assert bound_seconds(case, "forward", bandwidth) == pytest.approx(2 * 4096 * 80 * 4 / 1e9)
    assert bound_seconds(case, "forward+backward", bandwidth) == pytest.approx(
        3 * 4096 * 80 * 4 / 1e9
    )
    softmax = Case("labels", (4096, 80))
    assert bound_seconds(softmax, "forward+backward", bandwidth) == pytest.approx(
        2 * 4096 * 80 * 4 / 1e9
    )


def test_loss_option_selects_the_cases_and_skips_the_linear_part_for_binary():
    assert run._parse([]).loss == "all"
    assert run._parse(["--loss", "binary"]).loss == "binary"
    assert run._losses("binary") == ("binary",)
    assert run._losses("all") == LOSSES
    with pytest.raises(SystemExit):
        run._parse(["--loss", "focal"])


def _row(case: Case, role: str, method: str, **extra):
    # As the parent process reads it: the child's row went through JSON.
    row = {
        "backend": "torch",
        "case": case.to_json(),
        "case_name": case.name,
        "dtype": case.dtype,
        "mode": "forward+backward",
        "method": method,
        "role": role,
        "variant": "eager",
        "compare_to": [],
        **extra,
    }
    return json.loads(json.dumps(row))


def test_memory_is_measured_for_one_case_per_loss_in_a_smoke_run():
    measured = [
        case
        for case in cases("smoke")
        if run._measures_memory("smoke", _row(case, "lsr", "lsr.torch.smooth_bce (eager)"))
    ]
    assert [case.loss for case in measured] == ["softmax", "binary"]
    bound = _row(cases("smoke", ("binary",))[0], "bound", "F.bce eps=0 (eager)")
    assert not run._measures_memory("smoke", bound)
    # One mode each: TensorFlow's graph and XLA rows are not measured in a smoke run.
    graph = _row(cases("smoke")[0], "lsr", "lsr.tensorflow.smooth_ce (graph)", variant="graph")
    assert not run._measures_memory("smoke", graph)
    assert run._measures_memory("quick", {**graph, "case": cases("quick")[0].to_json()})


def test_binary_memory_is_measured_where_an_n_by_k_buffer_shows():
    large = max(cases("full", ("binary",)), key=lambda case: case.logits_bytes)
    small = Case("multilabel", (4096, 80))
    assert run._measures_memory("full", _row(large, "lsr", "lsr"))
    assert run._measures_memory("full", _row(large, "native", "native"))
    assert not run._measures_memory("full", _row(large, "bound", "bound"))
    assert not run._measures_memory("full", _row(small, "lsr", "lsr"))
    forward = {**_row(large, "lsr", "lsr"), "mode": "forward"}
    assert not run._measures_memory("full", forward)


def _results():
    case = Case("multilabel", (8192, 1000))
    lsr = "lsr.torch.smooth_bce (eager)"
    rival = "F.binary_cross_entropy_with_logits(smoothed targets) (eager)"
    timing = {"median_s": 0.1, "min_s": 0.09, "iqr_s": 0.01, "first_call_s": 0.2}
    timing |= {"repeats": 3, "number": 1}
    rows = [
        _row(case, "lsr", lsr, compare_to=[rival], rss_steady_bytes=case.logits_bytes, **timing),
        _row(case, "native", rival, rss_steady_bytes=3 * case.logits_bytes, **timing),
    ]
    return {
        "size": "full",
        "command": "python -m benchmarks.run --loss binary",
        "started_utc": "2026-12-02T00:00:00+00:00",
        "elapsed_s": 1.0,
        "machine": {
            "processor": "cpu",
            "usable_cpus": 2,
            "cpu_count": 2,
            "platform": "linux",
            "python": "3",
        },
        "bandwidth": {
            "method": "numpy",
            "read_bytes_per_s": 1e10,
            "copy_read_write_bytes_per_s": 1e10,
        },
        "settings": {},
        "backends": {
            "torch": {"versions": {}, "elapsed_s": 1.0, "measurements": rows, "linear": []}
        },
    }


def test_report_and_summary_show_the_binary_rows_with_peaks_in_logits_sized_buffers():
    results = _results()
    report.add_ratios(results)
    versus = results["backends"]["torch"]["measurements"][0]["versus"]
    rival = "F.binary_cross_entropy_with_logits(smoothed targets) (eager)"
    assert versus[rival]["rss_ratio"] == pytest.approx(1 / 3)
    text = report.section(results)
    assert "| 1.00 / 3.00 |" in text
    line = next(line for line in text.splitlines() if "| 1.00 / 3.00 |" in line)
    assert line.count("|") == report._versus_table(results, "forward+backward")[0].count("|")
    table = summary.table(results)
    assert "PyTorch eager: F.binary_cross_entropy_with_logits | 8192x1000, multi-label" in table
