"""The edges through each framework adapter, in every execution mode of the session's
frameworks: eager and ``jax.jit``; eager and ``torch.compile``; eager, ``tf.function``
and ``tf.function(jit_compile=True)``. Values and gradients (from each framework's own
autodiff of the loss) against the definition in float64.

Collected only in sessions with at least one framework (tests/conftest.py); the modes
are those of the selected frameworks, so none is skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import reference
from tests.conftest import SELECTED

DYNAMO_WARNINGS = (
    "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning",
    "ignore:.*should not be instantiated:DeprecationWarning",
    "ignore:`torch.jit.script:DeprecationWarning",
)

ALL_MODES = {
    "jax": ["jax-eager", "jax-jit"],
    "torch": ["torch-eager", "torch-compile"],
    "tensorflow": ["tf-eager", "tf-function", "tf-xla"],
}
MODES = [mode for name, modes in ALL_MODES.items() if name in SELECTED for mode in modes]
TRACED = {"jax-jit", "torch-compile", "tf-function", "tf-xla"}


def _run(mode, logits, labels, loss="smooth_ce", **options):
    """``(loss, d sum(loss) / d logits)`` as NumPy arrays through the adapter's ``loss``
    (``"smooth_ce"``, or ``"smooth_bce"`` with targets as ``labels``) in ``mode``.

    Array options (``smoothing``, ``prior``, ``weight``) are converted and passed as
    arguments, so that in traced modes their values are abstract.
    """
    arrays = {k: v for k, v in options.items() if isinstance(v, np.ndarray)}
    static = {k: v for k, v in options.items() if k not in arrays}
    static.setdefault("reduction", "none")
    torch_static = {}
    if loss == "smooth_ce":
        static.setdefault("ignore_index", -100)
        torch_static = {"axis": -1}
    if mode.startswith("jax"):
        import jax
        import jax.numpy as jnp

        import lsr.jax

        def loss_fn(z, y, extra):
            return getattr(lsr.jax, loss)(z, y, **static, **extra)

        def objective(z, y, extra):
            value = loss_fn(z, y, extra)
            return jnp.sum(value), value

        fn = jax.value_and_grad(objective, has_aux=True)
        if mode == "jax-jit":
            fn = jax.jit(fn)
        extra = {k: jnp.asarray(v) for k, v in arrays.items()}
        (_, value), grad = fn(jnp.asarray(logits), jnp.asarray(labels), extra)
        return np.asarray(value), np.asarray(grad)
    if mode.startswith("torch"):
        import torch

        import lsr.torch

        def loss_fn(z, y, extra):
            return getattr(lsr.torch, loss)(z, y, **torch_static, **static, **extra)

        if mode == "torch-compile":
            torch._dynamo.reset()
            loss_fn = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
        z = torch.tensor(logits, requires_grad=True)
        extra = {k: torch.from_numpy(v) for k, v in arrays.items()}
        value = loss_fn(z, torch.from_numpy(labels), extra)
        value.sum().backward()
        return value.detach().numpy(), z.grad.numpy()
    import tensorflow as tf

    import lsr.tensorflow

    def value_and_grad(z, y, extra):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = getattr(lsr.tensorflow, loss)(z, y, **static, **extra)
            total = tf.reduce_sum(value)
        return value, tape.gradient(total, z)

    if mode != "tf-eager":
        value_and_grad = tf.function(value_and_grad, jit_compile=mode == "tf-xla")
    extra = {k: tf.constant(v) for k, v in arrays.items()}
    value, grad = value_and_grad(tf.constant(logits), tf.constant(labels), extra)
    return value.numpy(), grad.numpy()


def _expected(logits, labels, *, smoothing=0.1, prior="uniform", weight=None, ignore=-100):
    """Per-position loss and its gradient from the definition, in float64: the gradient of
    ``sum_k w_k q'_k (lse - z_k)`` is ``(sum_k w_k q'_k) softmax(z) - w q'``, 0 where ignored."""
    z = np.asarray(logits, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    keep = labels != ignore
    q = reference.smoothed_targets(
        np.where(keep, labels, 0), z.shape[-1], smoothing=smoothing, prior=prior
    )
    w = np.ones(z.shape[-1]) if weight is None else np.asarray(weight, np.float64)
    loss = reference.smooth_ce(
        z,
        labels,
        smoothing=smoothing,
        prior=prior,
        ignore_index=ignore,
        weight=weight,
        reduction="none",
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.exp(reference.log_softmax(z))
    mass = (w * q).sum(-1, keepdims=True)
    grad = np.where(keep[:, None], mass * p - w * q, 0.0)
    return loss, grad


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def _check(mode, logits, labels, rtol=2e-5, atol=1e-6, **options):
    loss, grad = _run(mode, logits, labels, **options)
    expected_loss, expected_grad = _expected(
        logits,
        labels,
        smoothing=options.get("smoothing", 0.1),
        prior=options.get("prior", "uniform"),
        weight=options.get("weight"),
    )
    np.testing.assert_allclose(loss, expected_loss, rtol=rtol, atol=atol, err_msg=mode)
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=atol, err_msg=mode)
    return loss, grad


def _logits(rows, classes, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, classes)).astype(np.float32)


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
def test_uint8_label_equal_to_wrapped_ignore_index(mode):
    loss, _ = _check(mode, _logits(3, 200), np.array([156, 3, 199], np.uint8))
    assert np.all(loss > 1.0)


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
def test_uint8_labels_with_more_classes_than_the_dtype_holds(mode):
    _check(mode, _logits(2, 300), np.array([5, 200], np.uint8))


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
@pytest.mark.parametrize("prior", ["uniform", "others", "vector"])
def test_masked_logits_without_mass_are_finite(mode, prior):
    logits = _logits(4, 6)
    logits[:, 4:] = -np.inf
    labels = np.array([0, 1, 2, 3])
    if prior == "vector":
        options = {"prior": np.array([0.25] * 4 + [0.0, 0.0], np.float32), "smoothing": 0.2}
    else:
        options = {"prior": prior, "smoothing": 0.0}
    loss, grad = _check(mode, logits, labels, **options)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
