"""lsr.metrics on every selected backend, against plain float64 references and published values."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

import lsr
from lsr import metrics
from tests.backends import assert_close

K = 5


# ----------------------------------------------------------------- plain references


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference_bins(scores, labels, n_bins, rule, from_logits=True):
    """Per-bin (confidence, accuracy, count), one example and one bin at a time."""
    probs = _softmax(scores) if from_logits else np.asarray(scores, dtype=np.float64)
    confidence = np.zeros(n_bins)
    accuracy = np.zeros(n_bins)
    count = np.zeros(n_bins)
    for row, label in zip(probs, labels, strict=True):
        top = float(np.max(row))
        correct = float(int(np.argmax(row)) == int(label))
        for b in range(n_bins):
            lo, hi = b / n_bins, (b + 1) / n_bins
            if rule == "right":
                inside = (lo < top <= hi) or (b == 0 and top == 0.0)
            else:
                inside = (lo <= top < hi) or (b == n_bins - 1 and top == 1.0)
            if inside:
                confidence[b] += top
                accuracy[b] += correct
                count[b] += 1
                break
    for b in range(n_bins):
        if count[b]:
            confidence[b] /= count[b]
            accuracy[b] /= count[b]
    return confidence, accuracy, count


def reference_ece(scores, labels, n_bins, norm, rule, from_logits=True):
    confidence, accuracy, count = reference_bins(scores, labels, n_bins, rule, from_logits)
    total = count.sum()
    gaps = [abs(accuracy[b] - confidence[b]) for b in range(n_bins) if count[b]]
    weights = [count[b] / total for b in range(n_bins) if count[b]]
    if norm == "max":
        return max(gaps)
    if norm == "l1":
        return sum(w * g for w, g in zip(weights, gaps, strict=True))
    return np.sqrt(sum(w * g * g for w, g in zip(weights, gaps, strict=True)))


def reference_nll(logits, labels, temperature=1.0):
    logp = np.log(_softmax(np.asarray(logits, dtype=np.float64) / temperature))
    return -np.mean([logp[i, int(y)] for i, y in enumerate(labels)])


def _case(seed, n=64, num_classes=K, scale=2.0):
    """Logits whose argmax is right about 60% of the time (a realistic mix of bins)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=scale, size=(n, num_classes))
    labels = np.where(
        rng.random(n) < 0.6, np.argmax(logits, axis=1), rng.integers(0, num_classes, n)
    )
    return logits, labels


# ------------------------------------------------------------------ calibration error

