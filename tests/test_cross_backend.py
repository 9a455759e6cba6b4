"""The same inputs give the same numbers on every backend: losses and gradients.

Collected only in sessions with two or more backends (``nox -s "tests(all)"``). Each
backend is compared with NumPy's result (and so with every other), through the generic
functions and through each framework adapter with that framework's own autodiff
(tests/test_cross_backend_adapters.py), for the softmax loss and the sigmoid one.
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


# The sigmoid (binary, multi-label) loss: named cases, each run with every reduction,
# that between them take every kind of label (0/1, soft, bool, integer with
# ignore_index), every kind of prior (a number, "uniform", one value per label), both
# weights (per label and per element), masks and the smoothing edges 0 and 1.
# name: (kind of labels, smooth_bce's options; arrays as NumPy arrays)
_RNG = np.random.default_rng(7)
PER_LABEL_PRIOR = np.linspace(0.05, 0.6, K)  # a base rate per label
LABEL_WEIGHT = np.linspace(0.5, 1.5, K)
ELEMENT_WEIGHT = _RNG.uniform(0.5, 2.0, size=(2, 3, K))
POS_WEIGHT = np.linspace(3.0, 0.5, K)
KEEP = _RNG.uniform(size=(2, 3, K)) > 0.3
KEEP_ROWS = np.array([[True, False, True], [True, True, False]])[..., None]
BINARY_CASES = {
    "multi-hot": ("multi-hot", {"smoothing": 0.15}),
    "bool-uniform": ("bool", {"smoothing": 0.1, "prior": "uniform"}),
    "soft-smoothing-1": ("soft", {"smoothing": 1.0, "prior": PER_LABEL_PRIOR}),
    "soft-weights": (
        "soft",
        {
            "smoothing": 0.2,
            "prior": PER_LABEL_PRIOR,
            "weight": LABEL_WEIGHT,
            "pos_weight": POS_WEIGHT,
        },
    ),
    "ignore-index": (
        "ignore",
        {
            "smoothing": 0.3,
            "prior": PER_LABEL_PRIOR,
            "weight": ELEMENT_WEIGHT,
            "pos_weight": POS_WEIGHT,
            "ignore_index": -100,
        },
    ),
    "where-uniform": (
        "soft",
        {"smoothing": 0.25, "prior": "uniform", "weight": LABEL_WEIGHT, "where": KEEP},
    ),
    "smoothing-0": ("multi-hot", {"smoothing": 0.0, "pos_weight": POS_WEIGHT, "where": KEEP_ROWS}),
    "ignore-and-where": (
        "ignore",
        {"smoothing": 0.1, "prior": 0.0, "ignore_index": -100, "where": KEEP},
    ),
}
# The cases that use only what every adapter has (Keras' loss: smoothing and prior).
PLAIN_BINARY_CASES = ["multi-hot", "bool-uniform", "soft-smoothing-1"]


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


def binary_case(case, seed=0):
    """``(logits, labels, options)`` of a case of BINARY_CASES, as NumPy arrays."""
    kind, options = BINARY_CASES[case]
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(2, 3, K))
    labels = rng.integers(0, 2, size=logits.shape)
    if kind == "soft":
        labels = rng.uniform(size=logits.shape)
    elif kind == "bool":
        labels = labels.astype(bool)
    elif kind == "ignore":
        labels[0, 1, :2] = labels[1, 2, 4] = labels[1, 0, 0] = -100
    return logits, labels, options


def binary_options(backend, options, dtype=None):
    """The options with their arrays in ``backend`` (floating ones cast to ``dtype``)."""
    converted = {}
    for name, value in options.items():
        if isinstance(value, np.ndarray):
            floating = dtype is not None and value.dtype.kind == "f"
            value = backend.asarray(value, dtype if floating else None)
        converted[name] = value
    return converted


def binary_reference(logits, labels, options, reduction):
    """tests/reference.py's smooth_bce for a case: prior "uniform" is 1/K, and what
    ``ignore_index`` and ``where`` leave out is its ``keep``."""
    options = dict(options)
    keep = np.ones(np.shape(logits), dtype=bool)
    ignore_index = options.pop("ignore_index", None)
    if ignore_index is not None:
        keep &= labels != ignore_index
        labels = np.where(keep, labels, 0)
    keep &= options.pop("where", True)
    if isinstance(options.get("prior"), str):
        options["prior"] = 1.0 / np.shape(logits)[-1]
    options.setdefault("prior", 0.5)  # smooth_bce's default
    return reference.smooth_bce(logits, labels, keep=keep, reduction=reduction, **options)


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


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(BINARY_CASES))
def test_generic_smooth_bce_agrees_across_backends(case, reduction):
    logits, labels, options = binary_case(case)
    results = {}
    for name in selected_backends():
        backend = get_backend(name)
        loss = lsr.smooth_bce(
            backend.asarray(logits),
            backend.asarray(labels),
            reduction=reduction,
            **binary_options(backend, options),
        )
        results[name] = backend.to_numpy(loss)
    assert len(results) >= 2
    baseline = results["numpy"] if "numpy" in results else next(iter(results.values()))
    for name, value in results.items():
        np.testing.assert_allclose(value, baseline, rtol=1e-12, atol=1e-12, err_msg=name)
    expected = binary_reference(logits, labels, options, reduction)
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
