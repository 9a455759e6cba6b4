"""lsr.jax: the core's numbers through JAX's transforms (jit, grad, vmap, jvp, hessian).

Expected values come from tests/reference.py (float64 NumPy, written from the definition)
and from ``_jnp_reference`` below: the same definition written plainly in jax.numpy
(a dense q' and ``jax.nn.log_softmax``), so that JAX's own autodiff of it gives the
expected gradients, Jacobian-vector products and Hessians. Nothing here shares code with
lsr. tests/backends.py turns on x64 when JAX loads, so float32 inputs are made explicitly.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lsr
import lsr.jax
from tests import reference
from tests.backends import assert_close
from tests.conftest import get_backend

get_backend("jax")  # x64 on, as in every JAX session
K = 5
# lsr.jax.smooth_ce returns per-example losses by default (optax's convention,
# tests/test_jax_optax.py); most checks here are of the reduced loss, as tests/reference.py
# computes it by default. An explicit ``reduction=`` still wins over this one.
smooth_ce_mean = functools.partial(lsr.jax.smooth_ce, reduction="mean")


def _close(actual, expected, dtype, scale=1.0):
    """tests.backends.assert_close with tolerances from ``dtype`` (a NumPy or JAX dtype)."""
    assert_close(actual, expected, np.dtype(dtype), scale=scale)


def _jnp_reference(
    logits,
    labels,
    *,
    smoothing=0.1,
    prior="uniform",
    axis=-1,
    ignore_index=None,
    weight=None,
    where=None,
    reduction="mean",
    kl=False,
    z_loss=0.0,
):
    """-sum_k w_k q'_k log softmax(z)_k with q' built densely; differentiable in everything."""
    z = jnp.moveaxis(logits, axis, -1)
    num_classes = z.shape[-1]
    dense = jnp.issubdtype(labels.dtype, jnp.floating)
    q = jnp.moveaxis(labels, axis, -1) if dense else jax.nn.one_hot(labels, num_classes)
    if isinstance(prior, str) and prior == "uniform":
        u = jnp.full(q.shape, 1.0 / num_classes)
    elif isinstance(prior, str):
        u = (1.0 - q) / (num_classes - 1)
    else:
        u = jnp.broadcast_to(prior, q.shape)
    targets = (1.0 - smoothing) * q + smoothing * u
    w = jnp.ones(num_classes) if weight is None else weight
    loss = -jnp.sum(w * targets * jax.nn.log_softmax(z, axis=-1), axis=-1)
    if kl:
        loss = loss + jnp.sum(w * jax.scipy.special.xlogy(targets, targets), axis=-1)
    if z_loss:
        loss = loss + z_loss * jax.nn.logsumexp(z, axis=-1) ** 2
    keep = jnp.ones(loss.shape, bool)
    if ignore_index is not None:
        keep = keep & (labels != ignore_index)
    if where is not None:
        keep = keep & where
    loss = jnp.where(keep, loss, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if dense or weight is None:
        denominator = jnp.sum(keep)
    else:
        denominator = jnp.sum(jnp.where(keep, weight[jnp.where(keep, labels, 0)], 0.0))
    return jnp.sum(loss) / denominator


def _inputs(dense, dtype=np.float64, shape=(2, 3), seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(*shape, K)).astype(dtype)
    if dense:
        labels = rng.dirichlet(np.ones(K), size=shape).astype(dtype)
    else:
        labels = rng.integers(0, K, size=shape)
        labels[0, 1] = -100
    return logits, labels


def _prior_vector(dtype=np.float64):
    prior = np.linspace(1.0, 2.0, K)
    return (prior / prior.sum()).astype(dtype)


def _options(prior, weighted, reduction, dense, dtype=np.float64, kl=False, z_loss=0.0):
    return dict(
        smoothing=0.15,
        prior=jnp.asarray(_prior_vector(dtype)) if prior == "vector" else prior,
        weight=jnp.asarray(np.linspace(0.5, 1.5, K).astype(dtype)) if weighted else None,
        ignore_index=None if dense else -100,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
    )


def _numpy_options(options):
    return {
        name: (np.asarray(value) if isinstance(value, jax.Array) else value)
        for name, value in options.items()
    }


def _scalar_output(reduction, shape):
    """Makes "none" scalar with distinct weights per position, so each row is checked."""
    if reduction != "none":
        return lambda loss: loss
    position_weights = jnp.arange(1.0, 1.0 + np.prod(shape)).reshape(shape)
    return lambda loss: jnp.sum(loss * position_weights.astype(loss.dtype))


GRID = list(
    itertools.product(
        ["uniform", "others", "vector"],
        [False, True],  # class weights
        ["mean", "sum", "none"],
        [False, True],  # dense labels
    )
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("prior", "weighted", "reduction", "dense"), GRID)
def test_loss_and_gradient_match_the_references_under_jit(prior, weighted, reduction, dense, dtype):
    logits, labels = _inputs(dense, dtype)
    options = _options(prior, weighted, reduction, dense, dtype, kl=prior == "others", z_loss=0.01)
    scalar = _scalar_output(reduction, labels.shape[:2])

    def loss_fn(z):
        return scalar(smooth_ce_mean(z, jnp.asarray(labels), **options))

    value, grad = jax.jit(jax.value_and_grad(loss_fn))(jnp.asarray(logits))
    assert value.dtype == dtype and grad.dtype == dtype

    expected = reference.smooth_ce(logits, labels, **_numpy_options(options))
    loss = smooth_ce_mean(jnp.asarray(logits), jnp.asarray(labels), **options)
    _close(loss, expected, dtype)
    ref_options = {**options, "prior": jnp.asarray(_prior_vector()) if prior == "vector" else prior}
    if weighted:
        ref_options["weight"] = jnp.asarray(np.linspace(0.5, 1.5, K))
    ref_labels = jnp.asarray(labels, np.float64) if dense else jnp.asarray(labels)
    expected_grad = jax.grad(lambda z: scalar(_jnp_reference(z, ref_labels, **ref_options)))(
        jnp.asarray(logits, np.float64)
    )
    _close(grad, expected_grad, dtype, scale=10)


def test_published_optax_value():
    # optax's documented softmax_cross_entropy example (issue 2): no smoothing.
    logits = jnp.array([[10.0, 1.0, -2.0], [1.0, 4.0, 0.2]], jnp.float32)
    one_hot = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], jnp.float32)
    expected = [9.00013, 3.0696733]
    dense = lsr.jax.smooth_ce(logits, one_hot, smoothing=0.0, reduction="none")
    ids = lsr.jax.smooth_ce(logits, jnp.array([1, 0]), smoothing=0.0, reduction="none")
    np.testing.assert_allclose(dense, expected, rtol=1e-6)
    np.testing.assert_allclose(ids, expected, rtol=1e-6)


def test_array_likes_become_jax_arrays():
    logits, labels = _inputs(dense=False)
    labels = np.where(labels < 0, 0, labels)
    expected = reference.smooth_ce(logits, labels)
    from_lists = smooth_ce_mean(logits.tolist(), labels.tolist())
    from_numpy = smooth_ce_mean(logits, labels, weight=np.ones(K), where=np.ones((2, 3), bool))
    for loss in (from_lists, from_numpy):
        assert isinstance(loss, jax.Array)
        _close(loss, expected, np.float64)
    targets = lsr.jax.smooth_labels([[0.0, 1.0, 0.0]], smoothing=0.3)
    assert isinstance(targets, jax.Array)
    np.testing.assert_allclose(targets, [[0.1, 0.8, 0.1]], rtol=1e-12)


def test_class_axis_one_segmentation_layout():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, K, 3, 4))
    labels = rng.integers(0, K, size=(2, 3, 4))
    labels[1, 2, 3] = 255
    options = dict(axis=1, ignore_index=255, smoothing=0.2, prior="others")
    loss, grad = jax.value_and_grad(smooth_ce_mean)(
        jnp.asarray(logits), jnp.asarray(labels), **options
    )
    _close(loss, reference.smooth_ce(logits, labels, **options), np.float64)
    expected_grad = jax.grad(_jnp_reference)(jnp.asarray(logits), jnp.asarray(labels), **options)
    _close(grad, expected_grad, np.float64)
    assert float(jnp.max(jnp.abs(grad[1, :, 2, 3]))) == 0.0


def test_loss_and_gradient_compile_to_one_computation():
    logits, labels = _inputs(dense=False)
    traces = []

    def loss_fn(z, y):
        traces.append(1)
        return smooth_ce_mean(z, y, ignore_index=-100)

    step = jax.jit(jax.value_and_grad(loss_fn))
    compiled = step.lower(jnp.asarray(logits), jnp.asarray(labels)).compile()
    text = compiled.as_text()
    assert text.count("ENTRY") == 1
    # No host callbacks or separately launched pieces: one XLA program does it all.
    assert "custom-call" not in text and "callback" not in text.lower()
    value, _ = compiled(jnp.asarray(logits), jnp.asarray(labels))
    _close(value, reference.smooth_ce(logits, labels, ignore_index=-100), np.float64)
    for seed in (1, 2):  # new values, same shapes: no new trace
        new_logits, new_labels = _inputs(dense=False, seed=seed)
        value, _ = step(jnp.asarray(new_logits), jnp.asarray(new_labels))
        expected = reference.smooth_ce(new_logits, new_labels, ignore_index=-100)
        _close(value, expected, np.float64)
    assert len(traces) == 1


def test_custom_gradient_needs_less_temporary_memory_than_autodiff_of_the_core():
    # What the custom rule is for: the backward pass works from the logits and one
    # logsumexp per position instead of the forward pass's N x K intermediates.
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(256, 1000)), jnp.float32)
    labels = jnp.arange(256) % 1000

    def temp_bytes(loss):
        step = jax.jit(jax.value_and_grad(loss))
        return step.lower(logits, labels).compile().memory_analysis().temp_size_in_bytes

    custom = temp_bytes(lambda z, y: smooth_ce_mean(z, y))
    autodiff = temp_bytes(lambda z, y: lsr.smooth_ce(z, y))
    assert custom < autodiff
    assert custom < logits.nbytes


@pytest.mark.skipif(
    jax.__version_info__ < (0, 10),
    reason="the XLA CPU programs measured are jaxlib 0.10's (the pinned version); older "
    "ones store other temporaries, with or without the fix",
)
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_loss_alone_keeps_no_logits_sized_temporary_under_jit(dtype, reduction):
    # XLA's CPU backend stores an array that two of the loss's reductions read: the row
    # maxima broadcast to the logits' shape, for one, a new buffer on every call (2048 x
    # 32000 float32: 113 against 50 ms, benchmarks/results/2026-12-06-jax-forward/).
    # Half-precision logits keep their one float32 copy, and nothing more.
    logits = jnp.zeros((256, 1000), dtype)
    labels = jnp.arange(256) % 1000
    step = jax.jit(lambda z, y: lsr.jax.smooth_ce(z, y, reduction=reduction))
    temp = step.lower(logits, labels).compile().memory_analysis().temp_size_in_bytes
    float32_copies = 0 if dtype == "float32" else 1
    assert temp < (float32_copies + 1) * logits.size * 4


def test_a_schedule_of_smoothing_and_prior_does_not_recompile():
    logits, labels = _inputs(dense=False)
    labels = np.where(labels < 0, 1, labels)
    traces = []

    @jax.jit
    def loss_fn(z, y, smoothing, prior):
        traces.append(1)
        return jax.value_and_grad(smooth_ce_mean)(z, y, smoothing=smoothing, prior=prior)

    prior = jnp.asarray(_prior_vector())
    for smoothing in (0.1, 0.3, 0.0):
        value, _ = loss_fn(jnp.asarray(logits), jnp.asarray(labels), smoothing, prior)
        expected = reference.smooth_ce(logits, labels, smoothing=smoothing, prior=_prior_vector())
        _close(value, expected, np.float64)
    uniform = jnp.asarray(np.full(K, 1.0 / K))
    value, _ = loss_fn(jnp.asarray(logits), jnp.asarray(labels), 0.2, uniform)
    _close(value, reference.smooth_ce(logits, labels, smoothing=0.2), np.float64)
    assert len(traces) == 1


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_vmap_equals_a_loop(reduction):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 4, K))
    labels = rng.integers(0, K, size=(3, 4))
    weight = jnp.asarray(np.linspace(0.5, 1.5, K))

    def loss_fn(z, y):
        return lsr.jax.smooth_ce(z, y, weight=weight, prior="others", reduction=reduction)

    batched = jax.vmap(loss_fn)(jnp.asarray(logits), jnp.asarray(labels))
    batched_grad = jax.vmap(jax.grad(lambda z, y: jnp.sum(loss_fn(z, y))))(
        jnp.asarray(logits), jnp.asarray(labels)
    )

    def expected_total(z, y):
        return jnp.sum(_jnp_reference(z, y, weight=weight, prior="others", reduction=reduction))

    for i in range(3):
        expected = reference.smooth_ce(
            logits[i], labels[i], weight=np.asarray(weight), prior="others", reduction=reduction
        )
        _close(batched[i], expected, np.float64)
        expected_grad = jax.grad(expected_total)(jnp.asarray(logits[i]), jnp.asarray(labels[i]))
        _close(batched_grad[i], expected_grad, np.float64)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("prior", ["uniform", "vector"])
def test_forward_mode_jvp_and_jacobians(prior, reduction):
    logits, labels = _inputs(dense=False, seed=5)
    options = _options(prior, True, reduction, dense=False, z_loss=0.01)
    tangent = jnp.asarray(np.random.default_rng(6).normal(size=logits.shape))

    def loss_fn(z):
        return smooth_ce_mean(z, jnp.asarray(labels), **options)

    def expected_fn(z):
        return _jnp_reference(z, jnp.asarray(labels), **options)

    value, derivative = jax.jvp(loss_fn, (jnp.asarray(logits),), (tangent,))
    expected_value, expected_derivative = jax.jvp(expected_fn, (jnp.asarray(logits),), (tangent,))
    _close(value, expected_value, np.float64)
    _close(derivative, expected_derivative, np.float64)
    forward = jax.jacfwd(loss_fn)(jnp.asarray(logits))
    _close(forward, jax.jacrev(loss_fn)(jnp.asarray(logits)), np.float64)
    _close(forward, jax.jacfwd(expected_fn)(jnp.asarray(logits)), np.float64)


@pytest.mark.parametrize(
    "options",
    [
        dict(smoothing=0.1),
        dict(smoothing=0.3, prior="others", weight=np.linspace(0.5, 1.5, K), kl=True),
        dict(smoothing=0.2, prior=_prior_vector(), z_loss=0.05, reduction="sum"),
    ],
)
@pytest.mark.parametrize("dense", [False, True])
def test_hessian_matches_autodiff_of_the_reference(options, dense):
    logits, labels = _inputs(dense=dense, shape=(2, 2), seed=7)
    labels = np.where(np.asarray(labels) < 0, 2, labels)
    options = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}

    hessian = jax.jit(jax.hessian(lambda z, y: smooth_ce_mean(z, y, **options)))(
        jnp.asarray(logits), jnp.asarray(labels)
    )
    expected = jax.hessian(_jnp_reference)(jnp.asarray(logits), jnp.asarray(labels), **options)
    assert hessian.shape == (2, 2, K, 2, 2, K)
    _close(hessian, expected, np.float64)


def test_hessian_where_a_row_has_all_its_probability_on_one_class():
    """A row whose other logits are far below its maximum: their exponentials underflow
    to 0 and the row's sum of exp(z - max z) is exactly 1 (the bound of the core's guard
    against a sum of 0); its Hessian is still autodiff's of the reference."""
    logits = jnp.asarray([[0.0, -200.0, -200.0, -200.0], [0.5, -1.0, 2.0, 0.0]], jnp.float32)
    labels = jnp.asarray([1, 2])
    hessian = jax.jit(jax.hessian(lambda z: smooth_ce_mean(z, labels)))(logits)
    expected = jax.hessian(lambda z: _jnp_reference(z, labels))(logits)
    _close(hessian, expected, np.float32)