CALIBRATION_CONFIGS = list(
    itertools.product(["l1", "l2", "max"], ["right", "left"], [True, False], [1, 7, 15])
)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("norm", "rule", "from_logits", "n_bins"), CALIBRATION_CONFIGS)
def test_ece_matches_reference(backend, dtype, norm, rule, from_logits, n_bins):
    logits, labels = _case(seed=n_bins)
    scores = (logits if from_logits else _softmax(logits)).astype(dtype)
    expected = reference_ece(scores, labels, n_bins, norm, rule, from_logits)
    actual = metrics.expected_calibration_error(
        backend.asarray(scores),
        backend.asarray(labels),
        n_bins=n_bins,
        norm=norm,
        from_logits=from_logits,
        bin_edges=rule,
    )
    assert actual.shape == ()
    assert_close(backend.to_numpy(actual), expected, dtype, scale=10.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", ["right", "left"])
def test_reliability_diagram_matches_reference(backend, dtype, rule):
    logits, labels = _case(seed=3, n=80)
    logits = logits.astype(dtype)
    diagram = metrics.reliability_diagram(
        backend.asarray(logits), backend.asarray(labels), n_bins=10, bin_edges=rule
    )
    confidence, accuracy, count = reference_bins(logits, labels, 10, rule)
    np.testing.assert_array_equal(backend.to_numpy(diagram.count), count)
    assert_close(backend.to_numpy(diagram.confidence), confidence, dtype, scale=10.0)
    assert_close(backend.to_numpy(diagram.accuracy), accuracy, dtype)
    assert_close(backend.to_numpy(diagram.edges), np.linspace(0.0, 1.0, 11), dtype)
    assert count.sum() == len(labels)


# Published: torchmetrics' documentation example of MulticlassCalibrationError (n_bins=3),
# given there to 4 decimals: l1 0.2000, l2 0.2082, max 0.2333.
TORCHMETRICS_DOC_PROBS = [
    [0.25, 0.20, 0.55],
    [0.55, 0.05, 0.40],
    [0.10, 0.30, 0.60],
    [0.90, 0.05, 0.05],
]
TORCHMETRICS_DOC_LABELS = [0, 1, 2, 0]


@pytest.mark.parametrize(("norm", "published"), [("l1", 0.2), ("l2", 0.2082), ("max", 0.2333)])
@pytest.mark.parametrize("rule", ["right", "left"])  # no confidence lies on an edge here
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torchmetrics_documentation_example(backend, norm, published, rule, dtype):
    ece = metrics.expected_calibration_error(
        backend.asarray(TORCHMETRICS_DOC_PROBS, dtype),
        backend.asarray(TORCHMETRICS_DOC_LABELS),
        n_bins=3,
        norm=norm,
        from_logits=False,
        bin_edges=rule,
    )
    np.testing.assert_allclose(float(backend.to_numpy(ece)), published, atol=5e-5)


def _calibrated_by_construction():
    """Two classes; 20 examples at each confidence c, of which exactly 20c are right.

    Each c sits in the middle of one of 10 bins, so every bin's accuracy equals its
    confidence and the calibration error is 0 under every norm and bin rule.
    """
    probs, labels = [], []
    for c, n_right in [(0.55, 11), (0.65, 13), (0.75, 15), (0.85, 17), (0.95, 19)]:
        for i in range(20):
            probs.append([c, 1.0 - c])
            labels.append(0 if i < n_right else 1)
    return np.array(probs), np.array(labels)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("rule", ["right", "left"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_perfectly_calibrated_model_has_zero_error(backend, norm, rule, dtype):
    probs, labels = _calibrated_by_construction()
    for scores, from_logits in [(probs, False), (np.log(probs), True)]:
        ece = metrics.expected_calibration_error(
            backend.asarray(scores, dtype),
            backend.asarray(labels),
            n_bins=10,
            norm=norm,
            from_logits=from_logits,
            bin_edges=rule,
        )
        assert_close(backend.to_numpy(ece), 0.0, dtype, scale=10.0)
    # Moving one right example to wrong breaks it: the test can fail.
    labels[0] = 1
    ece = metrics.expected_calibration_error(
        backend.asarray(probs, dtype), backend.asarray(labels), n_bins=10, from_logits=False
    )
    assert float(backend.to_numpy(ece)) > 0.009


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_invariant_to_permuting_examples(backend, seed, norm):
    logits, labels = _case(seed)
    order = np.random.default_rng(100 + seed).permutation(len(labels))
    values = [
        backend.to_numpy(
            metrics.expected_calibration_error(
                backend.asarray(z), backend.asarray(y), n_bins=10, norm=norm
            )
        )
        for z, y in [(logits, labels), (logits[order], labels[order])]
    ]
    assert_close(values[0], values[1], "float64")


def test_bin_edge_rules(backend):
    # Confidences exactly on the edges 0.25, 0.5 and 1 of four bins.
    probs = np.array(
        [[0.25, 0.25, 0.25, 0.25], [0.5, 0.25, 0.25, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.8, 0.2, 0]]
    )
    labels = np.array([0, 0, 2, 1])
    counts = {
        rule: backend.to_numpy(
            metrics.reliability_diagram(
                backend.asarray(probs),
                backend.asarray(labels),
                n_bins=4,
                from_logits=False,
                bin_edges=rule,
            ).count
        )
        for rule in ("right", "left")
    }
    # (lo, hi]: 0.25 -> bin 0, 0.5 -> bin 1, 0.8 and 1.0 -> bin 3.
    np.testing.assert_array_equal(counts["right"], [1, 1, 0, 2])
    # [lo, hi): 0.25 -> bin 1, 0.5 -> bin 2, 0.8 -> bin 3 and 1.0 -> the closed last bin.
    np.testing.assert_array_equal(counts["left"], [0, 1, 1, 2])


@pytest.mark.parametrize("axis", [0, 1])
def test_class_axis_anywhere(backend, axis):
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(4, 6, K))  # (B, T, K)
    labels = rng.integers(0, K, size=(4, 6))
    expected = reference_ece(logits.reshape(-1, K), labels.reshape(-1), 5, "l1", "right")
    moved = np.moveaxis(logits, -1, axis)
    actual = metrics.expected_calibration_error(
        backend.asarray(moved), backend.asarray(labels), n_bins=5, axis=axis
    )
    assert_close(backend.to_numpy(actual), expected, "float64")


# ------------------------------------------------------------------------------ NLL


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_negative_log_likelihood(backend, dtype):
    logits, labels = _case(seed=11)
    logits = logits.astype(dtype)
    expected = reference_nll(logits, labels)
    from_logits = metrics.negative_log_likelihood(backend.asarray(logits), backend.asarray(labels))
    from_probs = metrics.negative_log_likelihood(
        backend.asarray(_softmax(logits).astype(dtype)), backend.asarray(labels), from_logits=False
    )
    assert_close(backend.to_numpy(from_logits), expected, dtype)
    assert_close(backend.to_numpy(from_probs), expected, dtype, scale=10.0)
    plain_ce = lsr.smooth_ce(backend.asarray(logits), backend.asarray(labels), smoothing=0.0)
    assert_close(backend.to_numpy(from_logits), backend.to_numpy(plain_ce), dtype)


# --------------------------------------------------------------- temperature scaling


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", range(3))
def test_fit_temperature_matches_scipy(backend, dtype, seed):
    logits, labels = _case(seed, n=200, scale=3.0)
    logits = logits.astype(dtype)
    found = metrics.fit_temperature(backend.asarray(logits), backend.asarray(labels))
    assert isinstance(found, float)
    best = minimize_scalar(
        lambda t: reference_nll(logits, labels, t),
        bounds=(0.05, 20.0),
        method="bounded",
        options={"xatol": 1e-10},
    )
    np.testing.assert_allclose(found, best.x, rtol=1e-6)
    # The fitted temperature is a minimum: nudging it either way does not help.
    at_found = reference_nll(logits, labels, found)
    assert at_found <= reference_nll(logits, labels, found * 1.01)
    assert at_found <= reference_nll(logits, labels, found / 1.01)


@pytest.mark.parametrize("planted", [0.5, 2.5])
def test_fit_temperature_recovers_planted_temperature(backend, planted):
    # Labels drawn from softmax(z / T0): T0 is the maximum-likelihood temperature in the limit.
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=3.0, size=(20000, 4))
    probs = _softmax(logits / planted)
    labels = (rng.random((len(logits), 1)) > np.cumsum(probs, axis=1)).sum(axis=1)
    found = metrics.fit_temperature(backend.asarray(logits), backend.asarray(labels))
    assert abs(found / planted - 1.0) < 0.05, found


def test_fit_temperature_at_the_bounds(backend):
    confident_and_right = np.array([[5.0, 0.0], [0.0, 5.0]])
    labels = backend.asarray(np.array([0, 1]))
    # Always right: the NLL keeps falling as T -> 0, so the lower bound is returned.
    assert metrics.fit_temperature(backend.asarray(confident_and_right), labels) == 0.05
    assert metrics.fit_temperature(
        backend.asarray(confident_and_right), labels, bounds=(0.5, 3.0)
    ) == (0.5)
    # Always wrong: it keeps falling as T -> infinity.
    wrong = backend.asarray(np.array([1, 0]))
    assert metrics.fit_temperature(backend.asarray(confident_and_right), wrong) == 20.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_apply_temperature(backend, dtype):
    logits, _ = _case(seed=1)
    logits = logits.astype(dtype)
    scaled = metrics.apply_temperature(backend.asarray(logits), 1.7)
    assert backend.to_numpy(scaled).dtype == np.dtype(dtype)
    assert_close(backend.to_numpy(scaled), logits.astype(np.float64) / 1.7, dtype)
    as_array = metrics.apply_temperature(backend.asarray(logits), backend.asarray(1.7, dtype))
    assert_close(backend.to_numpy(as_array), logits.astype(np.float64) / 1.7, dtype)


# ------------------------------------------------------------ penultimate projection


def _reference_projection(features, templates):
    """Coordinates from numpy's QR of the two template differences, signs aligned."""
    differences = np.stack([templates[1] - templates[0], templates[2] - templates[0]], axis=1)
    q, r = np.linalg.qr(differences)
    q = q * np.sign(np.diag(r))  # Gram-Schmidt's basis has a positive diagonal
    return (features - templates[0]) @ q, q.T


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_penultimate_projection(backend, dtype, layout):
    rng = np.random.default_rng(2)
    weights = rng.normal(size=(6, 8))  # (K, D)
    features = rng.normal(size=(30, 8))
    classes = (4, 1, 3)
    expected_coords, expected_basis = _reference_projection(features, weights[list(classes)])
    given = weights if layout == "rows" else weights.T
    coords, basis = metrics.penultimate_projection(
        backend.asarray(features.astype(dtype)), backend.asarray(given.astype(dtype)), classes
    )
    assert_close(backend.to_numpy(basis), expected_basis, dtype, scale=10.0)
    assert_close(backend.to_numpy(coords), expected_coords, dtype, scale=10.0)
    basis = backend.to_numpy(basis).astype(np.float64)
    assert_close(basis @ basis.T, np.eye(2), dtype, scale=10.0)


def test_projection_keeps_distances_within_the_plane(backend):
    rng = np.random.default_rng(4)
    templates = rng.normal(size=(3, 5))
    mix = rng.random((10, 2))
    in_plane = templates[0] + mix[:, :1] * (templates[1] - templates[0])
    in_plane = in_plane + mix[:, 1:] * (templates[2] - templates[0])
    weights = np.concatenate([templates, rng.normal(size=(3, 5))])  # (K=6, D=5)
    coords, _ = metrics.penultimate_projection(
        backend.asarray(in_plane), backend.asarray(weights), (0, 1, 2)
    )
    coords = backend.to_numpy(coords)
    for i, j in itertools.combinations(range(10), 2):
        np.testing.assert_allclose(
            np.linalg.norm(coords[i] - coords[j]), np.linalg.norm(in_plane[i] - in_plane[j])
        )


def test_square_weights_need_class_axis(backend):
    weights = np.diag([1.0, 2.0, 3.0])
    features = backend.asarray(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"square.*pass class_axis.*Received: class_axis=None"):
        metrics.penultimate_projection(features, backend.asarray(weights), (0, 1, 2))
    rows = metrics.penultimate_projection(
        features, backend.asarray(weights), (0, 1, 2), class_axis=0
    )
    columns = metrics.penultimate_projection(
        features, backend.asarray(weights.T), (0, 1, 2), class_axis=1
    )
    assert_close(backend.to_numpy(rows.coords), backend.to_numpy(columns.coords), "float64")


@pytest.mark.parametrize(
    ("classes", "pattern"),
    [
        ((0, 1), r"three distinct integer class ids.*Received: classes=\(0, 1\)"),
        ((0, 1, 1), r"three distinct.*Received: classes=\(0, 1, 1\)"),
        ((0, 1, 9), r"class ids in \[0, 4\).*Received: classes=\(0, 1, 9\)"),
        ((0, 1.0, 2), r"three distinct integer"),
        ((0, 1, 3), r"lie on one line.*Received: classes=\(0, 1, 3\)"),
    ],
)
def test_projection_bad_classes(backend, classes, pattern):
    weights = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, -1.0], [2.0, 2.0]])  # (K=4, D=2)
    with pytest.raises(ValueError, match=pattern):
        metrics.penultimate_projection(
            backend.asarray(np.zeros((3, 2))), backend.asarray(weights), classes
        )


