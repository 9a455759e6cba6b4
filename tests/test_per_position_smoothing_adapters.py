"""Per-position smoothing through the framework adapters: values and gradients (their own
autodiff: PyTorch's fused Functions, JAX's custom jvp, TensorFlow's custom gradient)
against the float64 reference, the smoothing traced under ``jax.jit`` and
``tf.function`` (NaN where an epsilon is out of range), the fused linear losses, causal
shift, and PyTorch's drop-in staying float-only. Collected in sessions that select a
framework (``tests/conftest.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import reference
from tests.backends import assert_close, selected_backends
from tests.conftest import get_backend
from tests.test_cross_backend_adapters import _value_and_grad

FRAMEWORKS = [name for name in ("jax", "torch", "tensorflow") if name in selected_backends()]
K = 5
PRIOR_VECTOR = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5, 0.75])


def _adapter(name):
    if name == "jax":
        import lsr.jax

        return lsr.jax
    if name == "torch":
        import lsr.torch

        return lsr.torch
    import lsr.tensorflow

    return lsr.tensorflow


def _case(seed=0, positions=(4, 3)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(*positions, K))
    labels = rng.integers(0, K, size=positions)
    labels.flat[1::5] = -100
    eps = rng.uniform(size=positions)
    eps.flat[0], eps.flat[3] = 0.0, 1.0
    return logits, labels, eps


def _converted(name, options):
    backend = get_backend(name)
    return {
        key: backend.asarray(value) if isinstance(value, np.ndarray) else value
        for key, value in options.items()
    }


@pytest.mark.parametrize("name", FRAMEWORKS)
@pytest.mark.parametrize("prior", ["uniform", "others", "vector"])
@pytest.mark.parametrize("variant", ["plain", "weight+kl", "per-example"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_logits_gradient_match_reference(name, prior, variant, reduction):
    logits, labels, eps = _case()
    if variant == "per-example":
        eps = eps[:, :1]  # (N, 1) for (N, T) positions
    options = dict(
        smoothing=eps,
        prior=PRIOR_VECTOR if prior == "vector" else prior,
        ignore_index=-100,
        weight=WEIGHT if "weight" in variant else None,
        reduction=reduction,
        kl="kl" in variant,
    )
    if name != "torch":  # (lsr.torch.smooth_ce takes no mask, as F.cross_entropy)
        options["where"] = np.random.default_rng(1).random(labels.shape) > 0.2
    expected = reference.smooth_ce(logits, labels, **options)
    cotangent = np.linspace(0.5, 2.0, labels.size).reshape(labels.shape)
    if reduction != "none":
        cotangent = np.array(1.5)
    expected_grad = reference.numerical_gradient(
        lambda z: np.sum(reference.smooth_ce(z, labels, **options) * cotangent), logits
    )
    module, y = _adapter(name), get_backend(name).asarray(labels)
    converted = _converted(name, options)
    loss, grad = _value_and_grad(
        name, lambda z: module.smooth_ce(z, y, axis=-1, **converted), logits, cotangent
    )
    assert_close(loss, expected, "float64")
    assert_close(grad, expected_grad, "float64", scale=1e4)


@pytest.mark.parametrize("name", FRAMEWORKS)
@pytest.mark.parametrize("kl", [False, True])
def test_gradient_with_respect_to_smoothing(name, kl):
    """Epsilon is not differentiated by the fused paths; a gradient asked for it goes
    through autodiff of the core's forward pass, as for a 0-d epsilon. Without the KL
    constant the loss is linear in epsilon, so its derivative at epsilon = 0 and 1 (the
    case has both) is the formula's too, not 0."""
    logits, labels, eps = _case(2)
    options = dict(prior="others", ignore_index=-100, kl=kl, reduction="mean", axis=-1)
    expected = reference.numerical_gradient(
        lambda e: reference.smooth_ce(logits, labels, smoothing=e, **options), eps
    )
    backend = get_backend(name)
    z, y, e = backend.asarray(logits), backend.asarray(labels), backend.asarray(eps)
    module = _adapter(name)
    if name == "jax":
        import jax

        grad = jax.grad(lambda e: module.smooth_ce(z, y, smoothing=e, **options))(e)
    elif name == "torch":
        e.requires_grad_(True)
        module.smooth_ce(z, y, smoothing=e, **options).backward()
        grad = e.grad
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(e)
            loss = module.smooth_ce(z, y, smoothing=e, **options)
        grad = tape.gradient(loss, e)
    # (With the KL constant, a target mass of 0 -- eps = 0, or eps = 1 on the label
    # with prior "others" -- has a q log q term whose derivative is -inf on one side:
    # compare elsewhere.)
    inside = (eps > 1e-3) & (eps < 1 - 1e-3) if kl else np.ones(eps.shape, dtype=bool)
    assert not kl or not inside.all()
    assert_close(backend.to_numpy(grad)[inside], expected[inside], "float64", scale=1e4)


