"""Soft-capping of the logits (``softcap``): the loss and its gradient are those of
``cap * tanh(z / cap)``, on every pass of the core and every selected backend, against
the plain float64 reference and central differences of it."""

from __future__ import annotations

import numpy as np
import pytest

import lsr
from lsr import _core
from lsr._checks import prepare_smooth_ce
from tests import reference
from tests.backends import assert_close, selected_backends
from tests.conftest import get_backend

K = 5
CAP = 1.5
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5, 0.75])
PRIOR_VECTOR = np.array([0.1, 0.3, 0.2, 0.25, 0.15])


def _case(seed, dense):
    rng = np.random.default_rng(seed)
    # Logits well beyond the cap, so capping changes the numbers.
    logits = rng.normal(scale=4.0, size=(6, K))
    if dense:
        labels = rng.dirichlet(np.ones(K), size=6)
    else:
        labels = rng.integers(0, K, size=6)
        labels[::3] = 255
    return logits, labels


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("prior", ["uniform", "others", "vector"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_every_pass_caps_the_logits(backend, dense, prior, reduction):
    logits, labels = _case(1, dense)
    options = dict(
        smoothing=0.2,
        prior=PRIOR_VECTOR if prior == "vector" else prior,
        axis=-1,
        ignore_index=None if dense else 255,
        weight=WEIGHT,
        reduction=reduction,
        z_loss=0.01,
        softcap=CAP,
    )
    expected = reference.smooth_ce(logits, labels, **options)
    uncapped = reference.smooth_ce(logits, labels, **{**options, "softcap": None})
    assert not np.allclose(expected, uncapped)  # (the case exercises the cap)
    cotangent = np.random.default_rng(2).normal(size=6) if reduction == "none" else 0.7
    expected_grad = reference.numerical_gradient(
        lambda z: float(np.sum(reference.smooth_ce(z, labels, **options) * cotangent)), logits
    )
    as_backend = {
        "prior": backend.asarray(PRIOR_VECTOR) if prior == "vector" else prior,
        "weight": backend.asarray(WEIGHT),
    }
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits), backend.asarray(labels), **{**options, **as_backend}
    )
    # The public function, the forward pass, and the backward from a saved lse.
    assert_close(
        backend.to_numpy(lsr.smooth_ce(z, y, **{**options, **as_backend})), expected, "float64"
    )
    loss, lse, denominator = _core.smooth_ce(z, y, spec, xp=xp)
    assert_close(backend.to_numpy(loss), expected, "float64")
    grad = _core.smooth_ce_grad(
        z, y, lse, denominator, backend.asarray(np.asarray(cotangent)), spec, xp=xp
    )
    np.testing.assert_allclose(backend.to_numpy(grad), expected_grad, rtol=1e-6, atol=1e-7)
    # The fused pass (loss and gradient from one exp), whole and in blocks of rows.
    loss, fused = _core.reduced_loss_and_grad(z, y, spec, xp=xp)
    assert_close(backend.to_numpy(loss), expected, "float64")
    if reduction != "none":
        np.testing.assert_allclose(
            backend.to_numpy(fused) * cotangent, expected_grad, rtol=1e-6, atol=1e-7
        )
    if backend.name in ("numpy", "array_api_strict", "torch") and reduction != "none":
        out = backend.asarray(np.zeros(logits.shape))
        blocks = [slice(0, 4), slice(4, 6)]
        loss, _, _, _ = _core.blocked_loss_and_grad(
            z, y, spec, xp=xp, blocks=blocks, out=out, scratch=None
        )
        assert_close(backend.to_numpy(loss), expected, "float64")
        np.testing.assert_allclose(
            backend.to_numpy(out) * cotangent, expected_grad, rtol=1e-6, atol=1e-7
        )


