"""lsr.metrics and distill_loss under jax.jit and jax.grad (collected only when jax is selected)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsr import metrics
from lsr._distill import distill_loss

jax.config.update("jax_enable_x64", True)


def _case(seed=0, n=50, num_classes=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, num_classes))
    labels = rng.integers(0, num_classes, size=n)
    return jnp.asarray(logits), jnp.asarray(labels)


@pytest.mark.parametrize(
    ("norm", "debias", "scope"),
    [
        ("l1", False, "top_label"),
        ("l2", False, "top_label"),
        ("max", False, "top_label"),
        ("l2", True, "classwise"),
        # The l1 correction's normal draws are made on the host: constants of the program.
        ("l1", True, "top_label"),
        ("l1", True, "classwise"),
    ],
)
def test_calibration_error_under_jit(norm, debias, scope):
    logits, labels = _case()
    options = dict(n_bins=10, norm=norm, debias=debias, scope=scope)

    @jax.jit
    def ece(z, y):
        return metrics.expected_calibration_error(z, y, **options)

    eager = metrics.expected_calibration_error(logits, labels, **options)
    np.testing.assert_allclose(ece(logits, labels), eager, rtol=1e-12)


@pytest.mark.parametrize("threshold", [0.05, 0.3])
@pytest.mark.parametrize(("norm", "debias"), [("l1", False), ("l2", True)])
def test_tace_under_jit(threshold, norm, debias):
    """Thresholded equal-mass bins: each class's number of kept predictions is a value,
    so its split points are computed under tracing; the jitted error is the eager one."""
    logits, labels = _case()
    options = dict(n_bins=8, norm=norm, debias=debias, scope="thresholded", binning="equal_mass")
    jitted = jax.jit(
        lambda z, y: metrics.expected_calibration_error(z, y, threshold=threshold, **options)
    )
    eager = metrics.expected_calibration_error(logits, labels, threshold=threshold, **options)
    assert np.isfinite(float(eager))
    np.testing.assert_allclose(jitted(logits, labels), eager, rtol=1e-12)


def test_weighted_equal_mass_under_jit():
    """Whole weights give the eager error; a fractional one, which the eager call
    refuses, makes the traced error NaN."""
    logits, labels = _case()
    options = dict(n_bins=6, binning="equal_mass", scope="classwise")
    jitted = jax.jit(
        lambda z, y, w: metrics.expected_calibration_error(z, y, sample_weight=w, **options)
    )
    weights = jnp.asarray(np.random.default_rng(3).integers(0, 4, size=labels.shape[0]), float)
    eager = metrics.expected_calibration_error(logits, labels, sample_weight=weights, **options)
    assert np.isfinite(float(eager))
    np.testing.assert_allclose(jitted(logits, labels, weights), eager, rtol=1e-12)
    assert np.isnan(float(jitted(logits, labels, weights.at[0].set(0.5))))


def test_equal_mass_bins_of_a_state_under_jit():
    """The grouping of a fine state into equal-mass bins traces: the count is a value."""
    logits, labels = _case()
    state = metrics.calibration_state(logits, n_bins=200)
    state = metrics.update_calibration_state(state, logits, labels)
    options = dict(binning="equal_mass", n_bins=7, norm="l2", debias=True)
    eager = metrics.calibration_error_from_state(state, **options)
    jitted = jax.jit(lambda s: metrics.calibration_error_from_state(s, **options))
    assert np.isfinite(float(eager))
    np.testing.assert_allclose(jitted(state), eager, rtol=1e-12)
    # Counts that are not whole (fractional weights) have no split: NaN when traced.
    fractional = metrics.CalibrationState(*(a * 0.5 for a in state))
    assert np.isnan(float(jitted(fractional)))


def test_out_of_range_label_under_jit_gives_nan():
    # Values cannot be checked while tracing; the result must not look plausible.
    logits, labels = _case()
    labels = labels.at[3].set(7)
    ece = jax.jit(lambda z, y: metrics.expected_calibration_error(z, y))(logits, labels)
    assert np.isnan(ece)
    with pytest.raises(ValueError, match=r"integers in \[0, 4\)"):
        metrics.expected_calibration_error(logits, labels)


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param(np.r_[-1.0, np.ones(49)], id="negative"),
        pytest.param(np.r_[np.nan, np.ones(49)], id="nan"),
        pytest.param(np.r_[np.inf, np.ones(49)], id="inf"),
        pytest.param(np.zeros(50), id="zero-sum"),
    ],
)
@pytest.mark.parametrize("scope", ["top_label", "classwise", "thresholded"])
def test_bad_sample_weights_under_jit_give_nan(weights, scope):
    # A negative weight would give a plausible number; traced, it must be NaN (eagerly
    # the same weights raise).
    logits, labels = _case()
    w = jnp.asarray(weights)
    ece = jax.jit(
        lambda z, y, w: metrics.expected_calibration_error(z, y, scope=scope, sample_weight=w)
    )(logits, labels, w)
    assert np.isnan(ece)
    with pytest.raises(ValueError, match=r"Received: sample_weight="):
        metrics.expected_calibration_error(logits, labels, scope=scope, sample_weight=w)


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param(np.linspace(0.0, 2.0, 50), id="good"),
        pytest.param(np.r_[-1.0, np.ones(49)], id="negative"),
        pytest.param(np.zeros(50), id="zero-sum"),
    ],
)
def test_concrete_inputs_closed_over_by_jit(weights):
    # Concrete arrays captured by a jitted function: their values are known, but what
    # is computed from them inside is traced. Good ones give the eager value, bad ones
    # NaN (eagerly they raise), never an error about a traced boolean.
    logits, labels = _case()
    w = jnp.asarray(weights)
    probs = jax.nn.softmax(logits, axis=-1)
    inside = jax.jit(lambda z: metrics.expected_calibration_error(z, labels, sample_weight=w))
    given_probs = jax.jit(
        lambda: metrics.expected_calibration_error(
            probs, labels, from_logits=False, sample_weight=w
        )
    )
    if weights.min() < 0 or weights.sum() == 0:
        assert np.isnan(inside(logits)) and np.isnan(given_probs())
        return
    eager = metrics.expected_calibration_error(logits, labels, sample_weight=w)
    np.testing.assert_allclose(inside(logits), eager, rtol=1e-12)
    np.testing.assert_allclose(given_probs(), eager, rtol=1e-10)


def test_fractional_weights_closed_over_by_jit_make_the_debiased_error_nan():
    logits, labels = _case()
    w = jnp.full(50, 0.5)
    ece = jax.jit(
        lambda z: metrics.expected_calibration_error(z, labels, sample_weight=w, debias=True)
    )
    assert np.isnan(ece(logits))
    with pytest.raises(ValueError, match="whole numbers"):
        metrics.expected_calibration_error(logits, labels, sample_weight=w, debias=True)


def test_fit_temperature_refuses_tracers():
    logits, labels = _case()
    with pytest.raises(ValueError, match=r"needs concrete arrays"):
        jax.jit(metrics.fit_temperature)(logits, labels)


@pytest.mark.parametrize("kl", [False, True])
def test_distill_loss_under_jit_with_traced_temperature(kl):
    rng = np.random.default_rng(1)
    student, teacher = (jnp.asarray(a) for a in rng.normal(size=(2, 5, 6)))
    loss = jax.jit(lambda s, t, temp: distill_loss(s, t, temperature=temp, kl=kl))
    eager = distill_loss(student, teacher, temperature=2.0, kl=kl)
    np.testing.assert_allclose(loss(student, teacher, jnp.asarray(2.0)), eager, rtol=1e-12)
    # A non-positive traced temperature cannot raise; it must not pass as a number either.
    assert not np.isfinite(loss(student, teacher, jnp.asarray(0.0)))


def test_distill_gradient():
    rng = np.random.default_rng(2)
    student, teacher = (jnp.asarray(a) for a in rng.normal(size=(2, 5, 6)))
    temperature = 2.5
    grad = jax.jit(jax.grad(lambda s: distill_loss(s, teacher, temperature=temperature)))(student)
    expected = (
        temperature
        * (
            jax.nn.softmax(student / temperature, axis=-1)
            - jax.nn.softmax(teacher / temperature, axis=-1)
        )
        / 5
    )
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-12)


def test_distill_gradient_ignores_masked_rows_of_minus_inf():
    """A `where`-masked position whose student and teacher logits are all -inf (masked
    padding): loss and gradients are those of the same rows at 0, not NaN."""
    rng = np.random.default_rng(4)
    student, teacher = rng.normal(size=(2, 5, 6))
    keep = np.array([True, False, True, True, False])
    masked_s, masked_t = student.copy(), teacher.copy()
    masked_s[~keep] = masked_t[~keep] = -np.inf
    zeroed_s, zeroed_t = student.copy(), teacher.copy()
    zeroed_s[~keep] = zeroed_t[~keep] = 0.0

    def value_and_grad(s, t):
        loss = lambda s: distill_loss(  # noqa: E731
            s, jnp.asarray(t), temperature=2.0, where=jnp.asarray(keep), reduction="mean"
        )
        return jax.value_and_grad(loss)(jnp.asarray(s))

    loss, grad = value_and_grad(masked_s, masked_t)
    expected_loss, expected_grad = value_and_grad(zeroed_s, zeroed_t)
    assert np.isfinite(float(expected_loss))
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=0)
    assert np.all(np.asarray(grad)[~keep] == 0.0)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_thresholded_scope_with_nothing_above_is_nan_under_jit(norm):
    # Eagerly a ValueError; traced, no plausible number (the max norm gave 0).
    logits, labels = _case()
    ece = jax.jit(
        lambda z, y: metrics.expected_calibration_error(
            z, y, norm=norm, scope="thresholded", threshold=0.9999999
        )
    )(logits, labels)
    assert np.isnan(ece)
    with pytest.raises(ValueError, match=r"above `threshold`"):
        metrics.expected_calibration_error(
            logits, labels, norm=norm, scope="thresholded", threshold=0.9999999
        )


@pytest.mark.parametrize(
    "options",
    [
        dict(n_bins=10),
        dict(n_bins=6, norm="l2", debias=True, scope="classwise", binning="equal_mass"),
        dict(n_bins=5, norm="l1", debias=True, method="percentile"),
        dict(n_bins=5, scope="thresholded", threshold=0.05),
        dict(n_bins=5, scope="thresholded", threshold=0.2, binning="equal_mass"),
    ],
)
def test_calibration_error_interval_under_jit(options):
    """The resample indices (and normal draws) are host constants: the traced interval
    is the eager one."""
    logits, labels = _case(n=60)

    @jax.jit
    def interval(z, y):
        return metrics.calibration_error_interval(z, y, n_resamples=40, seed=3, **options)

    eager = metrics.calibration_error_interval(logits, labels, n_resamples=40, seed=3, **options)
    for traced, expected in zip(interval(logits, labels), eager, strict=True):
        assert np.isfinite(float(expected))
        np.testing.assert_allclose(traced, expected, rtol=1e-12)


def test_calibration_error_interval_refuses_traced_weights():
    logits, labels = _case(n=30)
    weights = jnp.ones(30)
    with pytest.raises(ValueError, match=r"weigh.*outside jax.jit.*Received: sample_weight="):
        jax.jit(lambda z, y, w: metrics.calibration_error_interval(z, y, sample_weight=w))(
            logits, labels, weights
        )


def test_an_undefined_thresholded_resample_under_jit_gives_nan():
    """Eagerly a resample with nothing above the threshold raises; traced, it cannot be
    read and the interval is NaN, never a plausible number."""
    probs = np.full((20, 4), 0.25)
    probs[0] = [0.85, 0.05, 0.05, 0.05]  # one prediction above 0.5: a third of resamples miss it
    labels = np.zeros(20, dtype=np.int64)
    options = dict(from_logits=False, scope="thresholded", threshold=0.5, n_resamples=30)
    with pytest.raises(ValueError, match=r"resamples is undefined"):
        metrics.calibration_error_interval(probs, labels, **options)
    _, low, high = jax.jit(lambda p, y: metrics.calibration_error_interval(p, y, **options))(
        jnp.asarray(probs), jnp.asarray(labels)
    )
    assert np.isnan(float(low)) and np.isnan(float(high))
