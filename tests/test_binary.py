"""The smoothed binary (sigmoid, multi-label) cross-entropy on every selected namespace,
against the float64 reference written from the definition (tests/reference.py) and the
published conventions' own formulas."""

from __future__ import annotations

import numpy as np
import pytest

import lsr
from lsr import _compat, _core
from lsr._checks_binary import prepare_smooth_bce
from tests import reference
from tests.backends import assert_close, selected_backends
from tests.conftest import get_backend

N, K = 5, 4
RNG = np.random.default_rng(0)
LOGITS = RNG.normal(scale=3.0, size=(N, K))
MULTI_HOT = RNG.integers(0, 2, size=(N, K))
SOFT = RNG.uniform(size=(N, K))
KEEP = RNG.uniform(size=(N, K)) > 0.3
LABEL_WEIGHTS = RNG.uniform(0.5, 2.0, size=K)
POS_WEIGHT = RNG.uniform(0.5, 3.0, size=K)
BASE_RATE = RNG.uniform(0.05, 0.5, size=K)

# name: (labels, lsr options, reference options)
CASES = {
    "multi-hot": (MULTI_HOT, {}, {}),
    "bool": (MULTI_HOT.astype(bool), {"smoothing": 0.2}, {"smoothing": 0.2}),
    "soft": (SOFT, {"smoothing": 0.3, "prior": 0.0}, {"smoothing": 0.3, "prior": 0.0}),
    "uniform": (MULTI_HOT, {"prior": "uniform"}, {"prior": 1.0 / K}),
    "base-rate": (MULTI_HOT, {"prior": BASE_RATE}, {"prior": BASE_RATE}),
    "weights": (
        MULTI_HOT,
        {"weight": LABEL_WEIGHTS, "pos_weight": POS_WEIGHT, "smoothing": 0.15},
        {"weight": LABEL_WEIGHTS, "pos_weight": POS_WEIGHT, "smoothing": 0.15},
    ),
    "where": (SOFT, {"where": KEEP}, {"keep": KEEP}),
    "ignore": (
        np.where(KEEP, MULTI_HOT, -1),
        {"ignore_index": -1, "pos_weight": POS_WEIGHT},
        {"keep": KEEP, "pos_weight": POS_WEIGHT},
    ),
}
DEFAULTS = {"smoothing": 0.1, "prior": 0.5}
# check_smooth_bce's keywords at lsr.smooth_bce's defaults.
_NO_OPTIONS = {
    "smoothing": 0.1,
    "prior": 0.5,
    "axis": -1,
    "weight": None,
    "pos_weight": None,
    "where": None,
    "ignore_index": None,
    "reduction": "mean",
}


def _arrays(backend, options):
    return {
        name: backend.asarray(value) if isinstance(value, np.ndarray) else value
        for name, value in options.items()
    }


def _reference_labels(labels):
    return np.where(labels < 0, 0, labels) if labels.dtype.kind == "i" else labels


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("case", list(CASES))
def test_loss_and_gradient_match_the_reference(backend, case, reduction):
    labels, options, expected_options = CASES[case]
    expected_options = {**DEFAULTS, **expected_options}
    rows = _reference_labels(labels)
    expected = reference.smooth_bce(LOGITS, rows, reduction=reduction, **expected_options)
    logits = backend.asarray(LOGITS)
    loss = lsr.smooth_bce(
        logits, backend.asarray(labels), reduction=reduction, **_arrays(backend, options)
    )
    assert_close(backend.to_numpy(loss), expected, "float64")

    # The gradient of sum(cotangent * loss), against central differences of the reference.
    cotangent = RNG.uniform(0.5, 1.5, size=LOGITS.shape) if reduction == "none" else 0.7
    expected_grad = reference.numerical_gradient(
        lambda z: np.sum(
            cotangent * reference.smooth_bce(z, rows, reduction=reduction, **expected_options)
        ),
        LOGITS,
    )
    xp, z, y, spec = prepare_smooth_bce(
        logits,
        backend.asarray(labels),
        **{**_NO_OPTIONS, "reduction": reduction, **_arrays(backend, options)},
    )
    _, denominator = _core.binary_loss(z, y, spec, xp=xp)
    scale = backend.asarray(cotangent) if reduction == "none" else cotangent
    grad = _core.binary_grad(z, y, denominator, scale, spec, xp=xp)
    np.testing.assert_allclose(backend.to_numpy(grad), expected_grad, rtol=1e-6, atol=1e-8)
    # The same loss and gradient from one exponential (the sigmoid from the loss's exp).
    both, both_denominator, unit_grad = _core.binary_loss_and_grad(z, y, spec, xp=xp)
    assert_close(backend.to_numpy(both), expected, "float64")
    assert float(both_denominator) == float(denominator)
    np.testing.assert_allclose(
        backend.to_numpy(unit_grad) * cotangent, expected_grad, rtol=1e-6, atol=1e-8
    )