def test_projection_bad_shapes(backend):
    weights = backend.asarray(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"`features` must have shape \(N, D\)"):
        metrics.penultimate_projection(backend.asarray(np.ones(3)), weights, (0, 1, 2))
    with pytest.raises(ValueError, match=r"\(K, D\) or \(D, K\) with D = 5"):
        metrics.penultimate_projection(backend.asarray(np.ones((2, 5))), weights, (0, 1, 2))
    with pytest.raises(TypeError, match=r"`class_weights` must have a real floating dtype"):
        metrics.penultimate_projection(
            backend.asarray(np.ones((2, 3))), backend.asarray(np.ones((4, 3), int)), (0, 1, 2)
        )


# ------------------------------------------------------------------------ bad input


@pytest.fixture
def scored(backend):
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    return backend, backend.asarray(probs), backend.asarray(np.array([0, 2]))


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"n_bins": 0}, ValueError, r"`n_bins` must be an integer >= 1.*Received: n_bins=0"),
        ({"n_bins": 1.5}, TypeError, r"`n_bins` must be an integer.*Received: n_bins=1.5"),
        ({"n_bins": True}, TypeError, r"Received: n_bins=True"),
        ({"norm": "l3"}, ValueError, r"`norm` must be one of.*Received: norm='l3'"),
        ({"bin_edges": "both"}, ValueError, r"`bin_edges` must be one of.*bin_edges='both'"),
        ({"from_logits": "no"}, TypeError, r"`from_logits` must be True or False"),
        ({"axis": 2}, ValueError, r"`axis` is out of range.*Received: axis=2"),
    ],
)
def test_bad_options(scored, options, error, pattern):
    _, probs, labels = scored
    with pytest.raises(error, match=pattern):
        metrics.expected_calibration_error(probs, labels, **options)


