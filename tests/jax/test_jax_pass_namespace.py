"""The JAX adapter's two namespaces for the core's pass (collected only when jax is
selected): which one a call takes, and that both give the same loss and gradient."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lsr.jax
from lsr.jax import _functional, _namespace
from lsr.jax._namespace import pass_namespace, two_sums_xp, xp

K = 37


@pytest.mark.parametrize(
    ("dtype", "ndim", "axis", "classes", "expected"),
    [
        (jnp.float32, 2, 1, 1000, "two sums"),
        (jnp.float32, 2, 1, 32_000, "two sums"),
        (jnp.float32, 3, 2, 10, "two sums"),
        (jnp.float32, 2, 1, 32_001, "variadic"),
        (jnp.float32, 4, 1, 21, "variadic"),  # classes not last: segmentation
        (jnp.bfloat16, 2, 1, 1000, "variadic"),
        (jnp.float16, 2, 1, 1000, "variadic"),
        (jnp.float64, 2, 1, 1000, "variadic"),
    ],
)
def test_pass_namespace_takes_two_sums_for_float32_classes_last_up_to_32000(
    dtype, ndim, axis, classes, expected
):
    chosen = pass_namespace(dtype, ndim, axis, classes)
    assert chosen is (two_sums_xp if expected == "two sums" else xp)
    assert getattr(chosen, "sum_and_sum_exp", None) is (
        None if expected == "two sums" else _namespace.sum_and_sum_exp
    )


def test_negative_axis_counts_from_the_end():
    assert pass_namespace(jnp.float32, 2, -1, 10) is two_sums_xp
    assert pass_namespace(jnp.float32, 2, -2, 10) is xp
    assert pass_namespace(jnp.float32, 1, -1, 10) is two_sums_xp


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("2-D float32, default axis", "two sums"),
        ("2-D float32, classes on axis -2", "variadic"),
        ("2-D bfloat16", "variadic"),
        ("2-D float16", "variadic"),
        ("1-D float32", "two sums"),
        ("3-D float32, classes on axis 1", "variadic"),
        ("2-D float32 under vmap", "two sums"),
    ],
)
def test_the_public_call_passes_the_rule_its_own_dtype_and_axis(monkeypatch, case, expected):
    """What ``lsr.jax.smooth_ce`` hands its compiled pass: the namespace of the logits'
    dtype as given (before the conversion to float32) and of its class axis."""
    seen = []
    compiled = _functional._smooth_ce_compiled

    def recording(logits, labels, spec, namespace):
        seen.append(namespace)
        return compiled(logits, labels, spec, namespace)

    monkeypatch.setattr(_functional, "_smooth_ce_compiled", recording)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(0, K, size=6))
    logits = jnp.asarray(rng.normal(size=(6, K)), jnp.float32)
    if case == "2-D float32, default axis":
        jax.grad(lambda z: jnp.sum(lsr.jax.smooth_ce(z, ids)))(logits)
    elif case == "2-D float32, classes on axis -2":
        lsr.jax.smooth_ce(logits.T, ids, axis=-2)
    elif case == "2-D bfloat16":
        lsr.jax.smooth_ce(logits.astype(jnp.bfloat16), ids)
    elif case == "2-D float16":
        lsr.jax.smooth_ce(logits.astype(jnp.float16), ids)
    elif case == "1-D float32":
        lsr.jax.smooth_ce(logits[0], ids[0])
    elif case == "3-D float32, classes on axis 1":
        lsr.jax.smooth_ce(jnp.stack([logits.T] * 2), jnp.stack([ids] * 2), axis=1)
    else:
        jax.vmap(lambda z, y: lsr.jax.smooth_ce(z, y))(logits[None], ids[None])
    assert seen, "the compiled pass was not called"
    assert all(n is (two_sums_xp if expected == "two sums" else xp) for n in seen), seen


@pytest.mark.parametrize(
    ("options", "reduction"),
    list(
        itertools.product(
            [
                {},
                {"ignore_index": 3},
                {"prior": "others", "kl": True},
                {"weight": np.linspace(0.5, 2.0, K, dtype=np.float32)},
                {"z_loss": 1e-3, "softcap": 30.0},
                {"confidence_penalty": 0.2},
            ],
            ["none", "mean", "sum"],
        )
    ),
)
def test_both_namespaces_give_the_same_loss_and_gradient(monkeypatch, options, reduction):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(scale=4.0, size=(64, K)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, K, size=64))

    def loss(z):
        return jnp.sum(lsr.jax.smooth_ce(z, labels, reduction=reduction, **options))

    results = {}
    for name, namespace in (("variadic", xp), ("two sums", two_sums_xp)):
        # The adapter's own route, with the pass's namespace forced.
        monkeypatch.setattr(_functional, "pass_namespace", lambda *_, n=namespace: n)
        value, grad = jax.value_and_grad(loss)(logits)
        results[name] = (np.asarray(value), np.asarray(grad))
    np.testing.assert_allclose(results["two sums"][0], results["variadic"][0], rtol=2e-6)
    np.testing.assert_allclose(results["two sums"][1], results["variadic"][1], rtol=2e-5, atol=1e-7)
    assert np.all(np.isfinite(results["variadic"][1]))