def test_gradients_with_respect_to_soft_labels_weight_prior_and_smoothing():
    # Distillation (a teacher's soft targets), learned class weights, a learned prior,
    # and d loss / d epsilon: all through the core's forward pass, checked against JAX's
    # autodiff of the dense reference.
    logits, soft = _inputs(dense=True, seed=8)
    args = (
        jnp.asarray(soft),
        jnp.asarray(np.linspace(0.5, 1.5, K)),
        jnp.asarray(_prior_vector()),
        jnp.asarray(0.2),
    )

    def make(fn):
        def loss(targets, weight, prior, smoothing):
            return fn(jnp.asarray(logits), targets, weight=weight, prior=prior, smoothing=smoothing)

        return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))

    grads = make(smooth_ce_mean)(*args)
    expected = make(_jnp_reference)(*args)
    for got, want in zip(grads, expected, strict=True):
        _close(got, want, np.float64)
        assert float(jnp.max(jnp.abs(want))) > 0

    # Integer labels: the weight gradient includes the mean's denominator sum w_y.
    _, ids = _inputs(dense=False, seed=8)
    ids = jnp.asarray(np.where(ids < 0, 0, ids))
    got = jax.grad(lambda w: smooth_ce_mean(jnp.asarray(logits), ids, weight=w))(args[1])
    want = jax.grad(lambda w: _jnp_reference(jnp.asarray(logits), ids, weight=w))(args[1])
    _close(got, want, np.float64)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_out_of_range_labels_under_jit_give_nan(reduction):
    logits, labels = _inputs(dense=False)
    labels = np.where(labels < 0, 0, labels)
    bad = labels.copy()
    bad[1, 2] = K  # one past the last class

    @jax.jit
    def loss_and_grad(z, y):
        return jax.value_and_grad(lambda z: jnp.sum(lsr.jax.smooth_ce(z, y, reduction=reduction)))(
            z
        )

    value, grad = loss_and_grad(jnp.asarray(logits), jnp.asarray(bad))
    assert np.isnan(float(value))
    # The bad position's gradient row is NaN (any parameter it reaches becomes NaN); the
    # other rows are their own positions' gradients, as autodiff of the sum gives them.
    grad = np.asarray(grad)
    assert np.isnan(grad[1, 2]).all()
    assert np.isfinite(np.delete(grad.reshape(6, K), 5, axis=0)).all()
    per_position = jax.jit(lambda z, y: lsr.jax.smooth_ce(z, y, reduction="none"))(
        jnp.asarray(logits), jnp.asarray(bad)
    )
    assert np.isnan(per_position[1, 2]) and np.isfinite(per_position[0]).all()
    # The same labels, in range, give a finite number: the NaN comes from the bad id.
    value, _ = loss_and_grad(jnp.asarray(logits), jnp.asarray(labels))
    assert np.isfinite(float(value))