def test_labels_out_of_range(scored):
    backend, probs, _ = scored
    for function in (metrics.expected_calibration_error, metrics.fit_temperature):
        with pytest.raises(ValueError, match=r"integers in \[0, 3\).*min=3, max=3"):
            function(probs, backend.asarray(np.array([0, 3])))
        with pytest.raises(ValueError, match=r"min=-1, max=-1"):
            function(probs, backend.asarray(np.array([-1, 0])))


def test_probabilities_must_be_distributions(scored):
    backend, _, labels = scored
    not_summing = backend.asarray(np.array([[0.7, 0.2, 0.2], [0.1, 0.1, 0.8]]))
    with pytest.raises(ValueError, match=r"must sum to 1.*differ from 1 by up to 0.1"):
        metrics.expected_calibration_error(not_summing, labels, from_logits=False)
    logits = backend.asarray(np.array([[2.0, -1.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*from_logits=True"):
        metrics.reliability_diagram(logits, labels, from_logits=False)
    # The same logits are fine as logits.
    metrics.expected_calibration_error(logits, labels)


def test_bad_labels_and_shapes(scored):
    backend, probs, labels = scored
    with pytest.raises(TypeError, match=r"`labels` must be integer class ids"):
        metrics.expected_calibration_error(probs, backend.asarray(np.array([0.0, 2.0])))
    with pytest.raises(ValueError, match=r"without the class axis 1, \(2,\)"):
        metrics.expected_calibration_error(probs, backend.asarray(np.array([0, 1, 2])))
    with pytest.raises(TypeError, match=r"`logits_or_probs` must have a real floating dtype"):
        metrics.expected_calibration_error(backend.asarray(np.ones((2, 3), dtype=int)), labels)


@pytest.mark.parametrize("shape", [(0, 3), (2, 0)])
def test_empty_input(backend, shape):
    scores = backend.asarray(np.zeros(shape))
    labels = backend.asarray(np.zeros(shape[:1], dtype=np.int64))
    for function in (
        metrics.expected_calibration_error,
        metrics.reliability_diagram,
        metrics.fit_temperature,
        metrics.negative_log_likelihood,
    ):
        with pytest.raises(ValueError, match=r"at least one example and one class"):
            function(scores, labels)


@pytest.mark.parametrize(
    ("bounds", "pattern"),
    [
        ((0.0, 5.0), r"0 < T_min < T_max.*Received: bounds=\(0.0, 5.0\)"),
        ((3.0, 2.0), r"Received: bounds=\(3.0, 2.0\)"),
        ((1.0,), r"Received: bounds=\(1.0,\)"),
        ("wide", r"Received: bounds='wide'"),
    ],
)
def test_fit_temperature_bad_bounds(scored, bounds, pattern):
    _, probs, labels = scored
    with pytest.raises(ValueError, match=pattern):
        metrics.fit_temperature(probs, labels, bounds=bounds)


@pytest.mark.parametrize(
    ("temperature", "error", "pattern"),
    [
        (0.0, ValueError, r"finite and > 0.*Received: temperature=0.0"),
        (-1.0, ValueError, r"Received: temperature=-1.0"),
        (float("nan"), ValueError, r"Received: temperature=nan"),
        (True, TypeError, r"positive number.*Received: temperature=True"),
        ("2", TypeError, r"Received: temperature='2'"),
    ],
)
def test_apply_temperature_bad(scored, temperature, error, pattern):
    _, probs, _ = scored
    with pytest.raises(error, match=pattern):
        metrics.apply_temperature(probs, temperature)


# ------------------------------------------------------------------------- plotting


def _plot_both(backend, tmp_path):
    logits, labels = _case(seed=9)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(labels), 6))
    weights = rng.normal(size=(K, 6))
    paths = [tmp_path / "reliability.png", tmp_path / "projection.png"]
    metrics.plot_reliability_diagram(
        backend.asarray(logits), backend.asarray(labels), n_bins=10, save_path=paths[0]
    )
    metrics.plot_penultimate_projection(
        backend.asarray(features),
        backend.asarray(labels),
        backend.asarray(weights),
        (0, 1, 2),
        title="test",
        save_path=paths[1],
    )
    return paths


def test_plots_without_matplotlib_say_what_to_install(backend, tmp_path, monkeypatch):
    # A None entry in sys.modules makes `import matplotlib...` raise ImportError.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(
        ImportError, match=r"plot_reliability_diagram needs matplotlib.*`pip install matplotlib`"
    ):
        _plot_both(backend, tmp_path)


def test_plots_are_saved_as_png(backend, tmp_path):
    # Run in every session: where matplotlib is missing, the clear ImportError is the result.
    if importlib.util.find_spec("matplotlib") is None:
        with pytest.raises(ImportError, match=r"needs matplotlib"):
            _plot_both(backend, tmp_path)
        return
    for path in _plot_both(backend, tmp_path):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(data) > 5000


def test_bad_histogram_option():
    logits, labels = _case(seed=8)
    with pytest.raises(
        TypeError, match=r"`histogram` must be True or False.*Received: histogram='no'"
    ):
        metrics.plot_reliability_diagram(logits, labels, histogram="no")


# ------------------------------------------------------------- package and imports

PUBLIC = {
    "CalibrationInterval",
    "CalibrationState",
    "PenultimateProjection",
    "ReliabilityDiagram",
    "apply_temperature",
    "calibration_error_from_state",
    "calibration_error_interval",
    "calibration_state",
    "expected_calibration_error",
    "fit_temperature",
    "merge_calibration_states",
    "negative_log_likelihood",
    "update_calibration_state",
    "penultimate_projection",
    "plot_penultimate_projection",
    "plot_reliability_diagram",
    "reliability_diagram",
}


def test_public_names_stay_at_lsr_metrics():
    assert set(metrics.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(lsr.metrics, name).__module__ == "lsr.metrics", name


def _modules_after(code):
    script = f"import sys\n{code}\nprint(','.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return {name.split(".")[0] for name in result.stdout.strip().split(",")}


def test_import_lsr_metrics_imports_no_framework_numpy_or_matplotlib():
    unwanted = {"jax", "torch", "tensorflow", "keras", "numpy", "matplotlib"}
    assert _modules_after("import lsr.metrics") & unwanted == set()
    # The check sees what a call imports: here NumPy (the input) and, if installed,
    # matplotlib (the figure).
    drawn = _modules_after(
        "import numpy as np\nimport lsr.metrics\n"
        "try:\n"
        "    lsr.metrics.plot_reliability_diagram(np.array([[1.0, 0.0]]), np.array([0]))\n"
        "except ImportError:\n"
        "    pass"
    )
    assert "numpy" in drawn
    assert ("matplotlib" in drawn) == (importlib.util.find_spec("matplotlib") is not None)
