"""The generic core against the plain float64 reference, on every selected backend."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lsr
from lsr import _core
from lsr._checks import prepare_smooth_ce
from lsr._core import _loss
from tests import reference
from tests.backends import assert_close, dtype_name, selected_backends
from tests.conftest import get_backend

K = 5
PRIOR_VECTOR = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5, 0.75])

# (logits shape, class axis): plain (N, K), segmentation (N, C, H, W), sequences (B, T, V).
LAYOUTS = [((6, K), -1), ((2, K, 3, 2), 1), ((2, 3, K), -1), ((K,), 0)]


def _positions(shape, axis):
    axis %= len(shape)
    return shape[:axis] + shape[axis + 1 :]


def _make_case(seed, shape, axis, *, dense, ignore=False, where=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=shape)
    positions = _positions(shape, axis)
    if dense:
        labels = np.moveaxis(rng.dirichlet(np.ones(K), size=positions), -1, axis % len(shape))
    else:
        labels = rng.integers(0, K, size=positions)
        if ignore and labels.size > 1:
            labels.flat[::3] = 255
    mask = rng.random(positions) > 0.3 if where else None
    return logits, labels, mask


def _prior(name):
    return PRIOR_VECTOR if name == "vector" else name


CONFIGS = list(
    itertools.product(
        LAYOUTS,
        [False, True],  # dense labels
        ["uniform", "others", "vector"],
        [None, "weight"],
        ["mean", "sum", "none"],
    )
)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("layout", "dense", "prior", "weighted", "reduction"), CONFIGS)
def test_matches_reference(backend, dtype, layout, dense, prior, weighted, reduction):
    shape, axis = layout
    logits, labels, _ = _make_case(0, shape, axis, dense=dense, ignore=not dense)
    options = dict(
        smoothing=0.2,
        prior=_prior(prior),
        axis=axis,
        ignore_index=None if dense else 255,
        weight=WEIGHT if weighted else None,
        reduction=reduction,
    )
    expected = reference.smooth_ce(logits, labels, **options)
    as_backend = {
        "prior": backend.asarray(PRIOR_VECTOR, dtype) if prior == "vector" else prior,
        "weight": backend.asarray(WEIGHT, dtype) if weighted else None,
    }
    actual = lsr.smooth_ce(
        backend.asarray(logits, dtype),
        backend.asarray(labels, dtype if dense else None),
        **{**options, **as_backend},
    )
    assert dtype_name(actual.dtype) == dtype
    assert tuple(actual.shape) == np.shape(expected)
    assert_close(backend.to_numpy(actual), expected, dtype, scale=10)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("kl", [False, True])
def test_where_kl_and_z_loss_match_reference(backend, dense, kl):
    shape, axis = (3, K, 4), 1
    logits, labels, mask = _make_case(1, shape, axis, dense=dense, where=True)
    options = dict(smoothing=0.3, prior="others", axis=axis, kl=kl, z_loss=1e-2)
    expected = reference.smooth_ce(logits, labels, where=mask, reduction="none", **options)
    actual = lsr.smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        where=backend.asarray(mask),
        reduction="none",
        **options,
    )
    assert_close(backend.to_numpy(actual), expected, "float64")


@pytest.mark.parametrize("prior", ["uniform", "others", "vector"])
@pytest.mark.parametrize("dense", [False, True])
def test_kl_form_is_zero_at_the_target(backend, prior, dense):
    """KL(q'||p) = 0 when softmax(logits) = q' (logits = log q')."""
    labels = np.array([0, 3, 1, 4])
    targets = reference.smoothed_targets(labels, K, smoothing=0.1, prior=_prior(prior))
    given = targets.copy() if dense else labels
    if dense:
        given = np.eye(K)[labels]
    loss = lsr.smooth_ce(
        backend.asarray(np.log(targets)),
        backend.asarray(given),
        smoothing=0.1,
        prior=backend.asarray(PRIOR_VECTOR) if prior == "vector" else prior,
        kl=True,
        reduction="none",
    )
    assert_close(backend.to_numpy(loss), np.zeros(4), "float64", scale=100)


@pytest.mark.parametrize(("layout", "dense", "prior", "weighted", "reduction"), CONFIGS[::3])
def test_core_gradient_matches_numerical_gradient_of_reference(
    backend, layout, dense, prior, weighted, reduction
):
    shape, axis = layout
    logits, labels, mask = _make_case(2, shape, axis, dense=dense, ignore=not dense, where=True)
    options = dict(
        smoothing=0.25,
        prior=_prior(prior),
        axis=axis,
        ignore_index=None if dense else 255,
        weight=WEIGHT if weighted else None,
        where=mask,
        reduction=reduction,
        z_loss=0.05,
    )
    positions = _positions(shape, axis)
    cotangent = (
        np.random.default_rng(3).normal(size=positions) if reduction == "none" else np.array(0.7)
    )

    def reference_objective(z):
        return float(np.sum(reference.smooth_ce(z, labels, **options) * cotangent))

    expected = reference.numerical_gradient(reference_objective, logits)

    as_backend = {
        "prior": backend.asarray(PRIOR_VECTOR) if prior == "vector" else prior,
        "weight": backend.asarray(WEIGHT) if weighted else None,
        "where": backend.asarray(mask),
    }
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits), backend.asarray(labels), **{**options, **as_backend}
    )
    _, lse, denominator = _core.smooth_ce(z, y, spec, xp=xp)
    grad = _core.smooth_ce_grad(z, y, lse, denominator, backend.asarray(cotangent), spec, xp=xp)
    assert tuple(grad.shape) == shape
    np.testing.assert_allclose(backend.to_numpy(grad), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("layout", "dense", "prior", "weighted", "reduction"), CONFIGS[1::3])