def test_concrete_out_of_range_labels_raise_even_inside_jit():
    logits, labels = _inputs(dense=False)
    bad = jnp.asarray(np.where(labels < 0, -1, labels))
    with pytest.raises(ValueError, match=r"labels.*\[0, 5\).*min=-1"):
        lsr.jax.smooth_ce(jnp.asarray(logits), bad)
    # Labels closed over by a jitted function are concrete: checked when it is traced.
    with pytest.raises(ValueError, match=r"labels.*\[0, 5\)"):
        jax.jit(lambda z: lsr.jax.smooth_ce(z, bad))(jnp.asarray(logits))
    not_a_distribution = jnp.ones(K)
    with pytest.raises(ValueError, match=r"prior.*sum to 1"):
        jax.jit(lambda z: lsr.jax.smooth_ce(z, bad, ignore_index=-1, prior=not_a_distribution))(
            jnp.asarray(logits)
        )


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        (dict(smoothing=1.5), ValueError, r"smoothing=1.5"),
        (dict(reduction="avg"), ValueError, r"reduction='avg'"),
        (dict(prior="label"), ValueError, r"prior='label'"),
        (dict(prior=np.ones(K + 1) / (K + 1)), ValueError, r"prior.*shape \(5,\)"),
        (dict(weight=np.ones(K - 1)), ValueError, r"weight.*shape \(5,\)"),
        (dict(where=np.ones((2, 3, K), bool)), ValueError, r"where.*\(2, 3\)"),
        (dict(ignore_index=1.5), TypeError, r"ignore_index=1.5"),
    ],
)
def test_bad_options_raise_at_trace_time(options, error, pattern):
    logits, labels = _inputs(dense=False)
    labels = np.where(labels < 0, 0, labels)
    with pytest.raises(error, match=pattern):
        jax.jit(lambda z, y: lsr.jax.smooth_ce(z, y, **options))(
            jnp.asarray(logits), jnp.asarray(labels)
        )


