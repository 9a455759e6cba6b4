"""lsr.jax.smooth_bce: the smoothed sigmoid cross-entropy against optax, the loss JAX users
already run, and through JAX's transforms (jit, grad, vmap, jvp, hessian).

Expected values come from ``optax.sigmoid_binary_cross_entropy``: at smoothing 0 on the
labels as they are, and at any smoothing on targets smoothed here by hand from the
published formula ``y' = (1 - eps) y + eps u`` (Keras/YOLOv5 ``u = 1/2``, timm
``u = 1/K``), and from ``_formula``: the definition written plainly with
``jax.nn.log_sigmoid``, whose own autodiff gives the expected gradients in every argument.
Nothing here shares code with lsr. tests/backends.py turns on x64 when JAX loads, so
float32 inputs are made explicitly.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lsr.jax
from tests.backends import assert_close
from tests.conftest import get_backend

get_backend("jax")  # x64 on, as in every JAX session
N, K = 6, 7
REDUCTIONS = ["none", "mean", "sum"]


def _inputs(dtype=jnp.float64, seed=0):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(scale=3.0, size=(N, K)), dtype)
    labels = jnp.asarray(rng.integers(0, 2, size=(N, K)))
    return logits, labels


def _soft(seed=1, dtype=jnp.float64):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(N, K)), dtype)


def _smoothed(labels, eps, u):
    """The published smoothed target, by hand: y (1 - eps) + eps u."""
    return labels * (1.0 - eps) + eps * u


def _reduce(per_element, reduction):
    if reduction == "none":
        return per_element
    return jnp.sum(per_element) if reduction == "sum" else jnp.mean(per_element)


def _formula(logits, labels, eps, u, weight, pos_weight, reduction):
    """-w [r y' log sigmoid(z) + (1 - y') log(1 - sigmoid(z))], differentiable in all."""
    target = _smoothed(labels, eps, u)
    per_element = -weight * (
        pos_weight * target * jax.nn.log_sigmoid(logits)
        + (1.0 - target) * jax.nn.log_sigmoid(-logits)
    )
    return _reduce(per_element, reduction)


def _close(actual, expected, dtype, scale=4.0):
    # Two implementations that round differently: a few ulps of the inputs' scale.
    assert_close(actual, expected, np.dtype(dtype), scale=scale)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("soft", [False, True])
def test_matches_optax_without_smoothing(soft, dtype):
    logits, labels = _inputs(dtype)
    targets = _soft(dtype=dtype) if soft else labels

    def ours(z):
        return lsr.jax.smooth_bce(z, targets, smoothing=0.0)

    def theirs(z):
        return optax.sigmoid_binary_cross_entropy(z, targets)

    got = jax.jit(ours)(logits)
    assert got.dtype == dtype and got.shape == (N, K)  # optax's default: no reduction
    _close(got, theirs(logits), dtype)
    weights = jnp.linspace(0.5, 2.0, N * K, dtype=dtype).reshape(N, K)
    _close(
        jax.jit(jax.grad(lambda z: jnp.sum(ours(z) * weights)))(logits),
        jax.grad(lambda z: jnp.sum(theirs(z) * weights))(logits),
        dtype,
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("smoothing", "prior", "u"),
    [
        (0.1, 0.5, 0.5),  # Keras, TF v1, YOLOv5
        (0.3, 0.0, 0.0),  # one-sided
        (0.2, "uniform", 1.0 / K),  # timm: y (1 - e) + e / K
        (0.15, np.linspace(0.05, 0.6, K), np.linspace(0.05, 0.6, K)),  # one u per label
    ],
)
def test_matches_optax_on_targets_smoothed_by_hand(smoothing, prior, u, reduction, dtype):
    logits, labels = _inputs(dtype, seed=2)
    prior = jnp.asarray(prior, dtype) if isinstance(prior, np.ndarray) else prior
    targets = _smoothed(labels.astype(dtype), smoothing, jnp.asarray(u, dtype))

    def ours(z):
        return lsr.jax.smooth_bce(z, labels, smoothing=smoothing, prior=prior, reduction=reduction)

    def theirs(z):
        return _reduce(optax.sigmoid_binary_cross_entropy(z, targets), reduction)

    _close(jax.jit(ours)(logits), theirs(logits), dtype)
    cotangent = jnp.linspace(-1.0, 2.0, N * K, dtype=dtype).reshape(N, K)
    if reduction != "none":
        cotangent = jnp.asarray(1.5, dtype)
    _close(
        jax.jit(jax.grad(lambda z: jnp.sum(ours(z) * cotangent)))(logits),
        jax.grad(lambda z: jnp.sum(theirs(z) * cotangent))(logits),
        dtype,
    )
    # The comparison can fail: without the smoothing, the numbers differ.
    assert not np.allclose(
        ours(logits), _reduce(optax.sigmoid_binary_cross_entropy(logits, labels), reduction)
    )


def test_pos_weight_and_weight_follow_the_definition():
    logits, labels = _inputs(seed=3)
    pos_weight = jnp.linspace(0.5, 3.0, K)
    weight = jnp.asarray(np.random.default_rng(3).uniform(0.2, 2.0, size=(N, 1)))
    for reduction in REDUCTIONS:
        got = lsr.jax.smooth_bce(
            logits, labels, weight=weight, pos_weight=pos_weight, reduction=reduction
        )
        want = _formula(logits, labels, 0.1, 0.5, weight, pos_weight, reduction)
        _close(got, want, np.float64)
    # pos_weight 1 and weight 1 are no weights: optax's number.
    ones = jnp.ones(K)
    _close(
        lsr.jax.smooth_bce(logits, labels, smoothing=0.0, weight=ones, pos_weight=ones),
        optax.sigmoid_binary_cross_entropy(logits, labels),
        np.float64,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradients_in_every_argument_match_autodiff_of_the_formula(reduction):
    logits, _ = _inputs(seed=4)
    args = (
        logits,
        _soft(seed=4),
        jnp.asarray(0.2),
        jnp.linspace(0.1, 0.9, K),
        jnp.asarray(np.random.default_rng(4).uniform(0.5, 2.0, size=K)),
        jnp.linspace(0.5, 2.5, K),
    )

    def ours(z, y, eps, u, w, r):
        return lsr.jax.smooth_bce(
            z, y, smoothing=eps, prior=u, weight=w, pos_weight=r, reduction=reduction
        )

    def theirs(z, y, eps, u, w, r):
        return _formula(z, y, eps, u, w, r, reduction)

    _close(ours(*args), theirs(*args), np.float64)
    # A nonlinear function of the loss, so that "none" is checked with unequal cotangents.
    for argnum in range(len(args)):
        got = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(ours(*a))), argnums=argnum))(*args)
        want = jax.grad(lambda *a: jnp.sum(jnp.sin(theirs(*a))), argnums=argnum)(*args)
        assert float(jnp.max(jnp.abs(want))) > 0
        _close(got, want, np.float64)


def test_gradient_with_respect_to_smoothing_matches_finite_differences():
    logits, labels = _inputs(seed=5)

    def loss(eps):
        return lsr.jax.smooth_bce(logits, labels, smoothing=eps, reduction="mean")

    step = 1e-6
    numeric = (loss(jnp.asarray(0.3 + step)) - loss(jnp.asarray(0.3 - step))) / (2 * step)
    _close(jax.grad(loss)(jnp.asarray(0.3)), numeric, np.float64, scale=1e4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_jit_vmap_and_grad_give_the_same_values(reduction):
    logits, labels = _inputs(seed=6)
    weight = jnp.linspace(0.5, 1.5, K)

    def loss(z, y):
        return lsr.jax.smooth_bce(z, y, smoothing=0.1, weight=weight, reduction=reduction)

    eager = loss(logits, labels)
    _close(jax.jit(loss)(logits, labels), eager, np.float64, scale=1.0)
    # vmap over the rows: each row its own call.
    mapped = jax.vmap(loss)(logits, labels)
    looped = jnp.stack([loss(logits[i], labels[i]) for i in range(N)])
    _close(mapped, looped, np.float64, scale=1.0)
    _close(jax.jit(jax.vmap(loss))(logits, labels), looped, np.float64, scale=1.0)

    def total(z):
        return jnp.sum(loss(z, labels))

    grad = jax.grad(total)(logits)
    _close(jax.jit(jax.grad(total))(logits), grad, np.float64, scale=1.0)
    per_row = jax.vmap(jax.grad(lambda z, y: jnp.sum(loss(z, y))))(logits, labels)
    if reduction == "mean":
        per_row = per_row / N  # each row's mean is over K elements, the whole over N K
    _close(per_row, grad, np.float64, scale=1.0)


def test_forward_mode_and_hessian_match_the_formula():
    logits, labels = _inputs(seed=7)
    args = (labels, 0.1, 0.5, 1.0, jnp.linspace(0.5, 2.0, K))
    tangent = jnp.asarray(np.random.default_rng(7).normal(size=(N, K)))
    for reduction in REDUCTIONS:

        def ours(z, reduction=reduction):
            return lsr.jax.smooth_bce(z, labels, pos_weight=args[-1], reduction=reduction)

        def theirs(z, reduction=reduction):
            return _formula(z, *args, reduction)

        _close(
            jax.jvp(ours, (logits,), (tangent,))[1],
            jax.jvp(theirs, (logits,), (tangent,))[1],
            np.float64,
        )
    hessian = jax.hessian(lambda z: lsr.jax.smooth_bce(z[0], labels[0], reduction="sum"))(logits)
    expected = jax.hessian(lambda z: _formula(z[0], labels[0], 0.1, 0.5, 1.0, 1.0, "sum"))(logits)
    _close(hessian, expected, np.float64)


def test_hessian_at_zero_logits_matches_the_formula():
    """At z = 0 exactly (where |z| has no derivative) the second derivative is the
    sigmoid's slope, 1/4 per unit of target mass. (jax 0.10 takes abs'(0) = 1, so this
    held before the loss's exp(-|z|) became a select too; it guards against a rule that
    gives 0 there.)"""
    logits, labels = _inputs(seed=9)
    logits = logits.at[0, ::2].set(0.0)
    for pos_weight in (1.0, 3.0):
        hessian = jax.hessian(
            lambda z, r=pos_weight: lsr.jax.smooth_bce(
                z[0], labels[0], smoothing=0.1, pos_weight=jnp.full((K,), r), reduction="sum"
            )
        )(logits)
        expected = jax.hessian(
            lambda z, r=pos_weight: _formula(z[0], labels[0], 0.1, 0.5, 1.0, r, "sum")
        )(logits)
        _close(hessian, expected, np.float64)


def test_a_traced_smoothing_and_prior_do_not_recompile():
    logits, labels = _inputs(seed=8)
    traces = []

    @jax.jit
    def step(z, eps, u):
        traces.append(None)
        return lsr.jax.smooth_bce(z, labels, smoothing=eps, prior=u, reduction="mean")

    for eps, u in [(0.0, 0.5), (0.1, 0.2), (0.3, 0.9)]:
        got = step(logits, jnp.asarray(eps), jnp.asarray(u))
        targets = _smoothed(labels, eps, u)
        _close(got, jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets)), np.float64)
    assert len(traces) == 1


def test_where_and_ignore_index_leave_elements_out():
    logits, labels = _inputs(seed=9)
    where = jnp.asarray(np.random.default_rng(9).uniform(size=(N, K)) < 0.6)
    mean = functools.partial(lsr.jax.smooth_bce, reduction="mean")
    loss, grad = jax.value_and_grad(mean)(logits, labels, where=where)
    per_element = optax.sigmoid_binary_cross_entropy(logits, _smoothed(labels, 0.1, 0.5))
    _close(loss, jnp.sum(jnp.where(where, per_element, 0.0)) / jnp.sum(where), np.float64)
    assert not np.asarray(grad)[~np.asarray(where)].any()
    # The same elements left out by ignore_index give the same loss and gradient.
    ignored = jnp.where(where, labels, -100)
    loss_ignored, grad_ignored = jax.jit(
        jax.value_and_grad(lambda z, y: mean(z, y, ignore_index=-100))
    )(logits, ignored)
    _close(loss_ignored, loss, np.float64, scale=1.0)
    _close(grad_ignored, grad, np.float64, scale=1.0)
    # A mean over nothing is 0, with a zero gradient.
    nothing = jnp.zeros((N, K), bool)
    loss, grad = jax.jit(jax.value_and_grad(mean))(logits, labels, where=nothing)
    assert float(loss) == 0.0 and not np.asarray(grad).any()


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_is_computed_in_float32(dtype):
    logits, labels = _inputs(seed=10)
    half = logits.astype(dtype)
    mean = functools.partial(lsr.jax.smooth_bce, reduction="mean")
    loss, grad = jax.value_and_grad(mean)(half, labels)
    assert loss.dtype == jnp.float32 and grad.dtype == dtype
    rounded = half.astype(jnp.float64)
    want = jnp.mean(optax.sigmoid_binary_cross_entropy(rounded, _smoothed(labels, 0.1, 0.5)))
    _close(loss, want, np.float32, scale=1.0)


def test_bad_input_raises_with_received():
    logits, labels = _inputs(seed=11)
    with pytest.raises(ValueError, match=r"`labels` must have the logits' shape.*Received:"):
        lsr.jax.smooth_bce(logits, labels[:, :-1])
    bad = labels.at[2, 3].set(2)
    with pytest.raises(ValueError, match=r"`labels` must be 0 or 1.*Received: .*max=2"):
        lsr.jax.smooth_bce(logits, bad)
    with pytest.raises(ValueError, match=r"`labels` must be in \[0, 1\].*Received:"):
        lsr.jax.smooth_bce(logits, _soft() + 1.0)
    with pytest.raises(ValueError, match=r"`prior`.*\[0, 1\].*Received: prior=1.5"):
        lsr.jax.smooth_bce(logits, labels, prior=1.5)
    with pytest.raises(ValueError, match=r"`prior`.*\[0, 1\].*Received:"):
        lsr.jax.smooth_bce(logits, labels, prior=jnp.full(K, 1.5))
    with pytest.raises(ValueError, match=r"Received: smoothing=1.5"):
        lsr.jax.smooth_bce(logits, labels, smoothing=1.5)
    with pytest.raises(ValueError, match=r"`pos_weight` must broadcast.*Received:"):
        lsr.jax.smooth_bce(logits, labels, pos_weight=jnp.ones(K + 1))
    # Concrete labels closed over by a jitted function are checked when it is traced.
    with pytest.raises(ValueError, match=r"`labels` must be 0 or 1.*Received:"):
        jax.jit(lambda z: lsr.jax.smooth_bce(z, bad))(logits)
    # Shapes are checked at trace time, traced or not.
    with pytest.raises(ValueError, match=r"`labels` must have the logits' shape.*Received:"):
        jax.jit(lsr.jax.smooth_bce)(logits, labels[:, :-1])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_traced_out_of_range_labels_give_nan(reduction):
    logits, labels = _inputs(seed=12)
    bad = labels.at[2, 3].set(2)

    @jax.jit
    def loss_and_grad(z, y):
        return jax.value_and_grad(lambda z: jnp.sum(lsr.jax.smooth_bce(z, y, reduction=reduction)))(
            z
        )

    value, grad = loss_and_grad(logits, bad)
    assert np.isnan(float(value))
    assert np.isnan(float(grad[2, 3]))
    per_element = jax.jit(lsr.jax.smooth_bce)(logits, bad)
    assert (
        np.isnan(per_element[2, 3]) and np.isfinite(np.delete(per_element.ravel(), 2 * K + 3)).all()
    )
    # The same elements with valid labels give a finite number: the NaN is the label's.
    value, grad = loss_and_grad(logits, labels)
    assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()
    # A traced soft label above 1 too; and under vmap.
    soft = _soft(seed=12).at[0, 0].set(1.5)
    assert np.isnan(float(jax.jit(lambda y: jnp.sum(lsr.jax.smooth_bce(logits, y)))(soft)))
    rows = jax.vmap(lambda z, y: lsr.jax.smooth_bce(z, y, reduction="mean"))(logits, bad)
    assert np.isnan(rows[2]) and np.isfinite(np.delete(np.asarray(rows), 2)).all()
    # A weight of 0 there does not hide it; the soft labels' own gradient is NaN there.
    weight = jnp.ones(logits.shape).at[2, 3].set(0.0)
    value, grad = jax.jit(
        jax.value_and_grad(
            lambda z, y: lsr.jax.smooth_bce(z, y, weight=weight, reduction=reduction).sum(),
            argnums=(0, 1),
        )
    )(logits, _soft(seed=12).at[2, 3].set(1.5))
    assert np.isnan(float(value)) and np.isnan(float(grad[0][2, 3]))
    assert (
        np.isnan(float(grad[1][2, 3]))
        and np.isfinite(np.delete(np.asarray(grad[1]), 2 * K + 3)).all()
    )


def test_array_likes_become_jax_arrays():
    logits, labels = _inputs(seed=13)
    got = lsr.jax.smooth_bce(np.asarray(logits).tolist(), np.asarray(labels), reduction="sum")
    assert isinstance(got, jax.Array)
    _close(got, lsr.jax.smooth_bce(logits, labels, reduction="sum"), np.float64, scale=1.0)


def test_a_left_out_infinite_logit_does_not_reach_the_options_gradients():
    logits = jnp.array([[0.5, -1.0, -jnp.inf]])
    kept = jnp.array([[True, True, False]])
    labels = jnp.array([[0.8, 0.1, 1.0]])

    def loss(labels, weight, pos_weight):
        return lsr.jax.smooth_bce(
            logits, labels, where=kept, weight=weight, pos_weight=pos_weight, reduction="mean"
        )

    grads = jax.grad(loss, argnums=(0, 1, 2))(labels, jnp.ones(3), jnp.full(3, 2.0))
    for grad in grads:
        assert np.isfinite(np.asarray(grad)).all()
        assert float(np.asarray(grad).reshape(-1)[-1]) == 0.0