def test_fused_loss_and_grad_matches_reference(backend, layout, dense, prior, weighted, reduction):
    """``loss_and_grad`` (the blocked fast path's kernel): each position's loss, and the
    gradient of ``sum_i scale_i loss_i`` against central differences of the reference;
    on namespaces with in-place assignment, also written into ``out``."""
    shape, axis = layout
    logits, labels, mask = _make_case(5, shape, axis, dense=dense, ignore=not dense, where=True)
    options = dict(
        smoothing=0.3,
        prior=_prior(prior),
        axis=axis,
        ignore_index=None if dense else 255,
        weight=WEIGHT if weighted else None,
        where=mask,
        z_loss=0.05,
    )
    scale = np.random.default_rng(6).uniform(0.5, 2.0, size=_positions(shape, axis))
    expected_loss = reference.smooth_ce(logits, labels, reduction="none", **options)
    expected_grad = reference.numerical_gradient(
        lambda z: float(
            np.sum(reference.smooth_ce(z, labels, reduction="none", **options) * scale)
        ),
        logits,
    )
    as_backend = {
        "prior": backend.asarray(PRIOR_VECTOR) if prior == "vector" else prior,
        "weight": backend.asarray(WEIGHT) if weighted else None,
        "where": backend.asarray(mask),
    }
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        reduction=reduction,
        **{**options, **as_backend},
    )
    expected_lse = np.log(np.sum(np.exp(logits), axis=axis, keepdims=True))
    mutable = backend.name in ("numpy", "array_api_strict", "torch")
    for out in [None, backend.asarray(np.zeros(shape))] if mutable else [None]:
        loss, lse, grad = _core.loss_and_grad(z, y, spec, backend.asarray(scale), out=out, xp=xp)
        assert_close(backend.to_numpy(loss), expected_loss, "float64")
        assert_close(backend.to_numpy(lse), expected_lse, "float64")
        assert tuple(grad.shape) == shape
        np.testing.assert_allclose(backend.to_numpy(grad), expected_grad, rtol=1e-6, atol=1e-7)
        if out is not None:  # Written into ``out``, not into a new array.
            np.testing.assert_allclose(backend.to_numpy(out), expected_grad, rtol=1e-6, atol=1e-7)
    _, _, nothing = _core.loss_and_grad(z, y, spec, 1.0, with_grad=False, xp=xp)
    assert nothing is None


BLOCKED_CONFIGS = [
    (*config, ignore, checked)
    for config in [c for c in CONFIGS if c[0][1] != 0][::4]
    for ignore, checked in (
        [(False, False)] if config[1] else itertools.product([False, True], repeat=2)
    )
]