@pytest.mark.parametrize("name", FRAMEWORKS)
@pytest.mark.parametrize("variant", ["plain", "weight+z_loss", "confidence_penalty"])
def test_ignored_rows_of_minus_inf_keep_every_gradient_finite(name, variant):
    """Ignored positions whose logits are all -inf (padding masked out) when epsilon
    (and here the weight) is differentiated, so autodiff runs through the core: the
    loss and every gradient are those of the same call with those rows at 0 (the loss
    does not depend on them), not NaN from the row's ``log 0`` and ``-inf - -inf``."""
    logits, labels, eps = _case(3)
    ignored = labels == -100
    masked, zeroed = logits.copy(), logits.copy()
    masked[ignored], zeroed[ignored] = -np.inf, 0.0
    options = dict(prior="others", ignore_index=-100, reduction="mean", axis=-1)
    if variant == "weight+z_loss":
        options["z_loss"] = 1e-2
    elif variant == "confidence_penalty":
        options["confidence_penalty"] = 0.1
    weighted = variant == "weight+z_loss"
    backend = get_backend(name)
    y, module = backend.asarray(labels), _adapter(name)

    def run(z_np):
        z, e, w = backend.asarray(z_np), backend.asarray(eps), backend.asarray(WEIGHT)
        extra = {"weight": w} if weighted else {}
        if name == "jax":
            import jax

            def f(z, e, extra):
                return module.smooth_ce(z, y, smoothing=e, **extra, **options)

            loss, grads = jax.value_and_grad(f, argnums=(0, 1, 2))(z, e, extra)
            return loss, grads[0], grads[1], grads[2].get("weight")
        if name == "torch":
            for tensor in (z, e, w):
                tensor.requires_grad_(True)
            loss = module.smooth_ce(z, y, smoothing=e, **extra, **options)
            loss.backward()
            return loss.detach(), z.grad, e.grad, w.grad if weighted else None
        import tensorflow as tf

        z, e, w = (tf.Variable(a) for a in (z, e, w))
        with tf.GradientTape() as tape:
            loss = module.smooth_ce(
                z, y, smoothing=e, **({"weight": w} if weighted else {}), **options
            )
        grads = tape.gradient(loss, [z, e, w])
        return loss, grads[0], grads[1], grads[2] if weighted else None

    got, expected = run(masked), run(zeroed)
    for a, b in zip(got, expected, strict=True):
        if b is None:
            continue
        b = backend.to_numpy(b)
        assert np.isfinite(b).all()
        assert_close(backend.to_numpy(a), b, "float64")
    assert np.all(backend.to_numpy(got[1])[ignored] == 0.0)