def test_ignored_row_of_all_minus_inf_has_zero_gradient(mode):
    logits = _logits(3, 5)
    logits[1] = -np.inf
    loss, grad = _run(mode, logits, np.array([0, -100, 4]), smoothing=0.1)
    assert loss[1] == 0.0 and np.all(grad[1] == 0.0)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
def test_rows_with_a_nan_or_plus_inf_logit_give_the_same_gradient_in_every_mode(mode):
    """Their loss is NaN. Their gradient is ``softmax(z) - q'`` with the softmax taken as
    ``exp(z - lse)`` at ``lse = +inf``: NaN at a +inf logit (``inf - inf``) and 0 at a
    finite one, so ``-q'`` there; a row with a NaN logit is NaN throughout. The same in
    every mode (eager TensorFlow's backward once took ``exp(z)`` for the softmax of such
    rows: a finite, wrong gradient beside their NaN loss)."""
    logits = _logits(4, 4)
    logits[0, 0] = np.inf
    logits[1, 2] = np.nan
    logits[2, :2] = np.inf
    labels = np.array([0, 1, 3, 2])
    loss, grad = _run(mode, logits, labels, smoothing=0.1)
    off, on = 0.1 / 4, 1 - 0.1 + 0.1 / 4  # q' off and on the label, K = 4
    expected_loss, expected_grad = _expected(logits[3:], labels[3:])
    np.testing.assert_array_equal(np.isnan(loss), [True, True, True, False], err_msg=mode)
    np.testing.assert_allclose(loss[3:], expected_loss, rtol=2e-5, err_msg=mode)
    expected = np.array(
        [
            [np.nan, -off, -off, -off],
            [np.nan] * 4,
            [np.nan, np.nan, -off, -on],
            expected_grad[0],
        ]
    )
    np.testing.assert_allclose(grad, expected, rtol=2e-5, atol=1e-6, err_msg=mode)


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
def test_with_a_confidence_penalty_such_rows_are_nan_in_every_mode(mode):
    """With a confidence penalty the gradient of a row with a +inf or NaN logit also
    reads the row's entropy, which such a softmax makes NaN: NaN throughout, in every
    mode (the backward from a saved logsumexp once took ``0 log 0`` for the NaN entry's
    term, a finite gradient in eager TensorFlow and under ``torch.compile``)."""
    logits = _logits(4, 4)
    logits[0, 0] = np.inf
    logits[1, 2] = np.nan
    logits[2, :2] = np.inf
    loss, grad = _run(mode, logits, np.array([0, 1, 3, 2]), confidence_penalty=0.1)
    np.testing.assert_array_equal(np.isnan(loss), [True, True, True, False], err_msg=mode)
    assert np.all(np.isnan(grad[:3])), (mode, grad)
    assert np.all(np.isfinite(grad[3])), (mode, grad)


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
@pytest.mark.parametrize("shift", [1e4, -1e4])
def test_large_logits_keep_float32_accuracy(mode, shift):
    logits = (_logits(16, 300, seed=2) * 3 + shift).astype(np.float32)
    labels = np.arange(16) % 300
    loss, _ = _run(mode, logits, labels)
    expected, _ = _expected(logits, labels)
    np.testing.assert_allclose(loss, expected, rtol=2e-6, err_msg=mode)


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
def test_negative_weights_and_zero_weight_sums_in_the_mean(mode):
    logits, labels = _logits(4, 5), np.array([0, 1, 2, 3])
    weight = -np.arange(1.0, 6.0, dtype=np.float32)
    loss, grad = _run(mode, logits, labels, weight=weight, reduction="mean")
    per_position, per_grad = _expected(logits, labels, weight=weight)
    denominator = weight[labels].sum()
    np.testing.assert_allclose(loss, per_position.sum() / denominator, rtol=2e-5, err_msg=mode)
    np.testing.assert_allclose(grad, per_grad / denominator, rtol=2e-5, atol=1e-6, err_msg=mode)
    zero_on_present = np.array([0.0, 0.0, 0.0, 0.0, 1.0], np.float32)
    loss, _ = _run(mode, logits, labels, weight=zero_on_present, reduction="mean")
    assert np.isnan(loss), mode


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("smoothing", 1.5),
        ("smoothing", -0.2),
        ("prior", [0.5, 0.5, 0.3, -0.3]),
        ("prior", [0.3, 0.3, 0.3, 0.3]),
        ("prior", [0.5, 0.5, np.nan, 0.0]),
    ],
)
def test_invalid_array_option_is_an_error_or_nan(mode, name, value):
    """``smoothing`` outside [0, 1], a ``prior`` that is not a distribution: an error where
    values are readable, NaN loss and gradient where they are traced."""
    logits, labels = _logits(3, 4), np.array([0, 1, 2])
    option = {name: np.asarray(value, np.float32)}
    if mode in TRACED:
        loss, grad = _run(mode, logits, labels, reduction="mean", **option)
        assert np.isnan(loss) and np.all(np.isnan(grad)), mode
    else:
        with pytest.raises(ValueError, match=name):
            _run(mode, logits, labels, **option)


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
def test_out_of_range_label_is_an_error_or_nan_in_loss_and_gradient(mode):
    logits, labels = _logits(3, 4), np.array([0, 7, 2])
    if mode in TRACED:
        loss, grad = _run(mode, logits, labels, reduction="mean")
        assert np.isnan(loss) and np.all(np.isnan(grad[1])), mode
    else:
        with pytest.raises(ValueError, match="class ids"):
            _run(mode, logits, labels)


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
@pytest.mark.parametrize(
    "row",
    [[0.5, 0.5, 0.3, -0.3], [0.3, 0.3, 0.3, 0.3], [0.5, 0.5, np.nan, 0.0]],
    ids=["negative", "sum-not-1", "nan"],
)
def test_dense_targets_not_a_distribution_are_an_error_or_nan(mode, row):
    """Dense targets whose row is not a distribution: an error where values are
    readable, NaN loss and gradient for that row where they are traced (the other rows
    keep their values)."""
    logits = _logits(3, 4)
    labels = np.full((3, 4), 0.25, np.float32)
    labels[1] = row
    if mode in TRACED:
        loss, grad = _run(mode, logits, labels, ignore_index=None)
        assert np.isnan(loss[1]) and np.all(np.isnan(grad[1])), mode
        assert np.all(np.isfinite(loss[[0, 2]])) and np.all(np.isfinite(grad[[0, 2]])), mode
    else:
        with pytest.raises(ValueError, match="distributions"):
            _run(mode, logits, labels, ignore_index=None)