@pytest.mark.parametrize("rows_per_block", [1, 2, None])
@pytest.mark.parametrize(
    ("layout", "dense", "prior", "weighted", "reduction", "ignore", "checked"), BLOCKED_CONFIGS
)
def test_blocked_loss_and_grad_matches_reference(
    backend, layout, dense, prior, weighted, reduction, ignore, checked, rows_per_block
):
    """``blocked_loss_and_grad`` (the eager PyTorch path): the reduced loss and lse, and,
    on namespaces with in-place assignment, the gradient written block by block into
    ``out``, against the reference, whatever the blocks and whether the labels were
    checked (which drops the NaN guard and, with nothing ignored, every mask)."""
    shape, axis = layout
    logits, labels, _ = _make_case(8, shape, axis, dense=dense, ignore=ignore)
    options = dict(
        smoothing=0.3,
        prior=_prior(prior),
        axis=axis,
        ignore_index=None if dense else 255,
        weight=WEIGHT if weighted else None,
        reduction=reduction,
        z_loss=0.05,
    )
    expected_loss = reference.smooth_ce(logits, labels, **options)
    expected_grad = reference.numerical_gradient(
        lambda z: float(np.sum(reference.smooth_ce(z, labels, **options))), logits
    )
    as_backend = {
        "prior": backend.asarray(PRIOR_VECTOR) if prior == "vector" else prior,
        "weight": backend.asarray(WEIGHT) if weighted else None,
    }
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits), backend.asarray(labels), **{**options, **as_backend}
    )
    spec = spec.replace(checked=checked)
    rows = rows_per_block or shape[0]
    blocks = [slice(start, start + rows) for start in range(0, shape[0], rows)]
    mutable = backend.name in ("numpy", "array_api_strict", "torch")
    for out in [backend.asarray(np.zeros(shape)), None] if mutable else [None]:
        loss, lse, denominator, grad = _core.blocked_loss_and_grad(
            z,
            y,
            spec,
            xp=xp,
            blocks=blocks,
            out=out,
            scratch=backend.asarray(np.zeros((rows, *shape[1:]))) if mutable else None,
        )
        assert_close(backend.to_numpy(loss), expected_loss, "float64")
        expected_lse = np.log(np.sum(np.exp(logits), axis=axis, keepdims=True))
        assert_close(backend.to_numpy(lse), expected_lse, "float64")
        kept = np.ones(_positions(shape, axis), dtype=bool) if dense else labels != 255
        expected_denominator = (
            np.sum(WEIGHT[labels[kept]]) if weighted and not dense else np.sum(kept)
        )
        if not isinstance(denominator, int):  # (a count known from the shape alone)
            denominator = backend.to_numpy(denominator)
        assert_close(np.asarray(denominator, dtype=float), expected_denominator, "float64")
        if out is None:
            assert grad is None
        else:
            assert grad is out
            np.testing.assert_allclose(backend.to_numpy(out), expected_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dense", [False, True])
def test_mean_denominator_from_labels_matches_forward(backend, dense, weighted):
    logits, labels, mask = _make_case(7, (6, K), -1, dense=dense, ignore=not dense, where=True)
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        smoothing=0.1,
        prior="uniform",
        axis=-1,
        ignore_index=None if dense else 255,
        weight=backend.asarray(WEIGHT) if weighted else None,
        where=backend.asarray(mask),
        reduction="mean",
    )
    _, _, from_forward = _core.smooth_ce(z, y, spec, xp=xp)
    # From the labels alone (no logit read): what the blocked pass scales by.
    _, from_labels, _ = _core.reduction_scale(y, spec, xp=xp, like=z[:0, ...])
    keep = mask & (labels != 255) if not dense else mask
    if weighted and not dense:
        expected = sum(WEIGHT[int(label)] for label in labels[keep])
    else:
        expected = int(np.sum(keep))
    assert_close(float(from_labels), expected, "float64")
    assert_close(float(from_forward), expected, "float64")


def test_all_ignored_mean_is_zero_with_zero_gradient(backend):
    logits = backend.asarray(np.random.default_rng(4).normal(size=(3, K)))
    labels = backend.asarray(np.array([-100, -100, -100]))
    loss = lsr.smooth_ce(logits, labels, ignore_index=-100)
    assert backend.to_numpy(loss) == 0.0
    xp, z, y, spec = prepare_smooth_ce(
        logits,
        labels,
        smoothing=0.1,
        prior="uniform",
        axis=-1,
        ignore_index=-100,
        weight=None,
        reduction="mean",
    )
    _, lse, denominator = _core.smooth_ce(z, y, spec, xp=xp)
    grad = _core.smooth_ce_grad(z, y, lse, denominator, backend.asarray(1.0), spec, xp=xp)
    np.testing.assert_array_equal(backend.to_numpy(grad), np.zeros((3, K)))


def test_out_of_range_labels_give_nan_when_values_cannot_be_checked(backend):
    """Under tracing the check cannot run; the core then poisons the result with NaN."""
    logits = backend.asarray(np.zeros((3, K)))
    labels = backend.asarray(np.array([1, K + 2, -1]))
    xp, z, _, spec = prepare_smooth_ce(
        logits,
        backend.asarray(np.array([1, 2, 3])),
        smoothing=0.1,
        prior="uniform",
        axis=-1,
        ignore_index=None,
        weight=None,
        reduction="none",
    )
    # Validation read the ids it was given (spec.checked); these others it never saw, as
    # under tracing, where it leaves checked False.
    assert spec.checked
    spec = spec.replace(checked=False)
    loss, _, _ = _core.smooth_ce(z, labels, spec, xp=xp)
    values = backend.to_numpy(loss)
    assert np.isfinite(values[0])
    assert np.isnan(values[1]) and np.isnan(values[2])
    mean, _, _ = _core.smooth_ce(z, labels, spec.replace(reduction="mean"), xp=xp)
    assert np.isnan(backend.to_numpy(mean))