@pytest.mark.parametrize("name", FRAMEWORKS)
@pytest.mark.parametrize("eps_shape", [(2, 6), (2, 1)])
@pytest.mark.parametrize("causal_shift", [False, True])
def test_linear_smooth_ce(name, eps_shape, causal_shift):
    """The fused linear loss with one epsilon per position (blocks of 4 rows cut it as
    they cut the labels; PyTorch's loop takes the kept rows only) equals the reference on
    the full logits; with ``causal_shift`` the labels move and epsilon stays with the
    position of the logits, as ``where`` does."""
    rng = np.random.default_rng(5)
    hidden = rng.normal(size=(2, 6, 3))
    kernel = rng.normal(size=(3, K))
    labels = rng.integers(0, K, size=(2, 6))
    labels[0, 2] = labels[1, 4] = -100
    eps = rng.uniform(size=eps_shape)
    options = dict(prior="others", ignore_index=-100, reduction="sum", kl=True)
    shifted = labels
    if causal_shift:
        shifted = np.concatenate([labels[:, 1:], np.full((2, 1), -100)], axis=1)
    full_eps = np.broadcast_to(eps, labels.shape)
    expected = reference.smooth_ce(hidden @ kernel, shifted, smoothing=full_eps, **options)
    expected_grad = reference.numerical_gradient(
        lambda h: reference.smooth_ce(h @ kernel, shifted, smoothing=full_eps, **options), hidden
    )
    backend = get_backend(name)
    y, e = backend.asarray(labels), backend.asarray(eps)
    module = _adapter(name)
    k = backend.asarray(kernel.T.copy() if name == "torch" else kernel)
    extra = dict(options, smoothing=e, chunk_size=4, causal_shift=causal_shift)
    loss, grad = _value_and_grad(
        name, lambda h: module.linear_smooth_ce(h, k, y, **extra), hidden, np.array(1.0)
    )
    assert_close(loss, expected, "float64")
    assert_close(grad, expected_grad, "float64", scale=1e4)
    # The same with the logits made whole: smooth_ce agrees.
    plain = module.smooth_ce(
        backend.asarray(hidden @ kernel),
        y,
        axis=-1,
        **dict(options, smoothing=e, causal_shift=causal_shift),
    )
    assert_close(backend.to_numpy(plain), expected, "float64")


# Frameworks whose tracing hides values (jax.jit, tf.function); collected only where one
# is selected, so that no session reports an empty parameter set as skipped.
TRACING = [name for name in FRAMEWORKS if name != "torch"]

if TRACING:

    @pytest.mark.parametrize("name", TRACING)
    @pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    def test_traced_out_of_range_smoothing_makes_the_whole_loss_nan(name, reduction):
        """Under ``jax.jit`` or ``tf.function`` the values cannot be read, so one epsilon
        outside [0, 1] makes the loss and gradient NaN everywhere -- also when it sits at an
        ignored position, whose own loss would be dropped (the eager call raises)."""
        logits, labels, eps = _case(3)
        ignored = np.flatnonzero(labels.ravel() == -100)[0]
        eps.flat[ignored] = 1.5
        backend, module = get_backend(name), _adapter(name)
        z, y, e = backend.asarray(logits), backend.asarray(labels), backend.asarray(eps)
        options = dict(ignore_index=-100, reduction=reduction, axis=-1)
        if name == "jax":
            import jax

            def objective(z, e):
                loss = module.smooth_ce(z, y, smoothing=e, **options)
                return loss.sum(), loss

            (_, loss), grad = jax.jit(jax.value_and_grad(objective, has_aux=True))(z, e)
        else:
            import tensorflow as tf

            @tf.function
            def step(z, e):
                with tf.GradientTape() as tape:
                    tape.watch(z)
                    loss = module.smooth_ce(z, y, smoothing=e, **options)
                    total = tf.reduce_sum(loss)
                return loss, tape.gradient(total, z)

            loss, grad = step(z, e)
        loss, grad, kept = backend.to_numpy(loss), backend.to_numpy(grad), labels != -100
        if reduction == "none":  # (ignored positions keep their loss of 0)
            assert np.isnan(loss[kept]).all() and (loss[~kept] == 0).all()
        else:
            assert np.isnan(loss)
        assert np.isnan(grad[kept]).all()
        with pytest.raises(ValueError, match=r"1 of 12 values"):
            module.smooth_ce(z, y, smoothing=e, **options)
