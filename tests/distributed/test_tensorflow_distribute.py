"""lsr.tensorflow and lsr.keras under tf.distribute.MirroredStrategy with 2 logical CPUs.

TensorFlow must be told about the logical devices before it initializes, so everything
TensorFlow runs in one subprocess (tests/distributed/_tf_worker.py), which saves each
case's loss and gradients under the strategy and on a single device. Here: the
distributed results must equal the single-device ones, and the single-device ones the
float64 reference (tests/reference.py) on the same weights and batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import reference
from tests.backends import assert_close
from tests.distributed import _tf_worker as worker

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out_file = tmp_path_factory.mktemp("tf") / "results.npy"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [sys.executable, "-m", "tests.distributed._tf_worker", str(out_file)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return np.load(out_file, allow_pickle=True).item()


def _reference(case, options):
    """Float64 loss and (kernel, bias) gradients of the dense layer on the whole batch."""
    features = case["features"]

    def loss_of(logits):
        return reference.smooth_ce(
            logits, case["labels"], ignore_index=worker.IGNORE, reduction="mean", **options
        )

    logits = features @ case["kernel"] + case["bias"]
    logits_grad = reference.numerical_gradient(loss_of, logits)
    return loss_of(logits), [features.T @ logits_grad, logits_grad.sum(axis=0)]


def _assert_same(actual, expected, dtype):
    loss, grads = actual
    expected_loss, expected_grads = expected
    assert_close(loss, expected_loss, dtype, scale=2.0)
    assert len(grads) == len(expected_grads) == 2
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert_close(grad, expected_grad, dtype, scale=2.0)


_CTL_OPTIONS = {"smoothing": 0.1, "prior": "others"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ignore", [False, True], ids=["all-kept", "uneven-ignore"])
def test_single_device_matches_reference(results, ignore, dtype):
    case = worker.problem(seed=int(ignore), ignore=ignore)
    expected_loss, expected_grads = _reference(case, _CTL_OPTIONS)
    loss, grads = results[("single", ignore, dtype)]
    assert_close(loss, expected_loss, dtype, scale=2.0)
    # The reference gradient is a central difference: accurate to ~1e-9, not to float64.
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert_close(grad, expected_grad, "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ignore", [False, True], ids=["all-kept", "uneven-ignore"])
def test_custom_loop_with_global_count_matches_single_device(results, ignore, dtype):
    """Per-replica sums over the all-reduced count of kept positions: exact."""
    _assert_same(
        results[("global-count", ignore, dtype)], results[("single", ignore, dtype)], dtype
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_custom_loop_with_compute_average_loss_matches_single_device(results, dtype):
    """TensorFlow's own recipe, exact when no position is ignored."""
    _assert_same(results[("average", False, dtype)], results[("single", False, dtype)], dtype)


@pytest.mark.parametrize("recipe", ["average", "mean-of-means"])
def test_per_replica_means_are_not_the_batch_mean_with_ignored_positions(results, recipe):
    """Dividing by the global batch size, or averaging replica means, fails the comparison."""
    loss, _ = results[(recipe, True, "float64")]
    expected_loss, _ = results[("single", True, "float64")]
    with pytest.raises(AssertionError):
        assert_close(loss, expected_loss, "float32", scale=2.0)


@pytest.mark.parametrize("name", ["keras-uniform", "keras-others", "keras-ignore-class"])
def test_keras_fit_under_mirrored_strategy_matches_single_device(results, name):
    """One SGD step of model.fit: the same reported loss and the same weight update."""
    _assert_same(results[(name, "mirrored")], results[(name, "single")], "float32")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("keras-uniform", {"smoothing": 0.1, "prior": "uniform"}),
        ("keras-others", {"smoothing": 0.2, "prior": "others"}),
        ("keras-ignore-class", {"smoothing": 0.1, "prior": "uniform"}),
    ],
)
def test_keras_fit_matches_reference(results, name, options):
    ignore = name == "keras-ignore-class"
    case = worker.problem(seed=10 + int(ignore), ignore=ignore)
    loss, updates = results[(name, "mirrored")]
    expected_loss, expected_grads = _reference(case, options)
    assert_close(loss, expected_loss, "float32", scale=2.0)
    for update, expected_grad in zip(updates, expected_grads, strict=True):
        assert_close(update, expected_grad, "float32", scale=2.0)


def test_keras_own_ignore_class_loss_is_not_the_batch_mean_under_mirrored_strategy(results):
    """Why lsr's exactness matters: Keras's own loss with ignore_class (no smoothing) gives a
    different step under the strategy, because it averages the replicas' own means."""
    case = worker.problem(seed=11, ignore=True)
    expected = _reference(case, {"smoothing": 0.0, "prior": "uniform"})
    _assert_same(results[("keras-builtin-ignore-class", "single")], expected, "float32")
    with pytest.raises(AssertionError):
        _assert_same(results[("keras-builtin-ignore-class", "mirrored")], expected, "float32")