@pytest.mark.parametrize(
    ("ids", "ignore_index", "ignored"),
    [
        ([1, 2, 3], None, None),
        ([1, 2, 3], -100, None),  # not there: the spec need not look for it
        ([1, -100, 3], -100, -100),
        ([1, 2, 3], 3, 3),  # in [0, K), at the maximum
        ([1, 2, 3], 1, 1),  # at the minimum
        ([1, 3, 3], 2, None),  # between them, not there
        ([0, 2, 4], 2, 2),  # between them, there
    ],
)
def test_validation_records_what_it_read(backend, ids, ignore_index, ignored):
    """Read ids are marked checked (no NaN guard in the pass), and an ignore_index that no
    id equals is dropped from the spec; the loss is the same either way."""
    logits = backend.asarray(np.linspace(-1.0, 1.0, 3 * K).reshape(3, K))
    labels = backend.asarray(np.array(ids))
    _, z, y, spec = prepare_smooth_ce(
        logits,
        labels,
        smoothing=0.1,
        prior="uniform",
        axis=-1,
        ignore_index=ignore_index,
        weight=None,
        reduction="none",
    )
    assert spec.checked and spec.ignore_index == ignored
    loss, _, _ = _core.smooth_ce(z, y, spec, xp=backend.xp)
    values = backend.to_numpy(loss)
    kept = np.array([i != ignore_index for i in ids])
    np.testing.assert_array_equal(values == 0, ~kept)
    # The same numbers from a spec that keeps ignore_index and reads nothing.
    unread = spec.replace(checked=False, ignore_index=ignore_index)
    expected, _, _ = _core.smooth_ce(z, y, unread, xp=backend.xp)
    assert_close(loss, expected, "float64")


# Half-precision dtypes each namespace has (array-api-strict has none, NumPy no bfloat16).
HALF_PRECISION = {
    "numpy": ["float16"],
    "torch": ["float16", "bfloat16"],
    "jax": ["float16", "bfloat16"],
    "tensorflow": ["float16", "bfloat16"],
}


@pytest.mark.parametrize(
    ("backend_name", "dtype"),
    [(name, dtype) for name in selected_backends() for dtype in HALF_PRECISION.get(name, [])],
)
def test_half_precision_is_computed_in_float32(backend_name, dtype):
    backend = get_backend(backend_name)
    rng = np.random.default_rng(5)
    logits32 = (rng.normal(size=(64, K)) * 4).astype(np.float32)
    labels = rng.integers(0, K, size=64)
    low = _to_low_precision(backend, logits32, dtype)
    rounded = backend.to_numpy(backend.xp.astype(low, backend.xp.float32))
    loss = lsr.smooth_ce(low, backend.asarray(labels), smoothing=0.1)
    assert dtype_name(loss.dtype) == "float32"
    # float32 accuracy on the (rounded) inputs: no float16 accumulation error.
    assert_close(
        backend.to_numpy(loss), reference.smooth_ce(rounded, labels, smoothing=0.1), "float32"
    )


def _to_low_precision(backend, array, dtype):
    if backend.name == "torch":
        import torch

        return torch.from_numpy(array).to(getattr(torch, dtype))
    if backend.name == "jax":
        import jax.numpy as jnp

        return jnp.asarray(array, dtype=getattr(jnp, dtype))
    if backend.name == "tensorflow":
        import tensorflow as tf

        return tf.cast(tf.convert_to_tensor(array), getattr(tf, dtype))
    return backend.asarray(array.astype(dtype))


# --- smooth_labels -------------------------------------------------------------------