def test_the_published_conventions(backend):
    """Each convention's targets from its own formula (Keras, TF1 and YOLOv5: towards 1/2;
    mmpretrain's multi-label mode: 1 - e and e; timm: 1 - e + e/K and e/K; one-sided;
    explicit on/off values), against smooth_binary_labels with binary_smoothing."""
    e = 0.1
    y = np.array([[1, 0, 0, 1], [0, 0, 1, 0]])
    published = [
        ("keras", {}, y * (1 - e) + 0.5 * e),  # keras.losses.binary_crossentropy
        ("tf1", {}, y * (1 - e) + 0.5 * e),  # tf.compat.v1.losses.sigmoid_cross_entropy
        ("yolo", {}, np.where(y == 1, 1.0 - 0.5 * e, 0.5 * e)),  # smooth_BCE: 1 - e/2, e/2
        ("mmpretrain", {}, np.where(y == 1, 1.0 - e, e)),
        ("timm", {"num_labels": 4}, np.where(y == 1, 1.0 - e + e / 4, e / 4)),
        ("one-sided", {}, np.where(y == 1, 1.0 - e, 0.0)),
    ]
    for convention, extra, targets in published:
        options = lsr.binary_smoothing(convention, e, **extra)
        actual = lsr.smooth_binary_labels(backend.asarray(y), dtype=backend.xp.float64, **options)
        np.testing.assert_allclose(
            backend.to_numpy(actual), targets, rtol=1e-12, err_msg=convention
        )
    options = lsr.binary_smoothing("on-off", positive=0.9, negative=0.05)
    actual = lsr.smooth_binary_labels(backend.asarray(y), dtype=backend.xp.float64, **options)
    np.testing.assert_allclose(backend.to_numpy(actual), np.where(y == 1, 0.9, 0.05), rtol=1e-12)