def test_a_masked_class_stays_masked(backend):
    """-inf is not capped to -cap: the class keeps probability 0, and its gradient 0."""
    logits = np.array([[2.0, -np.inf, 0.5, 40.0, -3.0]])
    labels = np.array([0])
    expected = reference.smooth_ce(logits, labels, smoothing=0.0, softcap=CAP)
    loss = lsr.smooth_ce(
        backend.asarray(logits), backend.asarray(labels), smoothing=0.0, softcap=CAP
    )
    assert np.isfinite(expected)
    assert_close(backend.to_numpy(loss), expected, "float64")
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        smoothing=0.0,
        prior="uniform",
        axis=-1,
        ignore_index=None,
        weight=None,
        reduction="mean",
        softcap=CAP,
    )
    _, grad = _core.reduced_loss_and_grad(z, y, spec, xp=xp)
    grad = backend.to_numpy(grad)
    assert np.all(np.isfinite(grad)) and grad[0, 1] == 0.0


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0.0, ValueError),
        (-1.0, ValueError),
        (float("inf"), ValueError),
        (True, TypeError),
        ("30", TypeError),
    ],
)
def test_bad_caps_are_refused(value, error):
    with pytest.raises(
        error,
        match=r"`softcap` must be None or a finite positive number\."
        r" Received: softcap=",
    ):
        lsr.smooth_ce(np.zeros((2, K)), np.array([0, 1]), softcap=value)


def _adapter_loss_and_grad(name, logits, labels, **options):
    """(loss, d loss / d logits) through one adapter's public smooth_ce, class axis last."""
    if name == "jax":
        import jax
        import jax.numpy as jnp

        import lsr.jax

        def loss_fn(z):
            return lsr.jax.smooth_ce(z, jnp.asarray(labels), **options)

        loss, grad = jax.value_and_grad(loss_fn)(jnp.asarray(logits))
        return np.asarray(loss), np.asarray(grad)
    if name == "torch":
        import torch

        import lsr.torch

        z = torch.tensor(logits, requires_grad=True)
        loss = lsr.torch.smooth_ce(z, torch.tensor(labels), axis=-1, **options)
        loss.backward()
        return loss.detach().numpy(), z.grad.numpy()
    import tensorflow as tf

    import lsr.tensorflow

    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = lsr.tensorflow.smooth_ce(z, tf.constant(labels), **options)
    return loss.numpy(), tape.gradient(loss, z).numpy()


ADAPTERS = [name for name in ("jax", "torch", "tensorflow") if name in selected_backends()]

# Sessions without a framework do not have this test (rather than skip an empty set).
if ADAPTERS:

    @pytest.mark.parametrize("adapter", ADAPTERS)
    def test_every_adapter_passes_the_cap_through(adapter):
        get_backend(adapter)  # (the test backend's settings: JAX with x64, for float64 here)
        logits, labels = _case(3, dense=False)
        labels = np.where(labels == 255, 0, labels)
        options = dict(smoothing=0.1, reduction="mean", softcap=CAP)
        expected = reference.smooth_ce(logits, labels, **options)
        expected_grad = reference.numerical_gradient(
            lambda z: float(reference.smooth_ce(z, labels, **options)), logits
        )
        loss, grad = _adapter_loss_and_grad(adapter, logits, labels, **options)
        assert_close(loss, expected, "float64")
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)


def _keras_loss_and_grad(logits, labels, **options):
    """(loss, d loss / d logits) through ``lsr.keras.SmoothCrossEntropy`` (TensorFlow)."""
    import tensorflow as tf

    from lsr.keras import SmoothCrossEntropy

    loss_fn = SmoothCrossEntropy(
        from_logits=True,
        label_smoothing=options["smoothing"],
        softcap=options["softcap"],
        dtype="float64",
    )
    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = loss_fn(tf.constant(labels), z)
    return loss.numpy(), tape.gradient(loss, z).numpy()


