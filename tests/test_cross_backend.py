"""The same inputs give the same numbers on every backend: losses and gradients.

Collected only in sessions with two or more backends (``nox -s "tests(all)"``). Each
backend is compared with NumPy's result (and so with every other), through the generic
functions and through each framework adapter with that framework's own autodiff.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lsr
from tests import reference
from tests.backends import selected_backends
from tests.conftest import get_backend

K = 6
FRAMEWORKS = [name for name in ("jax", "torch", "tensorflow") if name in selected_backends()]
CASES = list(
    itertools.product(
        ["uniform", "others", "vector"],
        [None, "weight"],
        ["mean", "sum", "none"],
        [False, True],  # dense labels
    )
)


def _inputs(dense, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(2, 3, K))
    if dense:
        labels = rng.dirichlet(np.ones(K), size=(2, 3))
    else:
        labels = rng.integers(0, K, size=(2, 3))
        labels[0, 1] = -100
    return logits, labels


def _options(backend, prior, weighted, reduction, dense):
    prior_vector = np.linspace(1.0, 2.0, K) / np.linspace(1.0, 2.0, K).sum()
    return dict(
        smoothing=0.15,
        prior=backend.asarray(prior_vector) if prior == "vector" else prior,
        weight=backend.asarray(np.linspace(0.5, 1.5, K)) if weighted else None,
        ignore_index=None if dense else -100,
        reduction=reduction,
    )


@pytest.mark.parametrize(("prior", "weighted", "reduction", "dense"), CASES)
def test_generic_functions_agree_across_backends(prior, weighted, reduction, dense):
    logits, labels = _inputs(dense)
    results = {}
    for name in selected_backends():
        backend = get_backend(name)
        loss = lsr.smooth_ce(
            backend.asarray(logits),
            backend.asarray(labels),
            **_options(backend, prior, weighted, reduction, dense),
        )
        results[name] = backend.to_numpy(loss)
    assert len(results) >= 2
    baseline = results["numpy"] if "numpy" in results else next(iter(results.values()))
    for name, value in results.items():
        np.testing.assert_allclose(value, baseline, rtol=1e-12, atol=1e-12, err_msg=name)
    numpy_backend = get_backend("numpy")
    expected = reference.smooth_ce(
        logits, labels, **_options(numpy_backend, prior, weighted, reduction, dense)
    )
    np.testing.assert_allclose(baseline, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("prior", ["uniform", "others"])
def test_smooth_labels_agree_across_backends(prior):
    labels = np.array([[0, 5, 2], [1, 1, 3]])
    results = {
        name: get_backend(name).to_numpy(
            lsr.smooth_labels(
                get_backend(name).asarray(labels),
                K,
                smoothing=0.2,
                prior=prior,
                dtype=get_backend(name).xp.float64,
            )
        )
        for name in selected_backends()
    }
    expected = reference.smoothed_targets(labels, K, smoothing=0.2, prior=prior)
    for name, value in results.items():
        np.testing.assert_allclose(value, expected, rtol=1e-14, err_msg=name)


def _adapter_value_and_grad(name, logits, labels, cotangent, options):
    """Loss and d(sum(loss * cotangent))/d(logits) through a framework adapter's autodiff."""
    backend = get_backend(name)
    z, y, c = backend.asarray(logits), backend.asarray(labels), backend.asarray(cotangent)
    if name == "jax":
        import jax

        import lsr.jax

        def objective(z):
            loss = lsr.jax.smooth_ce(z, y, axis=-1, **options)
            return (loss * c).sum(), loss

        (_, loss), grad = jax.value_and_grad(objective, has_aux=True)(z)
        return np.asarray(loss), np.asarray(grad)
    if name == "torch":
        import lsr.torch

        z.requires_grad_(True)
        loss = lsr.torch.smooth_ce(z, y, axis=-1, **options)
        (loss * c).sum().backward()
        return backend.to_numpy(loss), backend.to_numpy(z.grad)
    import tensorflow as tf

    import lsr.tensorflow

    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = lsr.tensorflow.smooth_ce(z, y, axis=-1, **options)
        objective = tf.reduce_sum(loss * c)
    return loss.numpy(), tape.gradient(objective, z).numpy()


@pytest.mark.skipif(not FRAMEWORKS, reason="no framework adapter in this session")
@pytest.mark.parametrize(("prior", "weighted", "reduction", "dense"), CASES)
def test_adapters_agree_on_values_and_gradients(prior, weighted, reduction, dense):
    logits, labels = _inputs(dense, seed=1)
    numpy_options = _options(get_backend("numpy"), prior, weighted, reduction, dense)
    expected = reference.smooth_ce(logits, labels, **numpy_options)
    cotangent = np.random.default_rng(2).normal(size=np.shape(expected))

    def objective(z):
        return float(np.sum(reference.smooth_ce(z, labels, **numpy_options) * cotangent))

    expected_grad = reference.numerical_gradient(objective, logits)
    for name in FRAMEWORKS:
        options = _options(get_backend(name), prior, weighted, reduction, dense)
        loss, grad = _adapter_value_and_grad(name, logits, labels, cotangent, options)
        np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-8, err_msg=name)