def test_extreme_logits_are_exact(backend):
    """softplus form: no overflow at |z| = 1e4 in float32; -inf with a zero target share
    costs 0 (not NaN), with a positive share +inf."""
    z = np.array([1e4, -1e4, 30.0, -30.0, -np.inf, np.inf, -np.inf], dtype=np.float32)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0], dtype=np.float32)
    loss = lsr.smooth_bce(backend.asarray(z), backend.asarray(y), smoothing=0.0, reduction="none")
    expected = [0.0, 0.0, 30.0, 30.0, 0.0, 0.0, np.inf]
    np.testing.assert_allclose(backend.to_numpy(loss), expected, rtol=1e-6)
    smoothed = lsr.smooth_bce(backend.asarray(z[:4]), backend.asarray(y[:4]), reduction="none")
    np.testing.assert_allclose(
        backend.to_numpy(smoothed),
        reference.smooth_bce(z[:4], y[:4], smoothing=0.1, prior=0.5, reduction="none"),
        rtol=1e-6,
    )


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_a_zero_weight_keeps_a_nan_logit_nan_and_makes_an_infinite_loss_zero(backend, reduction):
    """A weight of 0 on an element whose loss is +inf (a +inf logit, target 0) gives 0:
    the element carries no mass. On a NaN logit it gives NaN, as PyTorch's ``weight``
    does and as the gradient there is (eager PyTorch once gave 0 for that loss)."""
    z = np.array([[0.3, np.nan, 0.5, np.inf]], dtype=np.float32)
    y = np.array([[1.0, 0.0, 1.0, 0.0]], dtype=np.float32)
    w = np.array([1.0, 0.0, 2.0, 0.0], dtype=np.float32)
    got = backend.to_numpy(
        lsr.smooth_bce(
            backend.asarray(z),
            backend.asarray(y),
            smoothing=0.0,
            weight=backend.asarray(w),
            reduction=reduction,
        )
    )
    softplus = np.log1p(np.exp(-np.array([0.3, 0.5])))  # -log sigmoid(z), target 1
    if reduction == "none":
        expected = [[softplus[0], np.nan, 2 * softplus[1], 0.0]]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    else:
        assert np.isnan(got)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_confident_right_answers_keep_their_small_losses(backend, reduction):
    """Large logits of the right sign: each loss is tiny (or 0) and must not be lost to
    cancellation against the logits' size (softplus(z) - z, or sums of both); float32
    keeps 1e-6 relative accuracy on every element."""
    z = np.array([[1e10, 0.0, 8.0, 12.0], [16.0, 19.0, -25.0, -1e4]], dtype=np.float32)
    y = np.array([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    got = lsr.smooth_bce(backend.asarray(z), backend.asarray(y), smoothing=0.0, reduction=reduction)
    expected = reference.smooth_bce(z, y, smoothing=0.0, prior=0.5, reduction=reduction)
    np.testing.assert_allclose(backend.to_numpy(got), expected, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reductions_with_infinite_logits_are_exact(backend, reduction):
    """Infinite logits in a sum or mean: the terms without target share cost 0 (never
    0 * inf = NaN), a positive share at the wrong infinity makes the loss +inf."""
    z = np.array([[1e4, -np.inf, np.inf, 2.0], [-1.0, 0.5, -30.0, 3.0]])
    y = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    got = lsr.smooth_bce(backend.asarray(z), backend.asarray(y), smoothing=0.0, reduction=reduction)
    expected = reference.smooth_bce(z, y, smoothing=0.0, prior=0.5, reduction=reduction)
    assert np.isfinite(expected)
    assert_close(backend.to_numpy(got), expected, "float64")
    # The one-exponential form too: the sigmoid is 1 at +inf, 0 at -inf (no NaN).
    xp, logits, labels, spec = prepare_smooth_bce(
        backend.asarray(z),
        backend.asarray(y),
        **{**_NO_OPTIONS, "smoothing": 0.0, "reduction": reduction},
    )
    both, _, grad = _core.binary_loss_and_grad(logits, labels, spec, xp=xp)
    assert_close(backend.to_numpy(both), expected, "float64")
    count = z.size if reduction == "mean" else 1
    sigmoid = np.where(z >= 0, 1.0, np.exp(-np.abs(z))) / (1.0 + np.exp(-np.abs(z)))
    assert_close(backend.to_numpy(grad), (sigmoid - y) / count, "float64")
    # Smoothed, the +inf logit carries target mass below 1: the loss is +inf.
    got = lsr.smooth_bce(backend.asarray(z), backend.asarray(y), smoothing=0.1, reduction=reduction)
    assert np.isposinf(backend.to_numpy(got))


@pytest.mark.parametrize(
    ("backend_name", "dtype"),
    [
        (name, dtype)
        for name in selected_backends()
        for dtype in _compat.get_backend(name).half_precision
    ],
)
def test_half_precision_is_computed_in_float32(backend_name, dtype):
    backend = get_backend(backend_name)
    z = backend.xp.astype(backend.asarray(LOGITS.astype(np.float32)), getattr(backend.xp, dtype))
    loss = lsr.smooth_bce(z, backend.asarray(MULTI_HOT), reduction="sum")
    assert loss.dtype == backend.xp.float32
    rounded = backend.to_numpy(backend.xp.astype(z, backend.xp.float32))
    expected = reference.smooth_bce(rounded, MULTI_HOT, smoothing=0.1, prior=0.5, reduction="sum")
    assert_close(backend.to_numpy(loss), expected, "float32")


def test_a_mean_over_nothing_is_zero_with_zero_gradient(backend):
    labels = backend.asarray(np.full((N, K), -1))
    xp, z, y, spec = prepare_smooth_bce(
        backend.asarray(LOGITS),
        labels,
        smoothing=0.1,
        prior=0.5,
        axis=-1,
        weight=None,
        pos_weight=None,
        where=None,
        ignore_index=-1,
        reduction="mean",
    )
    loss, denominator = _core.binary_loss(z, y, spec, xp=xp)
    grad = _core.binary_grad(z, y, denominator, 1.0, spec, xp=xp)
    assert float(backend.to_numpy(loss)) == 0.0
    assert not np.any(backend.to_numpy(grad))


def test_narrow_label_dtypes_compare_with_ignore_index_by_value():
    """uint8 labels: ignore_index=255 leaves those out; -1 matches no label (it must
    not wrap to 255)."""
    labels = np.array([[1, 0, 255, 1]], dtype=np.uint8)
    z = LOGITS[:1]
    kept = lsr.smooth_bce(z, labels, ignore_index=255, reduction="none")
    assert kept[0, 2] == 0.0 and np.all(kept[0, [0, 1, 3]] > 0)
    with pytest.raises(ValueError, match=r"0 or 1 .*Received: labels with min=255"):
        lsr.smooth_bce(z, labels, ignore_index=-1)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"labels": MULTI_HOT[:, :2]}, ValueError, r"labels.*shape \(5, 4\).*Received"),
        ({"labels": MULTI_HOT + 1}, ValueError, r"0 or 1.*Received: labels with min=2"),
        ({"labels": SOFT * 2.0}, ValueError, r"in \[0, 1\].*Received"),
        ({"labels": np.where(KEEP, SOFT, np.nan)}, ValueError, r"in \[0, 1\].*Received"),
        ({"smoothing": 1.5}, ValueError, r"Received: smoothing=1.5"),
        ({"prior": 1.5}, ValueError, r"Received: prior=1.5"),
        ({"prior": "half"}, ValueError, r"Received: prior='half'"),
        ({"prior": BASE_RATE + 1.0}, ValueError, r"prior.*\[0, 1\].*Received"),
        ({"weight": np.ones(3)}, ValueError, r"weight.*broadcast.*\(5, 4\).*Received"),
        ({"pos_weight": np.ones((2, K))}, ValueError, r"pos_weight.*broadcast.*Received"),
        ({"where": np.ones(K)}, TypeError, r"where.*boolean.*Received"),
        ({"labels": SOFT, "ignore_index": -1}, ValueError, r"integer labels only.*Received"),
        ({"reduction": "avg"}, ValueError, r"Received: reduction='avg'"),
        ({"weight": [1.0] * K}, TypeError, r"weight.*Received"),
    ],
)
def test_bad_input_is_refused_before_computing(change, error, match):
    arguments = {"labels": MULTI_HOT, **change}
    with pytest.raises(error, match=match):
        lsr.smooth_bce(LOGITS, arguments.pop("labels"), **arguments)


