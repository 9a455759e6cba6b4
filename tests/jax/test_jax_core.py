"""The core's entry points under ``jax.jit`` (collected only when jax is selected).

Values are abstract there: a value-dependent Python branch in the core would fail to
trace, and an unchecked label must give NaN. The options travel as a ``Spec`` pytree
argument of the jitted function, as the JAX adapter passes them.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lsr.jax  # noqa: F401  (registers lsr._core.Spec as a pytree)
from lsr import _core
from lsr._checks import prepare_smooth_ce
from tests import reference
from tests.backends import assert_close

jax.config.update("jax_enable_x64", True)

K = 5
PRIOR_VECTOR = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5, 0.75])
LAYOUTS = [((6, K), -1), ((2, K, 3), 1)]


def _case(seed, shape, axis, dense):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=shape)
    positions = tuple(s for d, s in enumerate(shape) if d != axis % len(shape))
    if dense:
        labels = np.moveaxis(rng.dirichlet(np.ones(K), size=positions), -1, axis % len(shape))
    else:
        labels = rng.integers(0, K, size=positions)
        labels.flat[::3] = 255
    return logits, labels


@pytest.mark.parametrize(
    ("layout", "dense", "prior", "weighted", "reduction", "kl"),
    [
        c
        for c in itertools.product(
            LAYOUTS,
            [False, True],
            ["uniform", "others", "vector"],
            [False, True],
            ["mean", "none"],
            [False, True],
        )
    ][::3],
)
def test_core_entry_points_under_jit(layout, dense, prior, weighted, reduction, kl):
    shape, axis = layout
    logits, labels = _case(7, shape, axis, dense)
    options = dict(
        smoothing=0.2,
        prior=PRIOR_VECTOR if prior == "vector" else prior,
        axis=axis,
        ignore_index=None if dense else 255,
        weight=WEIGHT if weighted else None,
        reduction=reduction,
        kl=kl,
        z_loss=0.03,
        softcap=3.0,
    )
    expected = reference.smooth_ce(logits, labels, **options)
    cotangent = 1.0
    if reduction == "none":
        cotangent = np.linspace(0.5, 1.5, expected.size).reshape(expected.shape)
    expected_grad = reference.numerical_gradient(
        lambda z: float(np.sum(reference.smooth_ce(z, labels, **options) * cotangent)), logits
    )
    arrays = {
        "prior": jnp.asarray(PRIOR_VECTOR) if prior == "vector" else prior,
        "weight": jnp.asarray(WEIGHT) if weighted else None,
    }
    xp, z, y, spec = prepare_smooth_ce(
        jnp.asarray(logits), jnp.asarray(labels), **{**options, **arrays}
    )

    @jax.jit
    def forward_and_backward(z, y, spec):
        loss, lse, denominator = _core.smooth_ce(z, y, spec, xp=xp)
        grad = _core.smooth_ce_grad(z, y, lse, denominator, jnp.asarray(cotangent), spec, xp=xp)
        fused_loss, fused_grad = _core.reduced_loss_and_grad(z, y, spec, xp=xp)
        return loss, grad, fused_loss, fused_grad

    loss, grad, fused_loss, fused_grad = forward_and_backward(z, y, spec)
    assert_close(np.asarray(loss), expected, "float64")
    assert_close(np.asarray(fused_loss), expected, "float64")
    np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=1e-6, atol=1e-7)
    if reduction != "none":
        np.testing.assert_allclose(np.asarray(fused_grad), expected_grad, rtol=1e-6, atol=1e-7)


def test_unchecked_labels_under_jit_give_nan():
    """Traced labels cannot be read: an out-of-range id poisons its loss and the mean."""
    logits = jnp.zeros((3, K))
    xp, z, _, spec = prepare_smooth_ce(
        logits,
        jnp.array([0, 1, 2]),
        smoothing=0.1,
        prior="uniform",
        axis=-1,
        ignore_index=None,
        weight=None,
        reduction="none",
    )
    # Validation read [0, 1, 2] (spec.checked); the traced ids below it never saw, and
    # a spec made from traced ids has checked False.
    assert spec.checked
    spec = spec.replace(checked=False)
    per_position = jax.jit(lambda y, spec: _core.smooth_ce(z, y, spec, xp=xp)[0])(
        jnp.array([1, K + 2, -1]), spec
    )
    assert np.isfinite(per_position[0]) and np.isnan(per_position[1:]).all()
