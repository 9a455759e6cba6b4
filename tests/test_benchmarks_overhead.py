"""The overhead part of the benchmark: every public loss of each adapter timed beside the
framework's own on a tiny input, and its table.

The smoke run runs in this process for every selected backend that has a benchmark
module; nothing is asserted on timings, only that every entry point has its rows, the
pairs computed the same numbers, and the table shows them.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import report, run, summary
from benchmarks.common import LOSSES, overhead_agreement
from tests.backends import selected_backends

# The public losses of each adapter (the brief of the overhead part), by execution mode.
EXPECTED = {
    "torch": {
        ("eager", entry)
        for entry in (
            "lsr.torch.smooth_ce",
            "lsr.torch.cross_entropy",
            "lsr.torch.SmoothCrossEntropyLoss",
            "lsr.torch.smooth_bce",
            "lsr.torch.binary_cross_entropy_with_logits",
            "lsr.torch.SmoothBCEWithLogitsLoss",
            "lsr.torch.linear_smooth_ce",
        )
    },
    "jax": {
        (variant, entry)
        for variant in ("jit", "eager")
        for entry in ("lsr.jax.smooth_ce", "lsr.jax.smooth_bce", "lsr.jax.linear_smooth_ce")
    },
    "tensorflow": {
        (variant, entry)
        for variant in ("eager", "tf.function")
        for entry in (
            "lsr.tensorflow.smooth_ce",
            "lsr.tensorflow.smooth_bce",
            "lsr.tensorflow.linear_smooth_ce",
        )
    }
    # Keras loss objects are called eagerly, as Keras calls them outside fit.
    | {("eager", "lsr.keras.SmoothCrossEntropy"), ("eager", "lsr.keras.SmoothBinaryCrossEntropy")},
}
# Rivals that must be among each backend's rows.
RIVALS = {
    "torch": {
        "F.cross_entropy(label_smoothing=0.1)",
        "nn.CrossEntropyLoss(label_smoothing=0.1)",
        "F.binary_cross_entropy_with_logits(smoothed targets)",
        "F.cross_entropy(F.linear(...), label_smoothing=0.1)",
    },
    "jax": {
        "optax softmax_cross_entropy(smooth_labels(one_hot))",
        "optax sigmoid_binary_cross_entropy(smoothed targets)",
    },
    "tensorflow": {
        "keras CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)(one_hot)",
        "keras SparseCategoricalCrossentropy(from_logits=True)",
        "keras BinaryCrossentropy(from_logits=True, label_smoothing=0.1)",
        "tf.nn.softmax_cross_entropy_with_logits(smoothed one_hot)",
    },
}
BENCHMARKED = [name for name in selected_backends() if name in run.BACKENDS]


def test_the_overhead_part_runs_by_default_and_alone():
    assert "overhead" in run._parse([]).parts.split(",")
    assert run._parse(["--parts", "overhead"]).parts == "overhead"


def test_backends_run_side_by_side_in_a_smoke_run_only(capsys):
    assert run._parse([]).jobs == 1
    assert run._parse(["--size", "smoke", "--jobs", "2"]).jobs == 2
    # Side by side, backends share the CPUs: their timings would not be comparable.
    for argv in (["--jobs", "2"], ["--size", "quick", "--jobs", "2"], ["--jobs", "0"]):
        with pytest.raises(SystemExit):
            run._parse(argv)
        assert "Received: jobs=" in capsys.readouterr().err


# Collected only where a benchmarked framework is selected (no empty parameter set,
# which pytest would report as a skip).
if BENCHMARKED:

    @pytest.mark.parametrize("name", BENCHMARKED)
    def test_the_smoke_run_times_every_entry_point_beside_its_rival(name):
        rows = run._overhead_child(name, "smoke", LOSSES)["overhead"]
        assert {(row["variant"], row["entry"]) for row in rows} == EXPECTED[name]
        assert RIVALS[name] <= {row["rival"] for row in rows}
        pairs = {(row["variant"], row["entry"], row["rival"]) for row in rows}
        # Each pair in both modes, once.
        assert len(rows) == 2 * len(pairs)
        assert {(row["variant"], row["entry"], row["rival"], row["mode"]) for row in rows} == {
            (*pair, mode) for pair in pairs for mode in ("forward", "forward+backward")
        }
        for row in rows:
            assert "error" not in row, row
            assert row["lsr_us"] > 0 and row["rival_us"] > 0
            assert row["ratio"] == pytest.approx(row["lsr_us"] / row["rival_us"])
            assert row["lsr_timing"]["calls"] >= 1 and row["lsr_timing"]["repeats"] >= 3
            agreement = row["agreement"]
            assert agreement["loss_abs_diff"] <= 1e-5
            if row["mode"] == "forward":
                assert agreement["grad_max_abs_diff"] is None
            else:
                assert agreement["grad_max_abs_diff"] <= 1e-5
        results = {"backends": {name: {"overhead": rows}}}
        lines = summary.overhead_table(results).splitlines()
        assert len(lines) == 2 + len(rows)


if "tensorflow" in BENCHMARKED:

    def test_tensorflow_functions_take_every_loss_as_a_plain_function():
        # A tf.function binds each call's arguments against its Python function's
        # signature. lsr's losses reached it as a functools.partial of a function with a
        # dozen keyword parameters, Keras' as plain functions: the loss alone of 8 x 4
        # logits then took 745 against 296 microseconds a call, while lsr's forward +
        # backward (already wrapped) took 323. Every loss is now wrapped alike.
        import inspect

        from benchmarks import tensorflow_backend as backend
        from benchmarks.common import Case

        steps = [
            backend.step(loss, mode, backend.make_inputs(case)).func
            for case in (Case("labels", (8, 4)), Case("multilabel", (8, 4)))
            for loss in backend.losses(case)
            if loss.variant != "eager"
            for mode in ("forward", "forward+backward")
        ]
        steps += [
            backend.overhead_step(fn, pair.args, pair.differentiable, mode, pair.variant).func
            for pair in backend.overhead_pairs()
            if pair.variant == "tf.function"
            for fn in (pair.ours, pair.theirs)
            for mode in ("forward", "forward+backward")
        ]
        assert steps
        for function in steps:
            signature = inspect.signature(function.python_function)
            kinds = {parameter.kind for parameter in signature.parameters.values()}
            assert inspect.Parameter.KEYWORD_ONLY not in kinds, function.python_function


def test_pairs_that_differ_fail_the_check():
    def identity(value):
        return value

    # A loss, then a tuple of gradients (one per differentiated input).
    ours = (np.float32(1.0), (np.array([0.5, -0.5]), np.array([2.0])))
    close = (np.float32(1.0) + 1e-7, (np.array([0.5, -0.5]), np.array([2.0])))
    assert overhead_agreement(ours, close, identity)["grad_max_abs_diff"] == 0.0
    with pytest.raises(AssertionError, match="loss"):
        overhead_agreement(1.0, 1.01, identity)
    with pytest.raises(AssertionError, match="gradient 2"):
        overhead_agreement(ours, (1.0, (np.array([0.5, -0.5]), np.array([2.1]))), identity)


def _row(entry, mode, lsr_us, rival_us, **extra):
    return {
        "entry": entry,
        "rival": "F.cross_entropy(label_smoothing=0.1)",
        "variant": "eager",
        "mode": mode,
        "inputs": "8x4, integer labels",
        "smoothing": 0.1,
        "lsr_us": lsr_us,
        "rival_us": rival_us,
        "ratio": lsr_us / rival_us,
        **extra,
    }


def _results(rows, **backend):
    return {
        "size": "smoke",
        "command": "python -m benchmarks.run --parts overhead",
        "started_utc": "2026-12-03T00:00:00+00:00",
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
            "torch": {
                "versions": {},
                "elapsed_s": 1.0,
                "measurements": [],
                "linear": [],
                "overhead": rows,
                **backend,
            }
        },
    }


def test_the_report_shows_the_overhead_table_and_failed_pairs():
    failed = {**_row("lsr.torch.smooth_bce", "forward", 1, 1), "error": "AssertionError: loss"}
    for key in ("lsr_us", "rival_us", "ratio"):
        del failed[key]
    rows = [
        _row("lsr.torch.smooth_ce", "forward+backward", 30.0, 12.0),
        failed,
        _row("lsr.torch.smooth_ce", "forward", 123456.7, 1234.5),
    ]
    results = _results(rows)
    report.add_ratios(results)
    text = report.section(results)
    assert "### Per-call overhead (tiny input)" in text
    lines = text.splitlines()
    header = lines.index(report.overhead_rows(results)[0])
    ours = lines[header + 2]
    assert ours.startswith("| torch | eager | lsr.torch.smooth_ce | F.cross_entropy(")
    assert ours.endswith("| 0.1 | 8x4, integer labels | forward+backward | 30 | 12 | **2.5** |")
    assert "failed: AssertionError: loss" in lines[header + 3]
    assert lines[header + 3].count("|") == ours.count("|")
    assert lines[header + 4].endswith("| 123457 | 1234 | **100** |")
    # A run that failed to measure the overhead fails, and says so.
    assert run.failures(results) == [
        "torch: overhead lsr.torch.smooth_bce / F.cross_entropy(label_smoothing=0.1) "
        "(eager, forward)"
    ]
    assert run.failures(_results([rows[0], rows[2]])) == []
    crashed = _results([], overhead_error="exit status 1")
    assert run.failures(crashed) == ["torch: overhead (exit status 1)"]
    assert "failed: exit status 1" in report.section(crashed)


def test_files_without_an_overhead_part_have_no_table():
    results = _results([])
    del results["backends"]["torch"]["overhead"]
    assert "Per-call overhead" not in report.section(results)


def test_summary_takes_the_overhead_rows_of_the_later_file(tmp_path):
    import json

    old = _results([_row("lsr.torch.smooth_ce", "forward", 30.0, 10.0)])
    new = _results([_row("lsr.torch.smooth_ce", "forward", 20.0, 10.0)])
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    merged, _ = summary._merge([tmp_path / "old.json", tmp_path / "new.json"])
    assert "| **2** |" in summary.overhead_table(merged)


def test_the_machine_line_names_the_vector_extension_where_recorded():
    """Machines named alike differ in it (and PyTorch's CPU kernels with it); results of
    earlier runs, without the field, read as before."""
    machine = _results([])["machine"]
    assert "cpu (2 usable of 2 CPUs)" in report._machine({"machine": machine})
    with_vector = {"machine": {**machine, "vector_extension": "AVX2"}}
    assert "cpu with AVX2 (2 usable of 2 CPUs)" in report._machine(with_vector)
