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
