"""Every framework adapter gives the reference's values and gradients, via its own autodiff.

Collected in sessions with two or more backends of which one is a framework.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import reference
from tests.conftest import get_backend
from tests.test_cross_backend import CASES, FRAMEWORKS, _inputs, _options


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


@pytest.mark.parametrize(("prior", "weighted", "reduction", "dense"), CASES)
def test_adapters_agree_on_values_and_gradients(prior, weighted, reduction, dense):
    assert FRAMEWORKS, "this module runs only in sessions with a framework adapter"
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
