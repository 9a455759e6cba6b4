"""Every framework adapter gives the reference's values and gradients, via its own autodiff.

The softmax loss (``smooth_ce``) and the sigmoid one (``smooth_bce``, with Keras'
``SmoothBinaryCrossEntropy`` where TensorFlow is selected), each adapter called with its
framework's own argument names; the sigmoid adapters are also compared with each other,
more tightly than the reference's numerical gradient allows. Collected in sessions with
two or more backends of which one is a framework.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import reference
from tests.backends import assert_close
from tests.conftest import get_backend
from tests.test_cross_backend import (
    BINARY_CASES,
    CASES,
    FRAMEWORKS,
    PLAIN_BINARY_CASES,
    _inputs,
    _options,
    binary_case,
    binary_options,
    binary_reference,
)


def _value_and_grad(name, loss_of, logits, cotangent):
    """``loss_of(z)`` and d(sum(loss * cotangent))/dz through the framework's autodiff."""
    backend = get_backend(name)
    z, c = backend.asarray(logits), backend.asarray(cotangent)
    if name == "jax":
        import jax

        def objective(z):
            loss = loss_of(z)
            return (loss * c).sum(), loss

        (_, loss), grad = jax.value_and_grad(objective, has_aux=True)(z)
        return np.asarray(loss), np.asarray(grad)
    if name == "torch":
        z.requires_grad_(True)
        loss = loss_of(z)
        (loss * c).sum().backward()
        return backend.to_numpy(loss), backend.to_numpy(z.grad)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = loss_of(z)
        objective = tf.reduce_sum(loss * tf.cast(c, loss.dtype))
    return loss.numpy(), tape.gradient(objective, z).numpy()


def _smooth_ce(name, labels, options):
    """The adapter's smooth_ce as a function of the logits (class axis last)."""
    y = get_backend(name).asarray(labels)
    if name == "jax":
        import lsr.jax

        return lambda z: lsr.jax.smooth_ce(z, y, axis=-1, **options)
    if name == "torch":
        import lsr.torch

        return lambda z: lsr.torch.smooth_ce(z, y, axis=-1, **options)
    import lsr.tensorflow

    return lambda z: lsr.tensorflow.smooth_ce(z, y, axis=-1, **options)


def _smooth_bce(name, labels, options):
    """The adapter's smooth_bce as a function of the logits, called with the framework's
    own argument names (PyTorch's ``input`` and ``target``)."""
    y = get_backend(name).asarray(labels)
    if name == "jax":
        import lsr.jax

        return lambda z: lsr.jax.smooth_bce(logits=z, labels=y, **options)
    if name == "torch":
        import lsr.torch

        return lambda z: lsr.torch.smooth_bce(input=z, target=y, **options)
    import lsr.tensorflow

    return lambda z: lsr.tensorflow.smooth_bce(logits=z, labels=y, **options)


def _reference_gradient(loss, logits, cotangent):
    """Central differences of sum(loss(z) * cotangent) at the logits."""
    return reference.numerical_gradient(lambda z: float(np.sum(loss(z) * cotangent)), logits)


@pytest.mark.parametrize(("prior", "weighted", "reduction", "dense"), CASES)
def test_adapters_agree_on_values_and_gradients(prior, weighted, reduction, dense):
    assert FRAMEWORKS, "this module runs only in sessions with a framework adapter"
    logits, labels = _inputs(dense, seed=1)
    numpy_options = _options(get_backend("numpy"), prior, weighted, reduction, dense)
    expected = reference.smooth_ce(logits, labels, **numpy_options)
    cotangent = np.random.default_rng(2).normal(size=np.shape(expected))
    expected_grad = _reference_gradient(
        lambda z: reference.smooth_ce(z, labels, **numpy_options), logits, cotangent
    )
    for name in FRAMEWORKS:
        options = _options(get_backend(name), prior, weighted, reduction, dense)
        loss_of = _smooth_ce(name, labels, options)
        loss, grad = _value_and_grad(name, loss_of, logits, cotangent)
        np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-8, err_msg=name)