def test_the_conventions_refuse_what_they_cannot_mean():
    with pytest.raises(ValueError, match=r"Received: convention='focal'"):
        lsr.binary_smoothing("focal", 0.1)
    with pytest.raises(TypeError, match=r"num_labels.*Received: num_labels=None"):
        lsr.binary_smoothing("timm", 0.1)
    with pytest.raises(ValueError, match=r"negative.*positive.*Received: negative=0.8"):
        lsr.binary_smoothing("on-off", positive=0.5, negative=0.8)
    with pytest.raises(ValueError, match=r"mmpretrain.*Received: smoothing=0.6"):
        lsr.binary_smoothing("mmpretrain", 0.6)


def test_a_convention_refuses_arguments_it_does_not_use():
    with pytest.raises(ValueError, match=r"'keras' convention takes 'smoothing'.*Received: num_"):
        lsr.binary_smoothing("keras", 0.1, num_labels=5)
    with pytest.raises(ValueError, match=r"not `positive`.*Received: positive=0.9"):
        lsr.binary_smoothing("timm", 0.1, num_labels=5, positive=0.9)
    with pytest.raises(ValueError, match=r"not `smoothing`.*Received: smoothing=0.1"):
        lsr.binary_smoothing("on-off", 0.1, positive=0.9, negative=0.1)


def test_where_leaves_out_padding_eagerly_as_when_traced():
    """Padding labels (-1) under a `where` mask are not checked: the mask's elements are
    left out, as under tracing, where they could not be read either."""
    labels = np.where(KEEP, SOFT, -1.0)
    loss = lsr.smooth_bce(LOGITS, labels, where=KEEP)
    expected = reference.smooth_bce(
        LOGITS, np.where(KEEP, SOFT, 0.0), smoothing=0.1, prior=0.5, keep=KEEP
    )
    assert_close(loss, expected, "float64")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        lsr.smooth_bce(LOGITS, labels)


def test_ignore_index_may_not_be_a_label_value():
    with pytest.raises(ValueError, match=r"not be 0 or 1.*Received: ignore_index=1"):
        lsr.smooth_bce(LOGITS, MULTI_HOT, ignore_index=1)


def test_zero_dimensional_logits_are_one_element():
    loss = lsr.smooth_bce(np.float64(0.3), np.float64(1.0), smoothing=0.0)
    assert_close(loss, np.logaddexp(0.0, -0.3), "float64")
    with pytest.raises(ValueError, match=r"uniform.*Received: prior='uniform'"):
        lsr.smooth_bce(np.float64(0.3), np.float64(1.0), prior="uniform")
    with pytest.raises(ValueError, match=r"uniform.*has none"):
        lsr.smooth_bce(np.zeros((3, 0)), np.zeros((3, 0)), prior="uniform")
