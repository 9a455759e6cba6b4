"""Bad input: a clear error naming the argument, the expectation and what was received."""

from __future__ import annotations

import numpy as np
import pytest

import lsr

K = 4


@pytest.fixture
def case(backend):
    logits = backend.asarray(np.zeros((3, K)))
    labels = backend.asarray(np.array([0, 1, 3]))
    return backend, logits, labels


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        (
            {"smoothing": 1.5},
            ValueError,
            r"`smoothing` must be in \[0, 1\].*Received: smoothing=1.5",
        ),
        ({"smoothing": -0.1}, ValueError, r"Received: smoothing=-0.1"),
        ({"smoothing": "0.1"}, TypeError, r"`smoothing`.*Received: smoothing='0.1'"),
        ({"smoothing": True}, TypeError, r"not a bool.*Received: smoothing=True"),
        ({"prior": "gaussian"}, ValueError, r"`prior` must be one of.*Received: prior='gaussian'"),
        (
            {"reduction": "avg"},
            ValueError,
            r"`reduction` must be one of.*Received: reduction='avg'",
        ),
        ({"axis": 2}, ValueError, r"`axis` is out of range.*Received: axis=2"),
        ({"z_loss": -1.0}, ValueError, r"`z_loss`.*Received: z_loss=-1.0"),
        ({"ignore_index": 1.5}, TypeError, r"`ignore_index`.*Received: ignore_index=1.5"),
    ],
)
def test_bad_options(case, options, error, pattern):
    _, logits, labels = case
    with pytest.raises(error, match=pattern):
        lsr.smooth_ce(logits, labels, **options)


def test_labels_out_of_range(case):
    backend, logits, _ = case
    with pytest.raises(
        ValueError, match=r"integers in \[0, 4\).*Received: labels with min=4, max=7"
    ):
        lsr.smooth_ce(logits, backend.asarray(np.array([0, 4, 7])))
    with pytest.raises(ValueError, match=r"or ignore_index=-100.*min=-1, max=-1"):
        lsr.smooth_ce(logits, backend.asarray(np.array([-100, -1, 2])), ignore_index=-100)
    # The ignore_index itself is fine.
    lsr.smooth_ce(logits, backend.asarray(np.array([-100, 0, 2])), ignore_index=-100)
    # ignore_index at one end of the range, a bad id at the other (the check's second
    # reduction, over the ids that are not ignore_index, must see it).
    with pytest.raises(ValueError, match=r"or ignore_index=-100.*1 do not.*min=4, max=4"):
        lsr.smooth_ce(logits, backend.asarray(np.array([-100, 4, 2])), ignore_index=-100)
    with pytest.raises(ValueError, match=r"or ignore_index=255.*1 do not.*min=-3, max=-3"):
        lsr.smooth_ce(logits, backend.asarray(np.array([255, -3, 2])), ignore_index=255)
    lsr.smooth_ce(logits, backend.asarray(np.array([255, 3, 2])), ignore_index=255)
    # A bad id between the classes and an ignore_index at the same end.
    with pytest.raises(ValueError, match=r"or ignore_index=255.*1 do not.*min=7, max=7"):
        lsr.smooth_ce(logits, backend.asarray(np.array([255, 7, 2])), ignore_index=255)
    with pytest.raises(ValueError, match=r"or ignore_index=-100.*2 do not.*min=-99, max=-1"):
        lsr.smooth_ce(logits, backend.asarray(np.array([-100, -1, -99])), ignore_index=-100)
    lsr.smooth_ce(logits, backend.asarray(np.array([-100, -100, 3])), ignore_index=-100)
    lsr.smooth_ce(logits, backend.asarray(np.array([-100, -100, -100])), ignore_index=-100)


@pytest.mark.parametrize(
    ("labels", "dtype", "ignore_index", "expected", "summed"),
    [
        ([-(2**40), 0, 3], np.int64, -(2**40), True, True),
        ([-(2**40), -1, 3], np.int64, -(2**40), False, True),
        ([2**40, 0, 3], np.int64, 2**40, True, True),
        ([2**40, 5, 3], np.int64, 2**40, False, True),
        ([-100, 0, 3], np.int64, -100, True, True),
        ([-100, -7, 3], np.int64, -100, False, True),
        ([9, 0, 3, 9], np.int64, 9, True, True),
        ([9, 8, 3], np.int64, 9, False, True),
        # Sums that could overflow int32 take the range of the other ids instead.
        ([-(2**30), 0, 3], np.int32, -(2**30), True, False),
        ([-(2**30), -1, 3], np.int32, -(2**30), False, False),
        ([2**30, 0, 3], np.int32, 2**30, True, False),
        ([2**30, 4, 3], np.int32, 2**30, False, False),
    ],
)
def test_the_other_ids_range_with_ignore_index_at_one_end(
    labels, dtype, ignore_index, expected, summed, monkeypatch
):
    """Whether the ids other than an ignore_index at their minimum or maximum are all in
    [0, 4): by two clipped sums, or, where those sums could overflow the dtype, by the
    range of the other ids."""
    import array_api_compat.numpy as xp

    from lsr import _checks

    ranges = []
    value_range = _checks.value_range
    monkeypatch.setattr(
        _checks, "value_range", lambda *args: ranges.append(1) or value_range(*args)
    )
    ids = np.array(labels, dtype=dtype)
    low, high = int(ids.min()), int(ids.max())
    assert _checks._others_in_range(xp, ids, 4, ignore_index, low, high) is expected
    assert ranges == ([] if summed else [1])


