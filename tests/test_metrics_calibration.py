"""expected_calibration_error's binnings, scopes and debiasing (Kumar et al. 2019) on every
selected backend: hand-worked examples, and parity with the authors' own package.

The reference is ``uncertainty-calibration`` (import name ``calibration``; Kumar, Liang &
Ma 2019, "Verified Uncertainty Calibration"), pinned in backends/numpy.txt. Its
``lower_bound_scaling_ce(probs, labels, p, debias, num_bins, binning_scheme, mode)`` is
the function behind its ``get_ece``/``get_ece_em``, with the bin rule passed explicitly
(``get_equal_bins``: equal mass, ``get_equal_prob_bins``: equal width) and ``mode``
"top-label" or "marginal" (our "classwise").

scikit-learn's ``calibration_curve`` (1.9) is a reference for the bins' contents:
with ``strategy="uniform"`` its bins are the equal-width ``(lo, hi]`` bins, and with
``strategy="quantile"`` its edges (``np.percentile``'s interpolated quantiles, not the
package's midpoints between ``array_split`` parts) fall between the same two sorted
values as the package's when N is a multiple of the number of bins, so for distinct
values its bins hold the same examples: its per-bin means are compared, not its edges.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from lsr import metrics
from tests.backends import assert_close, selected_backends

HAVE_REFERENCE = importlib.util.find_spec("calibration") is not None
needs_reference = pytest.mark.skipif(
    not HAVE_REFERENCE,
    reason="uncertainty-calibration (import name `calibration`) is not installed; "
    "backends/numpy.txt installs it",
)

# torchmetrics' documentation example of MulticlassCalibrationError.
PROBS = np.array([[0.25, 0.20, 0.55], [0.55, 0.05, 0.40], [0.10, 0.30, 0.60], [0.90, 0.05, 0.05]])
LABELS = np.array([0, 1, 2, 0])


def _ece(backend, probs, labels, dtype="float64", **options):
    value = metrics.expected_calibration_error(
        backend.asarray(np.asarray(probs), dtype),
        backend.asarray(np.asarray(labels)),
        from_logits=False,
        **options,
    )
    assert tuple(value.shape) == ()
    return float(backend.to_numpy(value))


# ---------------------------------------------------------- hand-worked examples

# Top-label confidences of PROBS: 0.55 (predicts 2, label 0: wrong), 0.55 (predicts 0,
# label 1: wrong), 0.60 (predicts 2, label 2: right), 0.90 (predicts 0, label 0: right).
# Equal mass, 2 bins: sorted 0.55 0.55 | 0.60 0.90, edge (0.55 + 0.60) / 2 = 0.575.
# Bin 0: conf 0.55, acc 0, gap 0.55; bin 1: conf 0.75, acc 1, gap 0.25; each weight 1/2.
# Both bins have accuracy 0 or 1, so the debiasing variance acc(1 - acc)/(n - 1) is 0.
EQUAL_MASS_TOP_LABEL = {
    ("l1", False): 0.5 * 0.55 + 0.5 * 0.25,  # 0.4
    ("l2", False): math.sqrt(0.5 * 0.55**2 + 0.5 * 0.25**2),  # sqrt(0.1825)
    ("l2", True): math.sqrt(0.5 * 0.55**2 + 0.5 * 0.25**2),
    ("max", False): 0.55,
}

# Classwise, equal width, 3 bins (0, 1/3], (1/3, 2/3], (2/3, 1]:
# class 0: p = .25 .55 .10 .90, y = 1 0 0 1. Bin 0 {.25 y1, .10 y0}: conf .175, acc .5,
#   gap .325, weight 1/2; bin 1 {.55 y0}: gap .55, weight 1/4; bin 2 {.90 y1}: gap .1,
#   weight 1/4. l1 = .1625 + .1375 + .025 = .325.
# class 1: p = .20 .05 .30 .05, y = 0 1 0 0. All in bin 0: conf .15, acc .25: gap .1.
# class 2: p = .55 .40 .60 .05, y = 0 0 1 0. Bin 0 {.05 y0}: gap .05, weight 1/4;
#   bin 1 {.55 y0, .40 y0, .60 y1}: conf 1.55/3, acc 1/3, gap .55/3, weight 3/4. l1 = .15.
CLASS_SQUARES = [
    0.5 * 0.325**2 + 0.25 * 0.55**2 + 0.25 * 0.1**2,
    0.1**2,
    0.25 * 0.05**2 + 0.75 * (0.55 / 3) ** 2,
]
EQUAL_WIDTH_CLASSWISE = {
    ("l1", False): (0.325 + 0.1 + 0.15) / 3,  # 0.19167
    ("l2", False): math.sqrt(sum(CLASS_SQUARES) / 3),  # mean of squares, then the root
    ("max", False): max(0.55, 0.1, 0.55 / 3),  # the largest gap of any class and bin
}

# Classwise, equal mass, 2 bins, each class its own edge:
# class 0: sorted .10 .25 | .55 .90, edge .4. Bin 0 {.25 y1, .10 y0}: conf .175, acc .5,
#   gap .325; bin 1 {.55 y0, .90 y1}: conf .725, acc .5, gap .225. l1 = .275.
#   Debiased squares: .325^2 - .25/1 < 0 and .225^2 - .25/1 < 0: the sum clips to 0.
# class 1: sorted .05 .05 | .20 .30, edge .125. Bin 0 {.05 y1, .05 y0}: conf .05, acc .5,
#   gap .45; bin 1 {.20 y0, .30 y0}: conf .25, acc 0, gap .25. l1 = .35.
#   Debiased: 1/2 (.45^2 - .25) + 1/2 (.25^2 - 0) = 1/2 (-.0475 + .0625) = .0075.
# class 2: sorted .05 .40 | .55 .60, edge .475. Bin 0 {.40 y0, .05 y0}: conf .225,
#   acc 0, gap .225; bin 1 {.55 y0, .60 y1}: conf .575, acc .5, gap .075. l1 = .15.
#   Debiased: 1/2 (.225^2 - 0) + 1/2 (.075^2 - .25) < 0: clips to 0.
# The debiased l2 clips each class before averaging: sqrt((0 + .0075 + 0) / 3) = .05 (a
# clip of the average alone would give 0 here).
EQUAL_MASS_CLASSWISE = {
    ("l1", False): (0.275 + 0.35 + 0.15) / 3,  # 0.25833
    ("l2", False): math.sqrt(
        (
            (0.5 * 0.325**2 + 0.5 * 0.225**2)
            + (0.5 * 0.45**2 + 0.5 * 0.25**2)
            + (0.5 * 0.225**2 + 0.5 * 0.075**2)
        )
        / 3
    ),
    ("l2", True): 0.05,
    ("max", False): 0.45,
}

HAND_CASES = [
    (binning, scope, n_bins, norm, debias, value)
    for binning, scope, n_bins, table in [
        ("equal_mass", "top_label", 2, EQUAL_MASS_TOP_LABEL),
        ("equal_width", "classwise", 3, EQUAL_WIDTH_CLASSWISE),
        ("equal_mass", "classwise", 2, EQUAL_MASS_CLASSWISE),
    ]
    for (norm, debias), value in table.items()
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("binning", "scope", "n_bins", "norm", "debias", "expected"), HAND_CASES)
def test_hand_worked_examples(backend, dtype, binning, scope, n_bins, norm, debias, expected):
    actual = _ece(
        backend,
        PROBS,
        LABELS,
        dtype,
        n_bins=n_bins,
        norm=norm,
        binning=binning,
        scope=scope,
        debias=debias,
    )
    assert_close(actual, expected, dtype, scale=10.0)


# Six predictions [0.9, 0.1], four right: one bin with conf 0.9 and acc 2/3. Plain l2:
# |0.9 - 2/3| = 7/30. Debiased: (7/30)^2 - (2/3)(1/3)/(6 - 1) = 49/900 - 40/900 = 1/100.
# Adding a seventh example [0.4, 0.3, 0.3] (label 1, wrong) in a bin (0, 0.5] of its own:
# plain l2 gains 1/7 * 0.4^2; debiased, a bin of one example counts 0 (its variance
# estimate divides by n - 1 = 0), and the six others weigh 6/7.
DEBIAS_PROBS = np.array([[0.9, 0.1, 0.0]] * 6 + [[0.4, 0.3, 0.3]])
DEBIAS_LABELS = np.array([0, 0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_debiased_l2_by_hand(backend, dtype):
    six, labels = DEBIAS_PROBS[:6], DEBIAS_LABELS[:6]
    for binning in ("equal_width", "equal_mass"):
        options = {"n_bins": 1, "norm": "l2", "binning": binning}
        assert_close(_ece(backend, six, labels, dtype, **options), 7 / 30, dtype, scale=10.0)
        debiased = _ece(backend, six, labels, dtype, debias=True, **options)
        assert_close(debiased, 0.1, dtype, scale=10.0)
    options = {"n_bins": 2, "norm": "l2"}
    plain = _ece(backend, DEBIAS_PROBS, DEBIAS_LABELS, dtype, **options)
    assert_close(plain, math.sqrt(0.4**2 / 7 + 6 / 7 * 49 / 900), dtype, scale=10.0)
    debiased = _ece(backend, DEBIAS_PROBS, DEBIAS_LABELS, dtype, debias=True, **options)
    assert_close(debiased, math.sqrt(6 / 7 / 100), dtype, scale=10.0)


def test_equal_mass_edge_cases_by_hand(backend):
    # Ties: four confidences of 0.7 (three right). The split 0.7 0.7 | 0.7 0.7 puts the
    # edge at 0.7, so every example is in the first bin (lo, 0.7]: gap |0.75 - 0.7|.
    tied = np.array([[0.7, 0.3]] * 4)
    tied_labels = np.array([0, 0, 0, 1])
    for n_bins in (2, 3, 4):
        value = _ece(backend, tied, tied_labels, n_bins=n_bins, binning="equal_mass")
        assert_close(value, 0.05, "float64")
    diagram = metrics.reliability_diagram(
        backend.asarray(tied),
        backend.asarray(tied_labels),
        n_bins=2,
        from_logits=False,
        binning="equal_mass",
    )
    np.testing.assert_array_equal(backend.to_numpy(diagram.count), [4.0, 0.0])
    assert_close(backend.to_numpy(diagram.edges), [0.0, 0.7, 1.0], "float64")
    # Confidences of exactly 1.0: sorted .6 .8 | 1 1, edge .9. Bin 0 {.6 right, .8 right}:
    # conf .7, acc 1, gap .3; bin 1 {1 right, 1 wrong}: conf 1, acc .5, gap .5.
    ones = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.4], [0.8, 0.2]])
    ones_labels = np.array([0, 1, 0, 0])
    value = _ece(backend, ones, ones_labels, n_bins=2, binning="equal_mass")
    assert_close(value, 0.5 * 0.3 + 0.5 * 0.5, "float64")
    # More bins than examples: every example alone in its bin, so the l1 error is the mean
    # of |correct - confidence|: (.4 + .8 + .3) / 3.
    few = np.array([[0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])
    few_labels = np.array([0, 1, 1])
    for binning in ("equal_width", "equal_mass"):
        value = _ece(backend, few, few_labels, n_bins=15, binning=binning)
        assert_close(value, 0.5, "float64")
    # One example: its gap, top-label or per class (.3 for both classes).
    for scope in ("top_label", "classwise"):
        for binning in ("equal_width", "equal_mass"):
            value = _ece(backend, [[0.7, 0.3]], [0], n_bins=15, binning=binning, scope=scope)
            assert_close(value, 0.3, "float64")


def test_equal_width_top_label_is_the_existing_error(backend):
    # The new keywords at their defaults change nothing; top_label/equal_width spelled out
    # is the same call.
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(50, 4))
    labels = rng.integers(0, 4, size=50)
    for norm in ("l1", "l2", "max"):
        values = [
            backend.to_numpy(
                metrics.expected_calibration_error(
                    backend.asarray(logits), backend.asarray(labels), norm=norm, **options
                )
            )
            for options in ({}, {"binning": "equal_width", "scope": "top_label", "debias": False})
        ]
        assert values[0] == values[1]
        assert float(values[0]) > 0.0


# ------------------------------------------------------ parity with the package


def _distributions(rng, n, k):
    return rng.dirichlet(np.ones(k), size=n)


def _case(name):
    """(probs, labels, n_bins) for the random case and the adversarial ones."""
    rng = np.random.default_rng(CASES.index(name))
    if name == "random":
        probs = _distributions(rng, 60, 4)
        return probs, rng.integers(0, 4, 60), 7
    if name == "ties":
        # Three distinct rows, repeated: confidences and class probabilities tie a lot.
        rows = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.25, 0.15, 0.6]])
        return rows[rng.integers(0, 3, 40)], rng.integers(0, 3, 40), 6
    if name == "exactly_one":
        probs = _distributions(rng, 30, 3)
        probs[::2] = np.eye(3)[rng.integers(0, 3, 15)]
        return probs, rng.integers(0, 3, 30), 5
    if name == "empty_bins":
        # Confident predictions: equal-width bins below 0.9 are all empty.
        logits = rng.normal(size=(40, 3)) + 6.0 * np.eye(3)[rng.integers(0, 3, 40)]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return probs, rng.integers(0, 3, 40), 15
    if name == "more_bins_than_examples":
        return _distributions(rng, 5, 3), rng.integers(0, 3, 5), 15
    if name == "one_example":
        return _distributions(rng, 1, 3), np.array([2]), 15
    if name == "class_never_predicted":
        probs = _distributions(rng, 50, 4)
        probs[:, 3] *= 0.01  # class 3 is never the argmax, but is sometimes the label
        probs /= probs.sum(axis=1, keepdims=True)
        return probs, rng.integers(0, 4, 50), 8
    raise AssertionError(name)


CASES = [
    "random",
    "ties",
    "exactly_one",
    "empty_bins",
    "more_bins_than_examples",
    "one_example",
    "class_never_predicted",
]
ESTIMATORS = [("l1", 1, False), ("l2", 2, False), ("l2", 2, True)]


@needs_reference
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("scope", ["top_label", "classwise"])
@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
def test_matches_uncertainty_calibration(backend, case, scope, binning):
    import calibration

    probs, labels, n_bins = _case(case)
    scheme = {"equal_mass": calibration.get_equal_bins, "equal_width": None}[binning]
    scheme = scheme or calibration.get_equal_prob_bins
    mode = {"top_label": "top-label", "classwise": "marginal"}[scope]
    for norm, power, debias in ESTIMATORS:
        expected = calibration.lower_bound_scaling_ce(
            probs, labels, p=power, debias=debias, num_bins=n_bins, binning_scheme=scheme, mode=mode
        )
        actual = _ece(
            backend,
            probs,
            labels,
            n_bins=n_bins,
            norm=norm,
            binning=binning,
            scope=scope,
            debias=debias,
        )
        assert_close(actual, expected, "float64")


def _package_thresholded(probs, labels, n_bins, threshold, power, debias):
    """Nixon et al.'s TACE from the package's own pieces: for each class, its predictions
    above ``threshold`` (and only those) go through the package's one-dimensional
    estimator with its equal-mass bins; classes with none are left out, the others
    combined as its marginal mode combines them."""
    import calibration

    errors = []
    for k in range(probs.shape[1]):
        kept = probs[:, k] > threshold
        if not kept.any():
            continue
        error = calibration.lower_bound_scaling_ce(
            probs[kept, k],
            (labels[kept] == k).astype(int),
            p=power,
            debias=debias,
            num_bins=n_bins,
            binning_scheme=calibration.get_equal_bins,
        )
        errors.append(error**power)
    return float(np.mean(errors) ** (1.0 / power))


@needs_reference
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.3, 0.58])
def test_thresholded_equal_mass_is_tace_by_the_package(backend, case, threshold):
    """scope="thresholded" with equal-mass bins splits each class's kept predictions
    alone: a class keeps a different number of them (fewer than the bins, or none, at
    the higher thresholds), so each has its own split points."""
    probs, labels, n_bins = _case(case)
    if not (probs > threshold).any():  # one_example at 0.58: nothing to measure
        with pytest.raises(ValueError, match=r"above `threshold`"):
            _ece(
                backend,
                probs,
                labels,
                binning="equal_mass",
                scope="thresholded",
                threshold=threshold,
            )
        return
    for norm, power, debias in ESTIMATORS:
        expected = _package_thresholded(probs, labels, n_bins, threshold, power, debias)
        actual = _ece(
            backend,
            probs,
            labels,
            n_bins=n_bins,
            norm=norm,
            binning="equal_mass",
            scope="thresholded",
            threshold=threshold,
            debias=debias,
        )
        assert_close(actual, expected, "float64")


@needs_reference
@pytest.mark.parametrize("scope", ["top_label", "classwise"])
@pytest.mark.parametrize("seed", [0, 3])
def test_l1_debiasing_matches_the_package_given_the_same_draws(backend, monkeypatch, scope, seed):
    """debias=True with norm="l1" is the package's normal_debiased_ce (its resampling of
    each bin's accuracy) when the package is handed the same standard normal draws:
    lsr's are default_rng(seed).standard_normal((1000, n_bins, C)), draw r of a bin and
    column at [r, b, c]; the package draws per column (class), then per resample."""
    import calibration

    probs, labels, n_bins = _case("random")  # equal-mass bins: two or more examples each
    columns = 1 if scope == "top_label" else probs.shape[1]
    normals = np.random.default_rng(seed).standard_normal((1000, n_bins, columns))
    order = iter([(r, c) for c in range(columns) for r in range(1000)])

    def same_draw(loc, scale):
        r, c = next(order)
        return loc + scale * normals[r, :, c]

    monkeypatch.setattr(calibration.utils.np.random, "normal", same_draw)
    mode = {"top_label": "top-label", "classwise": "marginal"}[scope]
    expected = calibration.lower_bound_scaling_ce(
        probs, labels, p=1, debias=True, num_bins=n_bins,
        binning_scheme=calibration.get_equal_bins, mode=mode,
    )  # fmt: skip
    assert next(order, None) is None  # every draw was used, in that order
    options = dict(n_bins=n_bins, binning="equal_mass", scope=scope)
    actual = _ece(backend, probs, labels, debias=True, seed=seed, **options)
    assert_close(actual, expected, "float64")
    # The correction is not nothing, and the seed is what makes it reproducible.
    plugin = _ece(backend, probs, labels, **options)
    assert abs(actual - plugin) > 1e-4
    assert _ece(backend, probs, labels, debias=True, seed=seed, **options) == actual
    other = _ece(backend, probs, labels, debias=True, seed=seed + 1, **options)
    assert other != actual


def test_l1_debiasing_of_thin_and_empty_bins(backend):
    """Bins the package refuses (fewer than two examples) are defined here: an empty bin
    weighs nothing and a bin of one example has a 0/1 accuracy of variance 0, so one
    example per bin leaves the l1 error as it is; a bin of several is corrected."""
    probs = np.array([[0.95, 0.05], [0.55, 0.45], [0.65, 0.35]])
    labels = np.array([0, 1, 0])
    options = dict(n_bins=10, scope="top_label")  # three bins of one, seven empty
    plugin = _ece(backend, probs, labels, **options)
    assert _ece(backend, probs, labels, debias=True, **options) == pytest.approx(plugin, abs=1e-12)
    many = np.repeat(probs, 5, axis=0)
    many_labels = np.tile(labels, 5)
    corrected = _ece(backend, many, many_labels, debias=True, **options)
    assert np.isfinite(corrected)
    assert corrected != pytest.approx(_ece(backend, many, many_labels, **options), abs=1e-6)


@needs_reference
def test_guo_ece_matches_the_package(backend):
    # The package's get_ece (Guo et al.'s equal-width top-label ECE) and get_ece_em.
    import calibration

    probs, labels, _ = _case("random")
    for binning, function in [
        ("equal_width", calibration.get_ece),
        ("equal_mass", calibration.get_ece_em),
    ]:
        for n_bins in (1, 10, 15):
            expected = function(probs, labels, num_bins=n_bins)
            actual = _ece(backend, probs, labels, n_bins=n_bins, binning=binning)
            assert_close(actual, expected, "float64")


@needs_reference
@pytest.mark.parametrize("case", CASES)
def test_equal_mass_edges_match_the_package(backend, case):
    import calibration

    probs, labels, n_bins = _case(case)
    diagram = metrics.reliability_diagram(
        backend.asarray(probs),
        backend.asarray(labels),
        n_bins=n_bins,
        from_logits=False,
        binning="equal_mass",
    )
    edges = backend.to_numpy(diagram.edges)
    assert edges.shape == (n_bins + 1,)
    assert edges[0] == 0.0
    # The package lists the edges after 0 without repeats; ours repeat where values tie
    # (and are 1 past min(n_bins, N) parts).
    expected = calibration.get_equal_bins(list(probs.max(axis=1)), num_bins=n_bins)
    np.testing.assert_array_equal(np.unique(edges[1:]), np.asarray(expected, dtype=np.float64))
    # Without ties, the bins hold floor(N / n) or ceil(N / n) examples each.
    counts = backend.to_numpy(diagram.count)
    assert counts.sum() == len(labels)
    if case == "random":
        assert set(counts.tolist()) <= {len(labels) // n_bins, -(-len(labels) // n_bins)}


# ------------------------------------------------------------------- properties


@pytest.mark.parametrize("scope", ["top_label", "classwise"])
@pytest.mark.parametrize("debias", [False, True])
def test_equal_mass_ignores_the_order_of_examples(backend, scope, debias):
    probs, labels, n_bins = _case("random")
    order = np.random.default_rng(9).permutation(len(labels))
    values = [
        _ece(
            backend,
            p,
            y,
            n_bins=n_bins,
            norm="l2",
            binning="equal_mass",
            scope=scope,
            debias=debias,
        )
        for p, y in [(probs, labels), (probs[order], labels[order])]
    ]
    assert_close(values[0], values[1], "float64")
    assert values[0] > 0.0


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("binning", ["equal_width", "equal_mass"])
def test_classwise_with_the_class_axis_anywhere(backend, axis, binning):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 5, 4))  # (B, T, K)
    labels = rng.integers(0, 4, size=(3, 5))
    flat = logits.reshape(-1, 4)
    probs = np.exp(flat) / np.exp(flat).sum(axis=1, keepdims=True)
    expected = _ece(
        backend, probs, labels.reshape(-1), n_bins=4, binning=binning, scope="classwise"
    )
    moved = np.moveaxis(logits, -1, axis)
    actual = metrics.expected_calibration_error(
        backend.asarray(moved),
        backend.asarray(labels),
        n_bins=4,
        axis=axis,
        binning=binning,
        scope="classwise",
    )
    assert_close(backend.to_numpy(actual), expected, "float64")
    # Shuffling the classes of only some examples changes the classwise error: the test sees
    # which probability goes with which label.
    shuffled = probs.copy()
    shuffled[::2] = shuffled[::2, ::-1]
    other = _ece(
        backend, shuffled, labels.reshape(-1), n_bins=4, binning=binning, scope="classwise"
    )
    assert abs(other - expected) > 1e-6


# ------------------------------------------------------------------ bad options


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        (
            {"binning": "quantile"},
            ValueError,
            r"`binning` must be one of 'equal_width', 'equal_mass'.*Received: binning='quantile'",
        ),
        (
            {"scope": "marginal"},
            ValueError,
            r"`scope` must be one of 'top_label', 'classwise'.*Received: scope='marginal'",
        ),
        ({"debias": "yes"}, TypeError, r"`debias` must be True or False.*Received: debias='yes'"),
        ({"debias": 1}, TypeError, r"Received: debias=1"),
        (
            {"debias": True, "norm": "max"},
            ValueError,
            r"not for the maximum.*Received: norm='max'",
        ),
        ({"seed": -1}, ValueError, r"non-negative.*Received: seed=-1"),
        ({"seed": "0"}, TypeError, r"Generator.*Received: seed='0'"),
        (
            {"binning": "equal_mass", "bin_edges": "left"},
            ValueError,
            r"binning='equal_mass'.*\(lo, hi\] bins.*Received: bin_edges='left'",
        ),
        (
            {"binning": "equal_mass", "n_bins": 0},
            ValueError,
            r"`n_bins` must be an integer >= 1.*Received: n_bins=0",
        ),
    ],
)
def test_bad_options(backend, options, error, pattern):
    probs, labels = backend.asarray(PROBS), backend.asarray(LABELS)
    with pytest.raises(error, match=pattern):
        metrics.expected_calibration_error(probs, labels, from_logits=False, **options)


def test_reliability_diagram_bad_binning(backend):
    probs, labels = backend.asarray(PROBS), backend.asarray(LABELS)
    with pytest.raises(ValueError, match=r"Received: binning='equal'"):
        metrics.reliability_diagram(probs, labels, from_logits=False, binning="equal")
    with pytest.raises(ValueError, match=r"Received: bin_edges='left'"):
        metrics.reliability_diagram(
            probs, labels, from_logits=False, binning="equal_mass", bin_edges="left"
        )


# ----------------------------------------------------------------------- jax.jit

if "jax" in selected_backends():
    # Collected only in sessions that select JAX (tests/conftest.py's rule: no skips for a
    # missing framework).

    JIT_OPTIONS = [
        (binning, scope, norm, debias)
        for binning in ("equal_width", "equal_mass")
        for scope in ("top_label", "classwise")
        for norm, _, debias in [*ESTIMATORS, ("max", None, False)]
    ]

    @pytest.mark.parametrize(("binning", "scope", "norm", "debias"), JIT_OPTIONS)
    def test_same_number_under_jax_jit(binning, scope, norm, debias):
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        rng = np.random.default_rng(8)
        logits = jnp.asarray(rng.normal(scale=2.0, size=(45, 4)))
        labels = jnp.asarray(rng.integers(0, 4, size=45))
        options = {
            "n_bins": 6,
            "norm": norm,
            "binning": binning,
            "scope": scope,
            "debias": debias,
        }

        @jax.jit
        def traced(z, y):
            return metrics.expected_calibration_error(z, y, **options)

        eager = metrics.expected_calibration_error(logits, labels, **options)
        jitted = traced(logits, labels)
        np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-12, atol=1e-15)
        assert float(eager) > 0.0
        # A label out of range cannot be checked while tracing: the result is NaN.
        assert np.isnan(traced(logits, labels.at[0].set(9)))


def test_a_confidence_on_an_edge_falls_in_the_same_bin_on_every_backend(backend):
    """The edges are j / n_bins correctly rounded on every backend (XLA would otherwise
    multiply by the reciprocal: 6 * 0.1 = 0.6000000000000001): with [lo, hi) bins a
    confidence of exactly 0.6 opens the bin [0.6, 0.7)."""
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.95, 0.05]])
    labels = np.array([0, 1, 0])
    diagram = metrics.reliability_diagram(
        backend.asarray(probs),
        backend.asarray(labels),
        n_bins=10,
        from_logits=False,
        bin_edges="left",
    )
    count = backend.to_numpy(diagram.count)
    assert count[6] == 2 and count[5] == 0 and count[9] == 1
    assert backend.to_numpy(diagram.edges)[6] == 0.6


if "tensorflow" in selected_backends():

    def test_a_batch_of_unknown_size_under_tf_function():
        """Equal-width bins trace with an unknown batch size (the same number as
        eagerly); equal-mass bins need the size and say so."""
        import tensorflow as tf

        probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], np.float32)
        labels = np.array([0, 1, 2], np.int32)
        spec = [tf.TensorSpec([None, 3]), tf.TensorSpec([None], tf.int32)]

        @tf.function(input_signature=spec)
        def equal_width(p, y):
            return metrics.expected_calibration_error(p, y, n_bins=3, from_logits=False)

        @tf.function(input_signature=spec)
        def equal_mass(p, y):
            return metrics.expected_calibration_error(
                p, y, n_bins=3, from_logits=False, binning="equal_mass"
            )

        eager = metrics.expected_calibration_error(probs, labels, n_bins=3, from_logits=False)
        assert_close(float(equal_width(probs, labels)), float(eager), "float32")
        with pytest.raises(ValueError, match=r"must be known when tracing.*Received: "):
            equal_mass(probs, labels)


@pytest.mark.parametrize(
    ("strategy", "binning"), [("uniform", "equal_width"), ("quantile", "equal_mass")]
)
@pytest.mark.parametrize("n_bins", [5, 8])
def test_bins_hold_what_scikit_learns_calibration_curve_bins(backend, strategy, binning, n_bins):
    """Binary scores whose positive probability p is always above 0.5, so that the
    top-label confidence is p and its correctness the label: lsr's reliability diagram
    (non-empty bins) is scikit-learn's ``calibration_curve(y, p)``: ``prob_pred`` the
    mean confidence, ``prob_true`` the accuracy. N = 480 is a multiple of both numbers
    of bins, and the values are distinct (see the module docstring)."""
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(n_bins)
    p = 0.5 + 0.5 * rng.beta(2.0, 1.2, size=480)
    labels = (rng.random(480) < p).astype(np.int64)
    assert len(np.unique(p)) == 480 and p.min() > 0.5
    prob_true, prob_pred = calibration_curve(labels, p, n_bins=n_bins, strategy=strategy)
    diagram = metrics.reliability_diagram(
        backend.asarray(np.stack([1 - p, p], axis=1)),
        backend.asarray(labels),
        n_bins=n_bins,
        from_logits=False,
        binning=binning,
    )
    count = backend.to_numpy(diagram.count)
    kept = count > 0
    assert kept.sum() == len(prob_true)
    assert_close(backend.to_numpy(diagram.confidence)[kept], prob_pred, "float64")
    assert_close(backend.to_numpy(diagram.accuracy)[kept], prob_true, "float64")