@pytest.mark.parametrize("prior", ["uniform", "others", "vector"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_smooth_labels_from_ids_matches_reference(backend, prior, axis):
    labels = np.array([[0, 4, 2], [1, 1, 3]])
    expected = reference.smoothed_targets(labels, K, smoothing=0.3, prior=_prior(prior))
    expected = np.moveaxis(expected, -1, axis)
    actual = lsr.smooth_labels(
        backend.asarray(labels),
        K,
        smoothing=0.3,
        axis=axis,
        prior=backend.asarray(PRIOR_VECTOR) if prior == "vector" else prior,
        dtype=backend.xp.float64,
    )
    assert_close(backend.to_numpy(actual), expected, "float64")


@pytest.mark.parametrize("prior", ["uniform", "others"])
def test_smooth_labels_dense_keeps_dtype_and_input(backend, prior):
    one_hot = np.eye(K, dtype=np.float32)[[3, 0, 1]]
    given = backend.asarray(one_hot)
    smoothed = lsr.smooth_labels(given, smoothing=0.1, prior=prior)
    assert dtype_name(smoothed.dtype) == "float32"
    expected = reference.smoothed_targets(one_hot, K, smoothing=0.1, prior=prior, dense=True)
    assert_close(backend.to_numpy(smoothed), expected, "float32")
    np.testing.assert_array_equal(backend.to_numpy(given), one_hot)


def test_smooth_labels_reproduces_cleverhans_targets(backend):
    """cleverhans 2017: Y.clip(eps/(K-1), 1-eps); cleverhans v3: y - eps (y - 1/K); K=10."""
    y = np.eye(10)[[7, 2, 1, 0, 4]]
    others = lsr.smooth_labels(backend.asarray(y), smoothing=0.1, prior="others")
    uniform = lsr.smooth_labels(backend.asarray(y), smoothing=0.1, prior="uniform")
    np.testing.assert_allclose(backend.to_numpy(others), y.clip(0.1 / 9, 0.9), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(uniform), y - 0.1 * (y - 1 / 10), rtol=1e-12)
    # The published numbers for K=10: 0.9 / 0.0111... and 0.91 / 0.01.
    assert backend.to_numpy(others)[0, 7] == pytest.approx(0.9)
    assert backend.to_numpy(others)[0, 0] == pytest.approx(0.011111111111)
    assert backend.to_numpy(uniform)[0, 7] == pytest.approx(0.91)
    assert backend.to_numpy(uniform)[0, 0] == pytest.approx(0.01)


def test_estimate_prior_counts_classes(backend):
    labels = backend.asarray(np.array([0, 0, 1, 3, 255, 3, 3]))
    prior = lsr.estimate_prior(labels, 4, ignore_index=255, dtype=backend.xp.float64)
    np.testing.assert_allclose(backend.to_numpy(prior), [2 / 6, 1 / 6, 0.0, 3 / 6])
    smoothed = lsr.estimate_prior(labels, 4, ignore_index=255, pseudocount=1.0)
    np.testing.assert_allclose(
        backend.to_numpy(smoothed), [3 / 10, 2 / 10, 1 / 10, 4 / 10], rtol=1e-6
    )
    # The estimate is accepted as a prior by smooth_ce.
    logits = backend.asarray(np.zeros((2, 4), dtype=np.float32))
    lsr.smooth_ce(logits, backend.asarray(np.array([0, 1])), prior=smoothed)


# --- published values ----------------------------------------------------------------


def test_keras_published_value(backend):
    """Keras CategoricalCrossentropy(label_smoothing=0.1, from_logits=True) docs: 400*0.1/3."""
    loss = lsr.smooth_ce(
        backend.asarray(np.array([[100.0, -100.0, -100.0]])),
        backend.asarray(np.array([[1.0, 0.0, 0.0]])),
        smoothing=0.1,
    )
    assert backend.to_numpy(loss) == pytest.approx(400 * 0.1 / 3, rel=1e-12)


def test_optax_published_value(backend):
    """optax softmax_cross_entropy docstring example: [9.00013, 3.0696733]."""
    logits = backend.asarray(np.array([[10.0, 1.0, -2.0], [1.0, 4.0, 0.2]], dtype=np.float32))
    for labels in (
        np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32),
        np.array([1, 0]),
    ):
        loss = lsr.smooth_ce(logits, backend.asarray(labels), smoothing=0.0, reduction="none")
        np.testing.assert_allclose(backend.to_numpy(loss), [9.00013, 3.0696733], rtol=1e-6)


def test_one_pass_sum_and_sum_exp_only_beside_a_gradient():
    """A namespace's one-pass ``sum_and_sum_exp`` (JAX's variadic reduction) serves the
    gradient's pass only: for the loss alone XLA's CPU backend runs it as a plain loop,
    2-3x slower than two vectorized sums (docs/benchmarks.md). Both forms give the same
    loss."""
    import types

    import array_api_compat.numpy as np_xp

    calls = []

    def sum_and_sum_exp(x, /, *, axis):
        calls.append(axis)
        return np_xp.sum(x, axis=axis), np_xp.sum(np_xp.exp(x), axis=axis, keepdims=True)

    spy = types.SimpleNamespace(**vars(np_xp), sum_and_sum_exp=sum_and_sum_exp)
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(6, 5)) * 3.0
    labels = rng.integers(0, 5, size=6)
    _, z, y, spec = prepare_smooth_ce(
        logits,
        labels,
        smoothing=0.2,
        prior="uniform",
        axis=1,
        ignore_index=None,
        weight=None,
        where=None,
        reduction="mean",
    )
    expected = reference.smooth_ce(logits, labels, smoothing=0.2, axis=1, reduction="mean")
    loss, _, _ = _core.smooth_ce(z, y, spec, xp=spy)
    assert calls == []
    np.testing.assert_allclose(float(loss), expected, rtol=1e-12)
    loss, grad = _core.reduced_loss_and_grad(z, y, spec, xp=spy)
    assert calls == [1]
    np.testing.assert_allclose(float(loss), expected, rtol=1e-12)
    assert grad.shape == logits.shape


