"""Invariants of the mathematics, checked with hypothesis on every selected backend."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lsr
from lsr import _core
from lsr._checks import prepare_smooth_ce
from tests import reference
from tests.backends import assert_close

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def problems(draw, max_classes=7):
    """Logits (N, K), integer labels, a smoothing value."""
    num_classes = draw(st.integers(2, max_classes))
    rows = draw(st.integers(1, 6))
    logits = draw(
        hnp.arrays(
            np.float64,
            (rows, num_classes),
            elements=st.floats(-30, 30, allow_nan=False, allow_infinity=False),
        )
    )
    labels = np.asarray(
        draw(st.lists(st.integers(0, num_classes - 1), min_size=rows, max_size=rows))
    )
    smoothing = draw(st.floats(0.0, 1.0))
    return logits, labels, smoothing


def _loss(backend, logits, labels, **options):
    options.setdefault("reduction", "none")
    value = lsr.smooth_ce(backend.asarray(logits), backend.asarray(labels), **options)
    return backend.to_numpy(value)


def _grad(backend, logits, labels, **options):
    options.setdefault("reduction", "sum")
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        smoothing=options.pop("smoothing"),
        prior=options.pop("prior", "uniform"),
        axis=-1,
        ignore_index=options.pop("ignore_index", None),
        weight=None,
        **options,
    )
    _, lse, denominator = _core.smooth_ce(z, y, spec, xp=xp)
    cotangent = backend.asarray(np.asarray(1.0))
    return backend.to_numpy(_core.smooth_ce_grad(z, y, lse, denominator, cotangent, spec, xp=xp))


@SETTINGS
@given(problem=problems(), shift=st.floats(-50, 50))
def test_shift_invariance(backend, problem, shift):
    logits, labels, smoothing = problem
    assert_close(
        _loss(backend, logits + shift, labels, smoothing=smoothing),
        _loss(backend, logits, labels, smoothing=smoothing),
        "float64",
        scale=1e4,
    )


@SETTINGS
@given(
    problem=problems(),
    shift=st.floats(-1e5, 1e5),
    prior=st.sampled_from(["uniform", "others"]),
)
def test_float32_accuracy_does_not_depend_on_the_logits_magnitude(backend, problem, shift, prior):
    """Far beyond +-50: the float32 loss of shifted logits is as accurate as that of small
    ones (the core sums over the max-shifted logits; with ``lse`` itself in the sums the
    error grew with |shift|: 5e-4 relative at 1e4)."""
    logits, labels, smoothing = problem
    shifted = (logits + shift).astype(np.float32)
    expected = reference.smooth_ce(
        shifted, labels, smoothing=smoothing, prior=prior, reduction="none"
    )
    got = _loss(backend, shifted, labels, smoothing=smoothing, prior=prior)
    np.testing.assert_allclose(got, expected, rtol=4e-6, atol=4e-6)


@SETTINGS
@given(problem=problems())
def test_zero_smoothing_is_plain_cross_entropy(backend, problem):
    logits, labels, _ = problem
    plain = -reference.log_softmax(logits)[np.arange(len(labels)), labels]
    for prior in ("uniform", "others"):
        assert_close(
            _loss(backend, logits, labels, smoothing=0.0, prior=prior), plain, "float64", scale=100
        )


@SETTINGS
@given(problem=problems())
def test_others_equals_uniform_with_rescaled_smoothing(backend, problem):
    """ "others" with eps equals "uniform" with eps K / (K - 1): both give eps / (K - 1)
    to every other class and 1 - eps to the true one."""
    logits, labels, smoothing = problem
    num_classes = logits.shape[1]
    # Keep the uniform smoothing inside [0, 1].
    smoothing *= (num_classes - 1) / num_classes
    uniform_smoothing = min(smoothing * num_classes / (num_classes - 1), 1.0)
    assert_close(
        _loss(backend, logits, labels, smoothing=smoothing, prior="others"),
        _loss(backend, logits, labels, smoothing=uniform_smoothing, prior="uniform"),
        "float64",
        scale=1e3,
    )


@SETTINGS
@given(problem=problems(), prior=st.sampled_from(["uniform", "others"]))
def test_gradient_rows_sum_to_zero(backend, problem, prior):
    """With sum_k q'_k = 1 (no weights) the gradient softmax - q' sums to 0 per row."""
    logits, labels, smoothing = problem
    grad = _grad(backend, logits, labels, smoothing=smoothing, prior=prior)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)


@SETTINGS
@given(problem=problems(), prior=st.sampled_from(["uniform", "others"]))
def test_kl_form_is_non_negative(backend, problem, prior):
    logits, labels, smoothing = problem
    kl = _loss(backend, logits, labels, smoothing=smoothing, prior=prior, kl=True)
    assert np.all(kl >= -1e-9)


@SETTINGS
@given(problem=problems())
def test_ignored_positions_get_zero_loss_and_gradient(backend, problem):
    logits, labels, smoothing = problem
    labels = labels.copy()
    labels[0] = -100
    loss = _loss(backend, logits, labels, smoothing=smoothing, ignore_index=-100)
    grad = _grad(backend, logits, labels, smoothing=smoothing, ignore_index=-100)
    assert loss[0] == 0.0
    assert np.all(grad[0] == 0.0)
    # The other positions are untouched by ignoring the first one.
    if len(labels) > 1:
        alone = _loss(backend, logits[1:], labels[1:], smoothing=smoothing)
        assert_close(loss[1:], alone, "float64")


@SETTINGS
@given(problem=problems(), prior=st.sampled_from(["uniform", "others"]))
def test_integer_and_one_hot_labels_agree(backend, problem, prior):
    logits, labels, smoothing = problem
    one_hot = np.eye(logits.shape[1])[labels]
    for kl in (False, True):
        assert_close(
            _loss(backend, logits, labels, smoothing=smoothing, prior=prior, kl=kl),
            _loss(backend, logits, one_hot, smoothing=smoothing, prior=prior, kl=kl),
            "float64",
            scale=1e3,
        )
    assert_close(
        _grad(backend, logits, labels, smoothing=smoothing, prior=prior),
        _grad(backend, logits, one_hot, smoothing=smoothing, prior=prior),
        "float64",
        scale=1e3,
    )


@SETTINGS
@given(problem=problems())
def test_matches_reference_on_random_problems(backend, problem):
    logits, labels, smoothing = problem
    expected = reference.smooth_ce(logits, labels, smoothing=smoothing, reduction="none")
    assert_close(
        _loss(backend, logits, labels, smoothing=smoothing), expected, "float64", scale=1e3
    )
