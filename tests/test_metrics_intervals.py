"""Bootstrap intervals, sample weights and the confidence histogram of lsr.metrics.

References: the bootstrap of Kumar et al.'s ``uncertainty-calibration`` package
(``bootstrap_uncertainty``, given the same resample indices), and a direct NumPy
re-implementation from the definitions (the plain per-bin reference of
tests/test_metrics.py on every resample, ``numpy.percentile`` for the quantiles).
Weighted errors are checked against the unweighted error of the examples repeated.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from lsr import metrics
from tests.backends import assert_close
from tests.test_metrics import _case, reference_bins, reference_ece

HAVE_REFERENCE = importlib.util.find_spec("calibration") is not None
needs_reference = pytest.mark.skipif(
    not HAVE_REFERENCE,
    reason="uncertainty-calibration (import name `calibration`) is not installed; "
    "backends/numpy.txt installs it",
)


def _interval(backend, scores, labels, dtype="float64", **options):
    result = metrics.calibration_error_interval(
        backend.asarray(np.asarray(scores), dtype), backend.asarray(np.asarray(labels)), **options
    )
    assert isinstance(result, metrics.CalibrationInterval)
    for value in result:
        assert tuple(value.shape) == ()
    return tuple(float(backend.to_numpy(value)) for value in result)


def _indices(seed, n_resamples, size):
    # The documented draw: row r holds the indices of resample r.
    return np.random.default_rng(seed).integers(0, size, size=(n_resamples, size))


def _overconfident(seed, n, confidence=0.9, accuracy=0.7):
    """Two-class probabilities at one confidence, right with probability ``accuracy``."""
    rng = np.random.default_rng(seed)
    probs = np.tile([confidence, 1.0 - confidence], (n, 1))
    labels = (rng.random(n) >= accuracy).astype(np.int64)
    return probs, labels


# ------------------------------------------------------------- against references


@pytest.mark.parametrize("method", ["basic", "percentile"])
@pytest.mark.parametrize(("norm", "rule"), [("l1", "right"), ("l2", "left"), ("max", "right")])
def test_interval_is_the_bootstrap_of_the_reference_error(backend, method, norm, rule):
    logits, labels = _case(seed=11, n=60)
    n_resamples, confidence, n_bins = 40, 0.8, 5
    estimate = reference_ece(logits, labels, n_bins, norm, rule)
    resampled = [
        reference_ece(logits[rows], labels[rows], n_bins, norm, rule)
        for rows in _indices(7, n_resamples, len(labels))
    ]
    low_q, high_q = np.percentile(resampled, [10.0, 90.0])
    if method == "basic":
        expected = (estimate, 2 * estimate - high_q, 2 * estimate - low_q)
    else:
        expected = (estimate, low_q, high_q)
    actual = _interval(
        backend,
        logits,
        labels,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=7,
        method=method,
        n_bins=n_bins,
        norm=norm,
        bin_edges=rule,
    )
    assert_close(np.array(actual), np.array(expected), "float64", scale=10.0)


@needs_reference
@pytest.mark.parametrize(
    ("binning", "scope", "norm", "power"),
    [
        ("equal_mass", "top_label", "l1", 1),
        ("equal_mass", "classwise", "l2", 2),
        ("equal_width", "top_label", "l2", 2),
        ("equal_width", "classwise", "l1", 1),
    ],
)
def test_interval_matches_the_packages_bootstrap(backend, monkeypatch, binning, scope, norm, power):
    import calibration
    import calibration.utils as package

    rng = np.random.default_rng(3)
    n, k, n_bins, n_resamples, confidence = 80, 3, 4, 30, 0.9
    z = rng.normal(scale=2.0, size=(n, k))
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    rows = iter(_indices(5, n_resamples, n))
    # The package draws resamples from NumPy's global state; give it ours instead.
    monkeypatch.setattr(package, "resample", lambda data: [data[i] for i in next(rows)])
    scheme = calibration.get_equal_bins if binning == "equal_mass" else None
    scheme = scheme or calibration.get_equal_prob_bins
    mode = "top-label" if scope == "top_label" else "marginal"

    def functional(data):
        p, y = zip(*data, strict=True)
        return calibration.lower_bound_scaling_ce(
            np.array(p), np.array(y), p=power, debias=False, num_bins=n_bins,
            binning_scheme=scheme, mode=mode,
        )  # fmt: skip

    low, _, high = package.bootstrap_uncertainty(
        list(zip(probs, labels, strict=True)),
        functional,
        alpha=100 * (1 - confidence),  # the package's alpha is in percent here
        num_samples=n_resamples,
    )
    estimate = functional(list(zip(probs, labels, strict=True)))
    actual = _interval(
        backend,
        probs,
        labels,
        from_logits=False,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=5,
        n_bins=n_bins,
        norm=norm,
        binning=binning,
        scope=scope,
    )
    assert_close(np.array(actual), np.array([estimate, low, high]), "float64", scale=10.0)


# ------------------------------------------------------------------- properties


def test_interval_contains_a_clear_miscalibration_and_narrows_with_more_examples(backend):
    # Confidence 0.9, accuracy 0.7: the true ECE is 0.2, far from the floor at 0.
    widths = []
    for n in (200, 5000):
        probs, labels = _overconfident(seed=n, n=n)
        estimate, low, high = _interval(
            backend, probs, labels, from_logits=False, n_resamples=200, n_bins=10
        )
        assert low <= estimate <= high
        assert low < 0.2 < high
        widths.append(high - low)
    # The standard error falls as 1/sqrt(N): 5 times narrower for 25 times the data.
    assert widths[1] < widths[0] / 3


def test_the_same_seed_gives_the_same_interval(backend):
    logits, labels = _case(seed=2, n=100)
    first = _interval(backend, logits, labels, n_resamples=50, seed=4)
    assert _interval(backend, logits, labels, n_resamples=50, seed=4) == first
    assert _interval(backend, logits, labels, n_resamples=50, seed=5) != first
    generated = _interval(backend, logits, labels, n_resamples=50, seed=np.random.default_rng(4))
    assert generated == first
    wider = _interval(backend, logits, labels, n_resamples=50, seed=4, confidence=0.99)
    assert wider[0] == first[0]
    assert wider[1] <= first[1] and wider[2] >= first[2]


def test_l1_debiasing_in_intervals_draws_after_the_indices(backend):
    """With debias=True and norm="l1", the normal draws come from the same generator
    after the resample indices: the estimate is expected_calibration_error with that
    generator."""
    logits, labels = _case(seed=6, n=80)
    options = dict(n_bins=5, norm="l1", debias=True)
    estimate, _, _ = _interval(backend, logits, labels, n_resamples=30, seed=9, **options)
    after_indices = np.random.default_rng(9)
    after_indices.integers(0, 80, size=(30, 80))
    expected = metrics.expected_calibration_error(
        backend.asarray(logits), backend.asarray(labels), seed=after_indices, **options
    )
    assert_close(estimate, float(backend.to_numpy(expected)), "float64")
    plain = _interval(backend, logits, labels, n_resamples=30, seed=9, n_bins=5)
    assert abs(plain[0] - estimate) > 1e-4  # the correction is not nothing


def test_blocks_of_resamples_do_not_change_the_interval(backend, monkeypatch):
    from lsr.metrics import _intervals

    logits, labels = _case(seed=6, n=50)
    whole = _interval(backend, logits, labels, n_resamples=30, binning="equal_mass")
    monkeypatch.setattr(_intervals, "BLOCK_VALUES", 7 * 50)  # blocks of 7 resamples
    assert_close(
        np.array(_interval(backend, logits, labels, n_resamples=30, binning="equal_mass")),
        np.array(whole),
        "float64",
    )


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"confidence": 0.0}, ValueError, r"\(0, 1\).*Received: confidence=0.0"),
        ({"confidence": 1.0}, ValueError, r"\(0, 1\).*Received: confidence=1.0"),
        ({"confidence": 90}, ValueError, r"\(0, 1\).*Received: confidence=90"),
        ({"confidence": True}, TypeError, r"Received: confidence=True"),
        ({"confidence": "0.9"}, TypeError, r"Received: confidence='0.9'"),
        ({"n_resamples": 0}, ValueError, r">= 1.*Received: n_resamples=0"),
        ({"n_resamples": 10.0}, TypeError, r"Received: n_resamples=10.0"),
        ({"method": "bca"}, ValueError, r"'basic', 'percentile'.*Received: method='bca'"),
        ({"seed": -1}, ValueError, r"non-negative.*Received: seed=-1"),
        ({"seed": 1.5}, TypeError, r"Generator.*Received: seed=1.5"),
        ({"norm": "l3"}, ValueError, r"Received: norm='l3'"),
        ({"debias": True, "norm": "max"}, ValueError, r"not for the maximum"),
    ],
)
def test_bad_interval_options(backend, options, error, pattern):
    logits, labels = _case(seed=1, n=10)
    with pytest.raises(error, match=pattern):
        metrics.calibration_error_interval(
            backend.asarray(logits), backend.asarray(labels), **options
        )


# ---------------------------------------------------------------- sample weights


@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
@pytest.mark.parametrize("scope", ["top_label", "classwise", "thresholded"])
@pytest.mark.parametrize(("norm", "debias"), [("l1", False), ("l2", True), ("max", False)])
def test_integer_weights_are_repeated_examples(backend, binning, scope, norm, debias):
    # (Equal-mass edges split the repeated examples: weights of 0 to 3 move them.)
    logits, labels = _case(seed=8, n=40)
    weights = np.random.default_rng(8).integers(0, 4, size=40)
    weights[0] = 2  # at least one positive weight
    repeated = np.repeat(np.arange(40), weights)
    options = {"n_bins": 7, "norm": norm, "scope": scope, "debias": debias, "binning": binning}
    if scope == "thresholded":
        options["threshold"] = 0.15
    expected = metrics.expected_calibration_error(logits[repeated], labels[repeated], **options)
    for dtype in (weights.dtype, np.float64):
        actual = metrics.expected_calibration_error(
            backend.asarray(logits),
            backend.asarray(labels),
            sample_weight=backend.asarray(weights.astype(dtype)),
            **options,
        )
        assert_close(backend.to_numpy(actual), float(expected), "float64")


def test_weighted_reliability_diagram_by_hand(backend):
    # Confidences 0.9 (right, weight 3), 0.8 (wrong, weight 1), 0.6 (right, weight 0.5):
    # two bins (0, 0.5], (0.5, 1]; everything falls in the second, of total weight 4.5.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6]])
    diagram = metrics.reliability_diagram(
        backend.asarray(probs),
        backend.asarray(np.array([0, 1, 1])),
        n_bins=2,
        from_logits=False,
        sample_weight=backend.asarray(np.array([3.0, 1.0, 0.5])),
    )
    assert_close(backend.to_numpy(diagram.count), [0.0, 4.5], "float64")
    assert_close(backend.to_numpy(diagram.confidence), [0.0, (2.7 + 0.8 + 0.3) / 4.5], "float64")
    assert_close(backend.to_numpy(diagram.accuracy), [0.0, 3.5 / 4.5], "float64")
    assert_close(backend.to_numpy(diagram.fraction), [0.0, 1.0], "float64")


@pytest.mark.parametrize(
    ("weights", "error", "pattern"),
    [
        (np.array([1.0, -1.0, 1.0, 1.0]), ValueError, r"non-negative"),
        (np.array([1.0, np.nan, 1.0, 1.0]), ValueError, r"finite"),
        (np.zeros(4), ValueError, r"positive sum"),
        (np.ones(3), ValueError, r"shape of `labels`, \(4,\)"),
        (np.ones(4, dtype=bool), TypeError, r"floating or integer"),
    ],
)
def test_bad_sample_weight(backend, weights, error, pattern):
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.5, 0.5]])
    with pytest.raises(error, match=pattern + r".*Received: sample_weight="):
        metrics.expected_calibration_error(
            backend.asarray(probs),
            backend.asarray(np.array([0, 1, 1, 0])),
            from_logits=False,
            sample_weight=backend.asarray(weights),
        )


def test_weighted_equal_mass_diagram_and_interval_are_of_the_repeated_examples(backend):
    logits, labels = _case(seed=9, n=30)
    weights = np.random.default_rng(9).integers(1, 4, size=30)
    repeated = np.repeat(np.arange(30), weights)
    expected = metrics.reliability_diagram(
        logits[repeated], labels[repeated], n_bins=6, binning="equal_mass"
    )
    actual = metrics.reliability_diagram(
        backend.asarray(logits),
        backend.asarray(labels),
        n_bins=6,
        binning="equal_mass",
        sample_weight=backend.asarray(weights),
    )
    for got, want in zip(actual, expected, strict=True):
        assert_close(backend.to_numpy(got), np.asarray(want), "float64")
    # The interval resamples the 30 weighted examples (not the repeated ones), so its
    # estimate is the repeated examples' error and its ends those of the weighted errors.
    options = {"n_bins": 6, "binning": "equal_mass", "n_resamples": 20, "seed": 2}
    interval = _interval(backend, logits, labels, sample_weight=backend.asarray(weights), **options)
    whole = metrics.expected_calibration_error(
        logits[repeated], labels[repeated], n_bins=6, binning="equal_mass"
    )
    assert_close(np.array(interval[0]), float(whole), "float64")
    resampled = [
        float(
            metrics.expected_calibration_error(
                logits[rows],
                labels[rows],
                n_bins=6,
                binning="equal_mass",
                sample_weight=weights[rows],
            )
        )
        for rows in _indices(2, 20, 30)
    ]
    low_q, high_q = np.percentile(resampled, [5.0, 95.0])
    assert_close(
        np.array(interval[1:]), np.array([2 * whole - high_q, 2 * whole - low_q]), "float64"
    )


def test_equal_mass_weights_past_float32_counting(backend):
    """Whole weights above 2**24 (each exact in float32): the split counts them as
    integers. A float32 running total had put every example into the first bin."""
    probs = np.array([[0.6, 0.4], [0.7, 0.3], [0.8, 0.2], [0.9, 0.1]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1])
    weights = np.array([1, 1, 2**24 + 2, 2**24 + 2], dtype=np.float32)
    diagram = metrics.reliability_diagram(
        backend.asarray(probs),
        backend.asarray(labels),
        n_bins=2,
        from_logits=False,
        binning="equal_mass",
        sample_weight=backend.asarray(weights),
    )
    # 2**25 + 6 repeated examples, two parts of 2**24 + 3: the first ends inside the
    # 0.8s (positions 2 to 2**24 + 3), so the edge is 0.8 itself and all of them go below.
    np.testing.assert_array_equal(backend.to_numpy(diagram.count), [2**24 + 4, 2**24 + 2])


def test_equal_mass_edge_between_neighbouring_floats(backend):
    """Two neighbouring float32 confidences: their midpoint rounds to the upper one,
    which as an edge would put both in the lower (lo, hi] bin. Each has its own bin,
    as in float64 and the package: one right (0.5 gap), one wrong."""
    low = np.float32(0.6000001)
    high = np.nextafter(low, np.float32(1.0))
    assert (low + high) / np.float32(2) == high  # the rounding this guards against
    probs = np.array([[low, 1 - low], [high, 1 - high]], dtype=np.float32)
    for dtype in ("float32", "float64"):
        scores = backend.asarray(probs.astype(dtype))
        diagram = metrics.reliability_diagram(
            scores,
            backend.asarray(np.array([0, 1])),
            n_bins=2,
            from_logits=False,
            binning="equal_mass",
        )
        np.testing.assert_array_equal(backend.to_numpy(diagram.count), [1.0, 1.0])


def test_fractional_weights_with_equal_mass_bins_are_refused(backend):
    probs = np.array([[0.9, 0.1], [0.8, 0.2]])
    for function in (metrics.expected_calibration_error, metrics.reliability_diagram):
        with pytest.raises(ValueError, match=r"whole numbers.*Received: sample_weight="):
            function(
                backend.asarray(probs),
                backend.asarray(np.array([0, 1])),
                from_logits=False,
                binning="equal_mass",
                sample_weight=backend.asarray(np.array([1.0, 0.5])),
            )


# ---------------------------------------------------------- confidence histogram


@pytest.mark.parametrize("rule", ["right", "left"])
def test_the_histogram_is_each_bins_share_of_the_examples(backend, rule):
    logits, labels = _case(seed=12, n=90)
    _, _, count = reference_bins(logits, labels, 6, rule)
    diagram = metrics.reliability_diagram(
        backend.asarray(logits), backend.asarray(labels), n_bins=6, bin_edges=rule
    )
    assert_close(backend.to_numpy(diagram.fraction), count / 90, "float64")
    assert float(np.sum(backend.to_numpy(diagram.fraction))) == pytest.approx(1.0)


def test_the_histogram_by_hand(backend):
    # Top-label confidences 0.9, 0.8, 0.6, 0.55 in bins (0, 0.5], (0.5, 1]... with 4
    # bins: (0.5, 0.75] holds 0.6 and 0.55, (0.75, 1] holds 0.9 and 0.8.
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.55, 0.45]])
    diagram = metrics.reliability_diagram(
        backend.asarray(probs), backend.asarray(np.array([0, 1, 1, 0])), n_bins=4,
        from_logits=False,
    )  # fmt: skip
    assert_close(backend.to_numpy(diagram.fraction), [0.0, 0.0, 0.5, 0.5], "float64")


# -------------------------------------------------------------- thresholded scope


def reference_thresholded(probs, labels, n_bins, norm, threshold):
    """Nixon et al.'s thresholding, one class and one prediction at a time: each class's
    error over its predictions above the threshold, (lo, hi] bins of width 1/n_bins,
    classes without such predictions left out, then combined as the classwise scope."""
    errors = []
    for k in range(probs.shape[1]):
        kept = [
            (p[k], float(y == k)) for p, y in zip(probs, labels, strict=True) if p[k] > threshold
        ]
        if not kept:
            continue
        gaps, shares = [], []
        for b in range(n_bins):
            lo, hi = b / n_bins, (b + 1) / n_bins
            members = [(p, t) for p, t in kept if lo < p <= hi or (b == 0 and p == 0.0)]
            if members:
                confidence = sum(p for p, _ in members) / len(members)
                accuracy = sum(t for _, t in members) / len(members)
                gaps.append(abs(accuracy - confidence))
                shares.append(len(members) / len(kept))
        if norm == "l1":
            errors.append(sum(s * g for s, g in zip(shares, gaps, strict=True)))
        elif norm == "l2":
            errors.append(np.sqrt(sum(s * g * g for s, g in zip(shares, gaps, strict=True))))
        else:
            errors.append(max(gaps))
    if norm == "l1":
        return float(np.mean(errors))
    if norm == "l2":
        return float(np.sqrt(np.mean(np.square(errors))))
    return float(max(errors))


def _thresholded_case():
    logits, labels = _case(seed=13, n=70)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # Class 4 never reaches the threshold 0.05: it has no error and is left out.
    probs[:, 4] *= 1e-3
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, labels


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("threshold", [None, 0.05, 0.3])
def test_thresholded_scope_matches_its_definition(backend, norm, threshold):
    probs, labels = _thresholded_case()
    expected = reference_thresholded(
        probs, labels, 8, norm, 0.01 if threshold is None else threshold
    )
    actual = metrics.expected_calibration_error(
        backend.asarray(probs),
        backend.asarray(labels),
        n_bins=8,
        norm=norm,
        from_logits=False,
        scope="thresholded",
        threshold=threshold,
    )
    assert_close(backend.to_numpy(actual), expected, "float64")


@pytest.mark.parametrize("method", ["basic", "percentile"])
def test_thresholded_equal_mass_interval_is_the_bootstrap_of_the_error(backend, method):
    """TACE's interval: each resample's classes keep their own number of predictions
    above the threshold, and each is split alone (the batch error on a resample is
    checked against the package in tests/test_metrics_calibration.py)."""
    probs, labels = _thresholded_case()
    options = {"n_bins": 6, "scope": "thresholded", "threshold": 0.2, "binning": "equal_mass"}

    def error(rows):
        value = metrics.expected_calibration_error(
            probs[rows], labels[rows], from_logits=False, **options
        )
        return float(value)

    estimate = error(np.arange(len(labels)))
    resampled = [error(rows) for rows in _indices(5, 30, len(labels))]
    low_q, high_q = np.percentile(resampled, [5.0, 95.0])
    if method == "basic":
        expected = (estimate, 2 * estimate - high_q, 2 * estimate - low_q)
    else:
        expected = (estimate, low_q, high_q)
    actual = _interval(
        backend, probs, labels, from_logits=False, n_resamples=30, seed=5, method=method, **options
    )
    assert_close(np.array(actual), np.array(expected), "float64", scale=10.0)


def test_thresholded_at_zero_is_classwise_and_differs_above(backend):
    logits, labels = _case(seed=14, n=60)  # softmax probabilities are all > 0
    scores, ids = backend.asarray(logits), backend.asarray(labels)
    classwise = metrics.expected_calibration_error(scores, ids, scope="classwise")
    at_zero = metrics.expected_calibration_error(scores, ids, scope="thresholded", threshold=0.0)
    assert_close(backend.to_numpy(at_zero), float(backend.to_numpy(classwise)), "float64")
    above = metrics.expected_calibration_error(scores, ids, scope="thresholded", threshold=0.2)
    assert abs(float(backend.to_numpy(above)) - float(backend.to_numpy(classwise))) > 1e-3


def test_zero_weight_examples_are_not_resampled(backend):
    """A weight of 0 leaves the example out of the data, so the interval is that of the
    other examples alone, with their weights -- and no resample is all zero weights
    (which gave NaN quantiles)."""
    logits, labels = _case(seed=11, n=30)
    weights = np.zeros(30)
    weights[[2, 5, 11, 17, 23]] = [1.0, 2.0, 0.5, 1.0, 3.0]
    present = weights > 0
    options = {"n_bins": 5, "n_resamples": 300, "seed": 3, "method": "percentile"}
    expected = metrics.calibration_error_interval(
        logits[present], labels[present], sample_weight=weights[present], **options
    )
    actual = metrics.calibration_error_interval(
        backend.asarray(logits),
        backend.asarray(labels),
        sample_weight=backend.asarray(weights),
        **options,
    )
    for got, want in zip(actual, expected, strict=True):
        assert np.isfinite(float(want))
        assert_close(backend.to_numpy(got), float(want), "float64")


def test_thresholded_scope_with_nothing_to_measure_is_refused(backend):
    logits, labels = _case(seed=12, n=20)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    options = {"scope": "thresholded", "threshold": 0.999, "from_logits": False}
    assert probs.max() < 0.999
    with pytest.raises(ValueError, match=r"above `threshold`.*Received: threshold=0.999"):
        metrics.expected_calibration_error(
            backend.asarray(probs), backend.asarray(labels), **options
        )
    # One prediction above the threshold: defined, but most resamples miss it.
    probs[4] = [0.9995, *np.full(probs.shape[1] - 1, 0.0005 / (probs.shape[1] - 1))]
    z, y = backend.asarray(probs), backend.asarray(labels)
    assert np.isfinite(float(metrics.expected_calibration_error(z, y, **options)))
    for norm in ("l1", "l2", "max"):
        with pytest.raises(ValueError, match=r"of the 50 resamples is undefined.*0.999"):
            metrics.calibration_error_interval(z, y, n_resamples=50, norm=norm, **options)


@pytest.mark.parametrize("method", ["basic", "percentile"])
def test_a_nan_input_gives_a_nan_interval_as_the_error_does(backend, method):
    # (Some resamples miss the NaN example: sorted last, their errors would leave the
    # percentile interval a finite lower end.)
    logits, labels = _case(seed=13, n=20)
    logits[3, 1] = np.nan
    z, y = backend.asarray(logits), backend.asarray(labels)
    assert np.isnan(float(metrics.expected_calibration_error(z, y)))
    interval = metrics.calibration_error_interval(z, y, n_resamples=20, method=method)
    assert all(np.isnan(float(backend.to_numpy(end))) for end in interval)


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"threshold": 0.1}, ValueError, r"scope='thresholded' only.*Received: threshold=0.1"),
        ({"scope": "thresholded", "threshold": 1.0}, ValueError, r"\[0, 1\).*threshold=1.0"),
        ({"scope": "thresholded", "threshold": -0.1}, ValueError, r"Received: threshold=-0.1"),
        ({"scope": "thresholded", "threshold": "0.1"}, TypeError, r"Received: threshold='0.1'"),
    ],
)
def test_bad_threshold_options(backend, options, error, pattern):
    logits, labels = _case(seed=1, n=10)
    with pytest.raises(error, match=pattern):
        metrics.expected_calibration_error(
            backend.asarray(logits), backend.asarray(labels), **options
        )


def test_a_thresholded_state_is_made_as_a_classwise_one(backend):
    # It streams (tests/test_metrics_streaming.py) as a classwise state whose updates pass
    # the threshold; a state cannot record it, so "thresholded" is refused here rather
    # than an update without threshold= silently giving the classwise error.
    logits, _ = _case(seed=1, n=10)
    with pytest.raises(ValueError, match=r"scope='classwise'.*Received: scope='thresholded'"):
        metrics.calibration_state(backend.asarray(logits), n_bins=4, scope="thresholded")


def test_debiasing_needs_whole_weights(backend):
    """The debiased estimators count examples: fractional weights have no such count
    (the result would change with their scale), so they are refused, in the batch
    function, the interval and a streamed state."""
    logits, labels = _case(seed=3, n=40)
    z, y = backend.asarray(logits), backend.asarray(labels)
    half = backend.asarray(np.full(40, 0.5))
    whole = backend.asarray(np.full(40, 2.0))
    for norm in ("l1", "l2"):
        options = dict(n_bins=4, norm=norm, debias=True)
        with pytest.raises(ValueError, match=r"whole numbers.*Received: sample_weight="):
            metrics.expected_calibration_error(z, y, sample_weight=half, **options)
        with pytest.raises(ValueError, match=r"whole numbers.*Received: sample_weight="):
            metrics.calibration_error_interval(z, y, sample_weight=half, n_resamples=5, **options)
        # Whole weights are repeated examples: the same as the data repeated.
        repeated = metrics.expected_calibration_error(z, y, sample_weight=whole, **options)
        twice = metrics.expected_calibration_error(
            backend.asarray(np.concatenate([logits, logits])),
            backend.asarray(np.concatenate([labels, labels])),
            **options,
        )
        assert_close(float(backend.to_numpy(repeated)), float(backend.to_numpy(twice)), "float64")
        state = metrics.calibration_state(z, n_bins=4)
        state = metrics.update_calibration_state(state, z, y, sample_weight=half)
        with pytest.raises(ValueError, match=r"whole numbers.*Received: state.count="):
            metrics.calibration_error_from_state(state, norm=norm, debias=True)
        assert np.isfinite(float(backend.to_numpy(metrics.calibration_error_from_state(state))))