@pytest.mark.parametrize("kl", [False, True])
@pytest.mark.parametrize(
    ("layout", "prior", "reduction"),
    [
        (layout, prior, reduction)
        for layout, dense, prior, weighted, reduction in CONFIGS
        if not dense and not weighted
    ],
)
def test_log_softmax_pass_matches_the_pass_and_reference(backend, layout, prior, reduction, kl):
    """``log_softmax_loss_and_grad`` (rows shifted by their logsumexp; eager PyTorch's
    path for small inputs) against the float64 reference and against the pass shifted by
    the row maximum (``reduced_loss_and_grad``), gradients included, on every backend:
    the namespace's fused ``log_softmax`` where it has one, the plain form elsewhere."""
    shape, axis = layout
    logits, labels, _ = _make_case(3, shape, axis, dense=False)
    options = dict(
        smoothing=0.2,
        prior=_prior(prior),
        axis=axis,
        weight=None,
        reduction=reduction,
        kl=kl,
    )
    expected = reference.smooth_ce(logits, labels, **options)
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        ignore_index=None,
        where=None,
        **{
            **options,
            "prior": backend.asarray(PRIOR_VECTOR) if prior == "vector" else options["prior"],
        },
    )
    assert _core.log_softmax_applies(spec)
    loss, grad = _core.log_softmax_loss_and_grad(z, y, spec, xp=xp)
    pass_loss, pass_grad = _core.reduced_loss_and_grad(z, y, spec, xp=xp)
    assert_close(backend.to_numpy(loss), expected, "float64")
    assert_close(backend.to_numpy(loss), backend.to_numpy(pass_loss), "float64")
    assert_close(backend.to_numpy(grad), backend.to_numpy(pass_grad), "float64")
    only_loss, no_grad = _core.log_softmax_loss_and_grad(z, y, spec, xp=xp, with_grad=False)
    assert no_grad is None
    assert_close(backend.to_numpy(only_loss), expected, "float64")


def _loss_alone_case(backend, reduction, finite_left_out):
    """Six rows, three left out (ignore_index and where); with ``finite_left_out`` False
    one of those is all -inf and one holds NaN and +inf. The reference is of the same
    call with those rows' logits finite: left out, they count for nothing either way."""
    logits, labels, _ = _make_case(5, (6, K), 1, dense=False)
    if not finite_left_out:
        logits[1] = -np.inf
        logits[4, :2] = [np.nan, np.inf]
    labels[1] = labels[4] = -100
    where = np.array([True, True, True, False, True, True])
    finite = np.where(np.isfinite(logits), logits, 0.0)
    expected = reference.smooth_ce(
        finite, labels, smoothing=0.2, ignore_index=-100, where=where, reduction=reduction
    )
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        smoothing=0.2,
        prior="uniform",
        axis=1,
        ignore_index=-100,
        weight=None,
        where=backend.asarray(where),
        reduction=reduction,
    )
    return xp, z, y, spec, expected