def _assert_adapters_agree(results, dtype):
    """Every adapter's (loss, gradient) against the first one's, at ``dtype``'s tolerance
    (tighter than the numerical reference gradient allows); None is not compared."""
    (first, (first_loss, first_grad)), *others = results.items()
    for name, (loss, grad) in others:
        for got, wanted, what in ((loss, first_loss, "loss"), (grad, first_grad, "gradient")):
            if got is None or wanted is None:
                continue
            try:
                assert_close(got, wanted, dtype)
            except AssertionError as error:
                raise AssertionError(f"{name} and {first} differ in the {what}") from error


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(BINARY_CASES))
def test_adapters_agree_on_smooth_bce(case, reduction):
    assert FRAMEWORKS, "this module runs only in sessions with a framework adapter"
    logits, labels, options = binary_case(case, seed=1)
    expected = binary_reference(logits, labels, options, reduction)
    cotangent = np.random.default_rng(2).normal(size=np.shape(expected))
    expected_grad = _reference_gradient(
        lambda z: binary_reference(z, labels, options, reduction), logits, cotangent
    )
    results = {}
    for name in FRAMEWORKS:
        adapter_options = {**binary_options(get_backend(name), options), "reduction": reduction}
        loss_of = _smooth_bce(name, labels, adapter_options)
        results[name] = loss, grad = _value_and_grad(name, loss_of, logits, cotangent)
        np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-8, err_msg=name)
    if "tensorflow" in FRAMEWORKS and case in PLAIN_BINARY_CASES:
        # Keras' loss (whose tests need TensorFlow) takes only smoothing and prior.
        results["keras"] = _check_keras_binary(logits, labels, options, reduction)
    _assert_adapters_agree(results, "float64")


# Keras' reduction of the per-sample losses that gives the adapters' reduction, when each
# sample's loss is the mean over its labels: the same "mean"; K times less for "sum".
_KERAS_REDUCTIONS = {"mean": "sum_over_batch_size", "sum": "sum", "none": None}


def _check_keras_binary(logits, labels, options, reduction):
    """lsr.keras.SmoothBinaryCrossEntropy (with Keras' argument order and names) against
    the reference, whose per-element losses it averages over the labels (Keras'
    convention). Returns its value and gradient scaled to the adapters' ``reduction``
    (the same cotangent), for comparing with theirs; None where they are not comparable."""
    from lsr.keras import SmoothBinaryCrossEntropy

    num_labels = np.shape(logits)[-1]
    prior = options.get("prior", 0.5)
    loss_fn = SmoothBinaryCrossEntropy(
        from_logits=True,
        label_smoothing=options["smoothing"],
        prior=prior.tolist() if isinstance(prior, np.ndarray) else prior,
        reduction=_KERAS_REDUCTIONS[reduction],
        dtype="float64",
    )

    def per_sample(z):
        return binary_reference(z, labels, options, "none").mean(axis=-1)

    reduce = {"mean": np.mean, "sum": np.sum, "none": np.asarray}[reduction]
    expected = reduce(per_sample(logits))
    cotangent = np.random.default_rng(2).normal(size=np.shape(expected))
    y_true = get_backend("tensorflow").asarray(labels)
    loss, grad = _value_and_grad(
        "tensorflow", lambda z: loss_fn(y_true=y_true, y_pred=z), logits, cotangent
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=1e-12, err_msg="keras")
    expected_grad = _reference_gradient(lambda z: reduce(per_sample(z)), logits, cotangent)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-8, err_msg="keras")
    if reduction == "none":
        return None, None  # (per sample, not per element)
    scale = num_labels if reduction == "sum" else 1
    return loss * scale, grad * scale


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize(
    ("case", "reduction"), [("soft-weights", "mean"), ("ignore-index", "none")]
)
def test_adapters_agree_on_smooth_bce_in_lower_precision(case, reduction, dtype):
    """Half precision is computed in float32 (loss in float32, gradient in the logits'
    dtype); the reference takes the same rounded inputs."""
    logits, labels, options = binary_case(case, seed=3)
    logits = logits.astype(dtype)
    if labels.dtype.kind == "f":
        labels = labels.astype(dtype)
    rounded = {
        name: value.astype(dtype).astype(np.float64)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f"
        else value
        for name, value in options.items()
    }
    expected = binary_reference(logits, labels, rounded, reduction)
    cotangent = np.random.default_rng(4).normal(size=np.shape(expected)).astype(np.float32)
    expected_grad = _reference_gradient(
        lambda z: binary_reference(z, labels, rounded, reduction), logits, cotangent
    )
    results = {}
    for name in FRAMEWORKS:
        adapter_options = {
            **binary_options(get_backend(name), options, dtype),
            "reduction": reduction,
        }
        loss_of = _smooth_bce(name, labels, adapter_options)
        results[name] = loss, grad = _value_and_grad(name, loss_of, logits, cotangent)
        assert (loss.dtype, grad.dtype) == (np.float32, np.dtype(dtype)), name
        assert_close(loss, expected, "float32")
        assert_close(grad, expected_grad, dtype)
    _assert_adapters_agree({name: (loss, None) for name, (loss, _) in results.items()}, "float32")
    _assert_adapters_agree({name: (None, grad) for name, (_, grad) in results.items()}, dtype)