def _linear_loss_and_grads(name, hidden, kernel, bias, labels, **options):
    """(loss, d hidden, d kernel, d bias) through one adapter's ``linear_smooth_ce``,
    with the kernel in (d, K) layout (PyTorch's projection is its transpose)."""
    if name == "jax":
        import jax
        import jax.numpy as jnp

        import lsr.jax

        def loss_fn(h, w, b):
            return lsr.jax.linear_smooth_ce(h, w, jnp.asarray(labels), bias=b, **options)

        loss, grads = jax.value_and_grad(loss_fn, argnums=(0, 1, 2))(
            jnp.asarray(hidden), jnp.asarray(kernel), jnp.asarray(bias)
        )
        return (np.asarray(loss), *(np.asarray(g) for g in grads))
    if name == "torch":
        import torch

        import lsr.torch

        h, w, b = (torch.tensor(x, requires_grad=True) for x in (hidden, kernel.T, bias))
        loss = lsr.torch.linear_smooth_ce(h, w, torch.tensor(labels), bias=b, **options)
        loss.backward()
        return loss.detach().numpy(), h.grad.numpy(), w.grad.numpy().T, b.grad.numpy()
    import tensorflow as tf

    import lsr.tensorflow

    h, w, b = (tf.Variable(x) for x in (hidden, kernel, bias))
    with tf.GradientTape() as tape:
        loss = lsr.tensorflow.linear_smooth_ce(h, w, tf.constant(labels), bias=b, **options)
    return (loss.numpy(), *(g.numpy() for g in tape.gradient(loss, [h, w, b])))


if "tensorflow" in ADAPTERS:

    def test_keras_passes_the_cap_through():
        get_backend("tensorflow")
        logits, labels = _case(4, dense=False)
        labels = np.where(labels == 255, 0, labels)
        options = dict(smoothing=0.1, softcap=CAP)
        expected = reference.smooth_ce(logits, labels, reduction="mean", **options)
        expected_grad = reference.numerical_gradient(
            lambda z: float(reference.smooth_ce(z, labels, reduction="mean", **options)), logits
        )
        loss, grad = _keras_loss_and_grad(logits, labels, **options)
        assert_close(loss, expected, "float64")
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)

    def test_keras_refuses_a_cap_on_probabilities():
        from lsr.keras import SmoothCrossEntropy

        with pytest.raises(ValueError, match=r"from_logits=True.*Received: softcap=30"):
            SmoothCrossEntropy(softcap=30)


if ADAPTERS:

    @pytest.mark.parametrize("adapter", ADAPTERS)
    def test_every_fused_linear_loss_caps_the_logits(adapter):
        """``linear_smooth_ce``: the loss of ``cap * tanh((h W + b) / cap)`` and its
        gradients in the hidden states, the kernel and the bias, in blocks of 4 rows."""
        get_backend(adapter)
        rng = np.random.default_rng(5)
        hidden, kernel = rng.normal(size=(10, 3)), rng.normal(scale=2.0, size=(3, K))
        bias, labels = rng.normal(size=K), rng.integers(0, K, size=10)
        labels[2] = -100
        options = dict(smoothing=0.2, ignore_index=-100, reduction="mean", softcap=CAP)

        def expected_loss(h, w, b, **changes):
            return float(reference.smooth_ce(h @ w + b, labels, **{**options, **changes}))

        expected = expected_loss(hidden, kernel, bias)
        assert not np.isclose(expected, expected_loss(hidden, kernel, bias, softcap=None))
        loss, *grads = _linear_loss_and_grads(
            adapter, hidden, kernel, bias, labels, chunk_size=4, **options
        )
        assert_close(loss, expected, "float64")
        expected_grads = (
            reference.numerical_gradient(lambda h: expected_loss(h, kernel, bias), hidden),
            reference.numerical_gradient(lambda w: expected_loss(hidden, w, bias), kernel),
            reference.numerical_gradient(lambda b: expected_loss(hidden, kernel, b), bias),
        )
        for got, want in zip(grads, expected_grads, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