def _non_finite_logits(seed, rows=6, classes=4):
    """Random logits with a few +inf, -inf, NaN and huge entries, and sometimes a whole
    row of -inf; always a NaN at [0, 1] and a +inf at [1, 0] (the binary option sets'
    weight is 0 on class 1)."""
    rng = np.random.default_rng(seed)
    logits = (3 * rng.normal(size=(rows, classes))).astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):
        logits[rng.integers(rows), rng.integers(classes)] = rng.choice(
            [np.inf, -np.inf, np.nan, 1e30, -1e30]
        )
    if seed % 2:
        logits[rng.integers(rows)] = -np.inf
    logits[0, 1], logits[1, 0] = np.nan, np.inf
    return rng, logits


def _assert_same_in_every_mode(results):
    """Every mode's loss and gradient equal the first mode's: NaN at the same places,
    the rest within float32 rounding (infinities equal)."""
    (first, (loss, grad)), *others = results.items()
    for mode, (other_loss, other_grad) in others:
        for name, a, b in (("loss", loss, other_loss), ("gradient", grad, other_grad)):
            np.testing.assert_allclose(
                b, a, rtol=1e-4, atol=1e-5, err_msg=f"{name}: {mode} against {first}"
            )


_SOFTMAX_OPTIONS = [
    {},
    {"smoothing": 0.0},
    {"prior": "others"},
    {"weight": np.array([1.0, 2.0, 0.5, 0.0], np.float32)},
    {"z_loss": 1e-3},
    {"softcap": 5.0},
    {"confidence_penalty": 0.1},
    {"kl": True},
]


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("options", _SOFTMAX_OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_non_finite_logits_give_the_same_values_in_every_mode(seed, options):
    """Logits with +inf, -inf, NaN and huge entries, one label ignored: every mode of the
    session's frameworks gives the same loss and gradient, NaN where one does (eager
    TensorFlow and ``torch.compile`` once gave finite gradients on rows with a +inf or
    NaN logit where the others gave NaN). With every framework (``tests(all)``) the
    frameworks are compared with each other too."""
    rng, logits = _non_finite_logits(seed)
    labels = rng.integers(0, 4, 6)
    labels[rng.integers(6)] = -100
    _assert_same_in_every_mode({mode: _run(mode, logits, labels, **options) for mode in MODES})


_BINARY_OPTIONS = [
    {},
    {"smoothing": 0.0},
    {"smoothing": 0.2, "prior": 0.0},
    {"pos_weight": np.array([1.0, 2.0, 0.5, 3.0], np.float32)},
    {"weight": np.array([1.0, 0.0, 2.0, 1.0], np.float32)},
]


@pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("options", _BINARY_OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_non_finite_logits_give_the_same_binary_values_in_every_mode(seed, options):
    """The same for ``smooth_bce`` on soft targets (a weight of 0 on a NaN logit once gave
    loss 0 eagerly and NaN under autodiff of the weight)."""
    rng, logits = _non_finite_logits(seed)
    targets = rng.random(logits.shape).astype(np.float32)
    _assert_same_in_every_mode(
        {mode: _run(mode, logits, targets, "smooth_bce", **options) for mode in MODES}
    )