def test_bad_shapes_and_dtypes_raise_at_trace_time():
    logits = jnp.zeros((2, 3, K))
    step = jax.jit(lsr.jax.smooth_ce)
    with pytest.raises(ValueError, match=r"labels.*\(2, 3\)"):
        step(logits, jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"Dense .*labels.*\(2, 3, 5\)"):
        step(logits, jnp.zeros((2, 3, K + 1)))
    with pytest.raises(TypeError, match=r"logits.*floating"):
        step(jnp.zeros((2, 3, K), jnp.int32), jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(TypeError, match=r"labels"):
        step(logits, jnp.zeros((2, 3), bool))


def test_where_mask_leaves_positions_out_like_ignored_ones():
    logits, labels = _inputs(dense=False, seed=9)
    labels = np.where(labels < 0, 0, labels)
    where = np.array([[True, False, True], [False, False, True]])
    loss, grad = jax.value_and_grad(smooth_ce_mean)(
        jnp.asarray(logits), jnp.asarray(labels), where=jnp.asarray(where)
    )
    _close(loss, reference.smooth_ce(logits, labels, where=where), np.float64)
    assert not np.asarray(grad)[~where].any()
    nothing = jnp.zeros((2, 3), bool)
    loss, grad = jax.value_and_grad(smooth_ce_mean)(
        jnp.asarray(logits), jnp.asarray(labels), where=nothing
    )
    assert float(loss) == 0.0 and not np.asarray(grad).any()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_is_computed_in_float32(dtype):
    logits, labels = _inputs(dense=False)
    labels = np.where(labels < 0, 0, labels)
    half = jnp.asarray(logits, dtype)
    loss, grad = jax.value_and_grad(smooth_ce_mean)(half, jnp.asarray(labels))
    assert loss.dtype == jnp.float32 and grad.dtype == dtype
    rounded = np.asarray(half.astype(jnp.float32), np.float64)
    _close(loss, reference.smooth_ce(rounded, labels), np.float32)


def test_smooth_labels_and_estimate_prior():
    ids = jnp.array([[0, 4], [2, 2]])
    targets = lsr.jax.smooth_labels(ids, K, smoothing=0.2, prior="others", axis=1)
    expected = np.moveaxis(reference.smoothed_targets(ids, K, smoothing=0.2, prior="others"), -1, 1)
    assert targets.shape == (2, K, 2)
    np.testing.assert_allclose(targets, expected, rtol=1e-12)
    traced = jax.jit(lambda eps: lsr.jax.smooth_labels(ids, K, smoothing=eps))(0.3)
    expected = reference.smoothed_targets(ids, K, smoothing=0.3, prior="uniform")
    np.testing.assert_allclose(traced, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="num_classes"):
        lsr.jax.smooth_labels(ids)
    prior = lsr.jax.estimate_prior(jnp.array([0, 0, 1, 4, -1]), K, ignore_index=-1)
    np.testing.assert_allclose(prior, [0.5, 0.25, 0.0, 0.0, 0.25])


def _compilations(call):
    """How many XLA programs ``call()`` compiles (JAX's own compile log)."""
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles():
            jax.block_until_ready(call())
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().count("Compiling")


def test_eager_calls_compile_once_per_shape():
    """Called without ``jax.jit``, each loss compiles one program per shape and options,
    not one per call (its variadic reduction and the linear loss's scan once did: 100 ms
    per call on an 8 x 4 input)."""
    logits = jnp.linspace(-2.0, 2.0, 32).reshape(8, 4)
    labels = jnp.array([0, 1, 2, 3, 0, 1, 2, 3])
    hidden, kernel = jnp.ones((8, 16)) / 16, jnp.linspace(-1.0, 1.0, 64).reshape(16, 4)
    calls = {
        "smooth_ce": lambda: lsr.jax.smooth_ce(logits, labels, reduction="mean"),
        "linear_smooth_ce": lambda: lsr.jax.linear_smooth_ce(hidden, kernel, labels),
        "smooth_bce": lambda: lsr.jax.smooth_bce(logits, (logits > 0).astype(jnp.float32)),
    }
    for name, call in calls.items():
        call()
        assert _compilations(call) == 0, name
    # The log is read: an eager reduction with a new reducer each time compiles.
    fresh = lambda: jax.lax.reduce(logits, 0.0, lambda a, b: a + b, (1,))  # noqa: E731
    assert _compilations(fresh) > 0


def test_jitted_distillation_loss_with_a_temperature_not_above_zero_is_nan():
    """Under jit the temperature cannot be read: one that is not > 0 makes the loss NaN
    (eagerly it raises), never a plausible number."""
    student = jnp.asarray(np.random.default_rng(9).normal(size=(4, K)), jnp.float32)
    teacher = jnp.asarray(np.random.default_rng(10).normal(size=(4, K)), jnp.float32)
    loss = jax.jit(
        lambda t: lsr.jax.distill_loss(student, teacher, temperature=t, reduction="mean")
    )
    assert np.isfinite(float(loss(jnp.float32(2.0))))
    for bad in (-1.0, 0.0, np.nan):
        assert np.isnan(float(loss(jnp.float32(bad))))