@pytest.mark.parametrize("finite_left_out", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_log_softmax_pass_leaves_positions_out(backend, reduction, finite_left_out):
    """The log-softmax pass also takes ``ignore_index`` and ``where``: left-out rows give
    0 and are not counted, as the reference and the pass shifted by the row maximum say,
    gradient included. A non-finite logit in a left-out row may make a reduced loss NaN
    (its totals are products with the mask) and makes that row's gradient NaN (``0 *
    exp(s)``): never a finite wrong number, and the callers then take the pass shifted by
    the row maximum (``leaves_positions_out``). One loss per position stays exact
    there."""
    xp, z, y, spec, expected = _loss_alone_case(backend, reduction, finite_left_out)
    assert _core.log_softmax_applies(spec) and _core.leaves_positions_out(spec)
    # (NumPy warns about the left-out rows' -inf - -inf and log(0) in the plain forms.)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss, grad = _core.log_softmax_loss_and_grad(z, y, spec, xp=xp, with_grad=False)
        with_grad, made = _core.log_softmax_loss_and_grad(z, y, spec, xp=xp)
        pass_loss, pass_grad = _core.reduced_loss_and_grad(z, y, spec, xp=xp)
    assert grad is None
    assert_close(backend.to_numpy(pass_loss), expected, "float64")
    value, gradient = backend.to_numpy(loss), backend.to_numpy(made)
    assert_close(backend.to_numpy(with_grad), value, "float64")
    if finite_left_out:
        assert_close(value, expected, "float64")
        assert_close(gradient, backend.to_numpy(pass_grad), "float64")
        return
    if reduction == "none":
        assert_close(value, expected, "float64")
    else:
        assert not np.all(np.isfinite(value)), value
    # Rows 1 (all -inf) and 4 (NaN, +inf) are left out: their gradient is not finite,
    # where the pass's row 1 is 0.
    assert not np.isfinite(gradient[1]).any() and not np.isfinite(gradient[4]).any()
    assert not backend.to_numpy(pass_grad)[1].any()


@pytest.mark.parametrize("rows_per_block", [1, 4, None])
@pytest.mark.parametrize("finite_left_out", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_blocked_log_softmax_loss_and_grad_matches_the_one_block_form(
    backend, reduction, finite_left_out, rows_per_block
):
    """``blocked_log_softmax_loss_and_grad`` (eager PyTorch's log-softmax form over
    blocks of rows) gives the one-block form's loss whatever the blocks, in new arrays
    (every namespace) or written into the scratch block (those whose arrays are written
    in place); with ``out``, the gradient of the pass shifted by the row maximum, written
    into ``out`` straight (float64) or, where assignment converts (NumPy, PyTorch),
    rounded from a block of scratch (float32). A
    non-finite logit in a left-out row makes that row's gradient not finite, never a
    finite wrong number (``leaves_positions_out``)."""
    xp, z, y, spec, expected = _loss_alone_case(backend, reduction, finite_left_out)
    rows = rows_per_block or 6
    blocks = [slice(start, min(start + rows, 6)) for start in range(0, 6, rows)]
    writes = backend.name in ("numpy", "array_api_strict", "torch")
    scratches = [None]
    if writes:
        scratches.append(backend.asarray(np.zeros((rows, K))))
    with np.errstate(invalid="ignore", divide="ignore"):
        _, pass_grad = _core.reduced_loss_and_grad(z, y, spec, xp=xp)
    for scratch in scratches:
        with np.errstate(invalid="ignore", divide="ignore"):
            loss, made = _core.blocked_log_softmax_loss_and_grad(
                z, y, spec, xp=xp, blocks=blocks, scratch=scratch
            )
        assert made is None
        value = backend.to_numpy(loss)
        if finite_left_out or reduction == "none":
            assert_close(value, expected, "float64")
        else:
            assert not np.all(np.isfinite(value)), value
    if not writes:
        return
    outs = [(np.float64, None)]
    if backend.name != "array_api_strict":  # (which assigns within one dtype only)
        outs.append((np.float32, np.zeros((rows, K))))
    for dtype, scratch in outs:
        out = backend.asarray(np.full((6, K), 7.0, dtype=dtype))
        with np.errstate(invalid="ignore", divide="ignore"):
            loss, made = _core.blocked_log_softmax_loss_and_grad(
                z,
                y,
                spec,
                xp=xp,
                blocks=blocks,
                scratch=None if scratch is None else backend.asarray(scratch),
                out=out,
            )
        assert made is out
        value, gradient = backend.to_numpy(loss), backend.to_numpy(out)
        if finite_left_out or reduction == "none":
            assert_close(value, expected, "float64")
        if finite_left_out:
            assert_close(gradient, backend.to_numpy(pass_grad).astype(dtype), np.dtype(dtype).name)
        else:
            # Rows 1 (all -inf) and 4 (NaN, +inf) are left out: not finite here, where
            # the pass's row 1 is 0; every other row is the pass's.
            assert not np.isfinite(gradient[1]).any() and not np.isfinite(gradient[4]).any()
            kept = [0, 2, 3, 5]
            expected_rows = backend.to_numpy(pass_grad)[kept].astype(dtype)
            assert_close(gradient[kept], expected_rows, np.dtype(dtype).name)


def _prepared(backend, logits, labels, **options):
    options = {"ignore_index": None, "weight": None, "where": None, **options}
    return prepare_smooth_ce(backend.asarray(logits), backend.asarray(labels), **options)


@pytest.mark.parametrize("smoothing", [0.0, 0.2, 1.0])
@pytest.mark.parametrize("kl", [False, True])
@pytest.mark.parametrize(
    ("layout", "prior", "reduction"),
    [
        (layout, prior, reduction)
        for layout, dense, prior, weighted, reduction in CONFIGS
        if not dense and not weighted and prior != "vector"
    ],
)
def test_fixed_targets_serve_other_labels_of_the_same_shape(
    backend, layout, prior, reduction, kl, smoothing, monkeypatch
):
    """``FixedTargets`` made of one call's labels give another call's loss and gradient
    (other ids and logits of the same shapes) as the targets made of that call's own
    labels do, and as the float64 reference says: in the one-block form, with and
    without the gradient, and block by block of rows; and no targets are made of the
    labels where they are given."""
    shape, axis = layout
    options = dict(smoothing=smoothing, prior=prior, axis=axis, reduction=reduction, kl=kl)
    first_logits, first_labels, _ = _make_case(11, shape, axis, dense=False)
    xp, first_z, first_y, spec = _prepared(backend, first_logits, first_labels, **options)
    fixed = _core.fixed_targets(first_y, spec, xp=xp, like=first_z)
    assert fixed is not None
    logits, labels, _ = _make_case(12, shape, axis, dense=False)
    assert labels.size < 2 or not np.array_equal(labels, first_labels)
    _, z, y, own_spec = _prepared(backend, logits, labels, **options)
    assert own_spec == spec
    expected = reference.smooth_ce(logits, labels, **options, weight=None)
    own_loss, own_grad = _core.log_softmax_loss_and_grad(z, y, spec, xp=xp)

    def made_again(*arguments, **keywords):
        raise AssertionError("targets made of the labels, beside fixed ones")

    monkeypatch.setattr(_loss, "reduction_scale", made_again)
    loss, grad = _core.log_softmax_loss_and_grad(z, y, spec, xp=xp, fixed=fixed)
    assert_close(backend.to_numpy(loss), expected, "float64")
    assert_close(backend.to_numpy(loss), backend.to_numpy(own_loss), "float64")
    assert_close(backend.to_numpy(grad), backend.to_numpy(own_grad), "float64")
    alone, none = _core.log_softmax_loss_and_grad(z, y, spec, xp=xp, with_grad=False, fixed=fixed)
    assert none is None
    assert_close(backend.to_numpy(alone), expected, "float64")
    if len(shape) == 1 or backend.name not in ("numpy", "array_api_strict", "torch"):
        return
    blocks = [slice(0, 1), slice(1, shape[0])]
    out = backend.asarray(np.full(shape, 7.0))
    blocked, made = _core.blocked_log_softmax_loss_and_grad(
        z, y, spec, xp=xp, blocks=blocks, scratch=None, out=out, fixed=fixed
    )
    assert made is out
    assert_close(backend.to_numpy(blocked), expected, "float64")
    assert_close(backend.to_numpy(out), backend.to_numpy(own_grad), "float64")


_NOT_FIXED = ["ignore_index", "where", "weight", "per-position smoothing", "prior vector", "dense"]


@pytest.mark.parametrize("case", [*_NOT_FIXED, "unread"])
def test_fixed_targets_only_where_no_term_depends_on_the_labels(backend, case):
    """Options under which some term of the targets is one value per position (a left-out
    position, a class weight or prior taken at its id, one smoothing per position, dense
    targets), or whose ids were not read (where an id out of range must make its loss
    NaN), get no ``FixedTargets``; the others get a template that holds no array, which
    refuses to serve other options or another positions' shape."""
    logits, labels, mask = _make_case(13, (6, K), 1, dense=False, where=True)
    options = dict(smoothing=0.2, prior="uniform", axis=1, reduction="mean")
    xp, z, y, spec = _prepared(backend, logits, labels, **options)
    fixed = _core.fixed_targets(y, spec, xp=xp, like=z)
    assert fixed is not None
    template = vars(fixed.template)
    assert all(value is None or type(value) in (float, _core.Spec) for value in template.values())
    assert fixed.denominator == 6 and fixed.totals
    with pytest.raises(ValueError, match="other options"):
        _core.log_softmax_loss_and_grad(z, y, spec.replace(smoothing=0.3), xp=xp, fixed=fixed)
    _, other_z, other_y, _ = _prepared(backend, logits[:4], labels[:4], **options)
    with pytest.raises(ValueError, match="shape"):
        _core.log_softmax_loss_and_grad(other_z, other_y, spec, xp=xp, fixed=fixed)
    if case == "ignore_index":
        labels[2] = -100
        options["ignore_index"] = -100
    elif case == "where":
        options["where"] = backend.asarray(mask)
    elif case == "weight":
        options["weight"] = backend.asarray(WEIGHT)
    elif case == "per-position smoothing":
        options["smoothing"] = backend.asarray(np.linspace(0.0, 0.5, 6))
    elif case == "prior vector":
        options["prior"] = backend.asarray(PRIOR_VECTOR)
    elif case == "dense":
        labels = _make_case(13, (6, K), 1, dense=True)[1]
    xp, z, y, spec = _prepared(backend, logits, labels, **options)
    if case == "unread":
        spec = spec.replace(checked=False)
    assert _core.fixed_targets(y, spec, xp=xp, like=z) is None


def test_log_softmax_pass_applies_only_without_row_terms():
    """The options that read more of a row than its log-softmax take the pass shifted by
    the row maximum; positions left out do not, but say so (``leaves_positions_out``:
    the gradient must then be finite too)."""
    spec = _core.Spec(num_classes=K, axis=1, smoothing=0.1)
    assert _core.log_softmax_applies(spec)
    assert not _core.leaves_positions_out(spec)
    for change in [{"where": np.ones(3, dtype=bool)}, {"ignore_index": -100}]:
        assert _core.log_softmax_applies(spec.replace(**change)), change
        assert _core.leaves_positions_out(spec.replace(**change)), change
    for change in [
        {"dense": True},
        {"weight": WEIGHT},
        {"softcap": 30.0},
        {"z_loss": 1e-4},
        {"confidence_penalty": 0.1},
        {"aux": True},
    ]:
        assert not _core.log_softmax_applies(spec.replace(**change)), change


def test_prior_vector_accepted_off_one_keeps_its_own_mass(backend):
    """A prior vector is accepted when it sums to 1 within rounding, and is not
    renormalised: the target's mass is then eps sum(pi) + 1 - eps, not 1 (the exact 1 is
    taken for named priors only). Against the float64 reference and against the same
    targets given as probabilities."""
    num_classes = 10_000
    prior = np.full(num_classes, (1.0 + 9e-5) / num_classes)
    rng = np.random.default_rng(11)
    logits = rng.normal(scale=3.0, size=(4, num_classes))
    labels = rng.integers(0, num_classes, size=4)
    options = dict(smoothing=0.5, reduction="none")
    expected = reference.smooth_ce(logits, labels, prior=prior, **options)
    ids = lsr.smooth_ce(
        backend.asarray(logits), backend.asarray(labels), prior=backend.asarray(prior), **options
    )
    dense = lsr.smooth_ce(
        backend.asarray(logits),
        backend.asarray(np.eye(num_classes)[labels]),
        prior=backend.asarray(prior),
        **options,
    )
    assert_close(backend.to_numpy(ids), expected, "float64")
    assert_close(backend.to_numpy(dense), expected, "float64")