def test_label_shape_mismatch(case):
    backend, logits, _ = case
    with pytest.raises(ValueError, match=r"without the class axis.*\(3,\).*Received: labels="):
        lsr.smooth_ce(logits, backend.asarray(np.array([0, 1])))
    with pytest.raises(
        ValueError, match=r"Dense \(floating\) `labels` must have the logits' shape"
    ):
        lsr.smooth_ce(logits, backend.asarray(np.zeros((3, K + 1))))


def test_non_floating_logits(case):
    backend, _, labels = case
    with pytest.raises(
        TypeError, match=r"`logits` must have a real floating dtype.*Received: logits"
    ):
        lsr.smooth_ce(backend.asarray(np.zeros((3, K), dtype=np.int32)), labels)


def test_boolean_labels(case):
    backend, logits, _ = case
    with pytest.raises(TypeError, match=r"`labels` must be integer class ids or floating"):
        lsr.smooth_ce(logits, backend.asarray(np.array([True, False, True])))


@pytest.mark.parametrize(
    ("prior", "pattern"),
    [
        (np.array([0.5, 0.5]), r"`prior` must have shape \(4,\)"),
        (np.array([0.5, 0.7, -0.2, 0.0]), r"finite and non-negative"),
        (np.array([0.5, 0.5, 0.5, 0.5]), r"must sum to 1.*Received: prior summing to 2.0"),
    ],
)
def test_bad_prior_vector(case, prior, pattern):
    backend, logits, labels = case
    with pytest.raises(ValueError, match=pattern):
        lsr.smooth_ce(logits, labels, prior=backend.asarray(prior))


def test_others_needs_two_classes(backend):
    with pytest.raises(ValueError, match=r"at least 2 classes.*Received: num_classes=1"):
        lsr.smooth_labels(backend.asarray(np.array([0, 0])), 1, prior="others")
    # The loss refuses one class under any prior: its softmax would be constant.
    for prior in ("others", "uniform"):
        with pytest.raises(ValueError, match=r"single class.*Received: logits.shape=\(2, 1\)"):
            lsr.smooth_ce(
                backend.asarray(np.zeros((2, 1))), backend.asarray(np.array([0, 0])), prior=prior
            )


def test_bad_weight(case):
    backend, logits, labels = case
    with pytest.raises(ValueError, match=r"`weight` must be an array of shape \(4,\)"):
        lsr.smooth_ce(logits, labels, weight=backend.asarray(np.ones(3)))


def test_ignore_index_with_dense_labels(case):
    backend, logits, _ = case
    with pytest.raises(ValueError, match=r"integer class labels only.*Use `where`"):
        lsr.smooth_ce(logits, backend.asarray(np.eye(K)[[0, 1, 2]]), ignore_index=-100)


def test_bad_where(case):
    backend, logits, labels = case
    with pytest.raises(ValueError, match=r"`where` must be a boolean mask of shape \(3,\)"):
        lsr.smooth_ce(logits, labels, where=backend.asarray(np.array([1.0, 0.0, 1.0])))


def test_mixed_libraries_are_rejected(backend):
    other = "numpy" if backend.name != "numpy" else "array_api_strict"
    from tests.conftest import get_backend

    try:
        second = get_backend(other)
    except ImportError:
        pytest.fail(f"{other} must be importable wherever the tests run")
    with pytest.raises(TypeError, match=r"one array.*library.*Received: types="):
        lsr.smooth_ce(backend.asarray(np.zeros((2, K))), second.asarray(np.array([0, 1])))


def test_smooth_labels_errors(backend):
    labels = backend.asarray(np.array([0, 2]))
    with pytest.raises(ValueError, match=r"need `num_classes`.*Received: num_classes=None"):
        lsr.smooth_labels(labels)
    with pytest.raises(ValueError, match=r"integers in \[0, 2\)"):
        lsr.smooth_labels(labels, 2)
    with pytest.raises(ValueError, match=r"`num_classes` must be an integer >= 1"):
        lsr.smooth_labels(labels, 0)
    with pytest.raises(ValueError, match=r"`smoothing` must be in \[0, 1\]"):
        lsr.smooth_labels(labels, 3, smoothing=2.0)
    with pytest.raises(ValueError, match=r"must match the dense labels' class axis \(3\)"):
        lsr.smooth_labels(backend.asarray(np.eye(3)), 4)


def test_smoothing_array_out_of_range_is_caught_when_concrete(case):
    backend, logits, labels = case
    with pytest.raises(
        ValueError, match=r"`smoothing` must be in \[0, 1\].*Received: smoothing=1.25"
    ):
        lsr.smooth_ce(logits, labels, smoothing=backend.asarray(np.array(1.25)))


def test_input_is_never_modified(backend):
    rng = np.random.default_rng(0)
    logits_np, labels_np = rng.normal(size=(3, K)), np.eye(K)[[0, 1, 2]]
    logits, labels = backend.asarray(logits_np), backend.asarray(labels_np)
    lsr.smooth_ce(logits, labels, prior="others", kl=True)
    lsr.smooth_labels(labels, smoothing=0.3)
    np.testing.assert_array_equal(backend.to_numpy(logits), logits_np)
    np.testing.assert_array_equal(backend.to_numpy(labels), labels_np)
