"""The confidence penalty (-beta H(p), Pereyra et al. 2017) and the auxiliary outputs
(``return_aux=True``: nll, lse, entropy, correct) against the float64 reference
(``tests/reference.py``, written from the formulas), on every selected namespace and
through every pass of the core (whole, blocked, backward from a saved lse), then
through each adapter in its execution modes.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import pytest

import lsr
from lsr import _checks, _core
from lsr._checks import prepare_smooth_ce
from lsr._core import _loss
from tests import reference
from tests.backends import assert_close
from tests.conftest import SELECTED, get_backend

K = 5
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5, 0.75])
PRIOR_VECTOR = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
BETA = 0.7


def _case(seed, dense=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(6, K))
    if dense:
        return logits, rng.dirichlet(np.ones(K), size=6)
    labels = rng.integers(0, K, size=6)
    labels[::3] = 255
    labels[4] = 0
    return logits, labels


def _gradient(options, labels, logits, cotangent):
    return reference.numerical_gradient(
        lambda z: float(np.sum(reference.smooth_ce(z, labels, **options) * cotangent)), logits
    )


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("prior", ["uniform", "vector"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("softcap", [None, 1.5])
def test_every_pass_adds_the_penalty(backend, dense, prior, reduction, softcap):
    logits, labels = _case(1, dense)
    options = dict(
        smoothing=0.2,
        prior=PRIOR_VECTOR if prior == "vector" else prior,
        axis=-1,
        ignore_index=None if dense else 255,
        weight=WEIGHT,
        reduction=reduction,
        z_loss=0.01,
        softcap=softcap,
        confidence_penalty=BETA,
    )
    expected = reference.smooth_ce(logits, labels, **options)
    without = reference.smooth_ce(logits, labels, **{**options, "confidence_penalty": 0.0})
    assert not np.allclose(expected, without)  # (the case exercises the penalty)
    cotangent = np.random.default_rng(2).normal(size=6) if reduction == "none" else 0.7
    expected_grad = _gradient(options, labels, logits, cotangent)
    as_backend = {
        "prior": backend.asarray(PRIOR_VECTOR) if prior == "vector" else options["prior"],
        "weight": backend.asarray(WEIGHT),
    }
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits), backend.asarray(labels), **{**options, **as_backend}
    )
    assert_close(
        backend.to_numpy(lsr.smooth_ce(z, y, **{**options, **as_backend})), expected, "float64"
    )
    loss, lse, denominator = _core.smooth_ce(z, y, spec, xp=xp)
    assert_close(backend.to_numpy(loss), expected, "float64")
    # The backward from a saved lse (it takes the entropy's sum from the softmax).
    grad = _core.smooth_ce_grad(
        z, y, lse, denominator, backend.asarray(np.asarray(cotangent)), spec, xp=xp
    )
    np.testing.assert_allclose(backend.to_numpy(grad), expected_grad, rtol=1e-6, atol=1e-7)
    # The fused pass, whole and in blocks of rows (in place where the namespace writes).
    loss, fused = _core.reduced_loss_and_grad(z, y, spec, xp=xp)
    assert_close(backend.to_numpy(loss), expected, "float64")
    if reduction != "none":
        np.testing.assert_allclose(
            backend.to_numpy(fused) * cotangent, expected_grad, rtol=1e-6, atol=1e-7
        )
    if backend.name in ("numpy", "array_api_strict", "torch") and reduction != "none":
        out = backend.asarray(np.zeros(logits.shape))
        loss, _, _, _ = _core.blocked_loss_and_grad(
            z, y, spec, xp=xp, blocks=[slice(0, 4), slice(4, 6)], out=out, scratch=None
        )
        assert_close(backend.to_numpy(loss), expected, "float64")
        np.testing.assert_allclose(
            backend.to_numpy(out) * cotangent, expected_grad, rtol=1e-6, atol=1e-7
        )


@pytest.mark.parametrize("return_aux", [False, True])
def test_a_masked_class_has_no_entropy(backend, return_aux):
    """A class of logit -inf has p = 0: its p log p is 0 (not 0 * -inf), and its
    gradient 0."""
    logits, labels = _case(9)
    logits[:, 2] = -np.inf
    labels = np.where(labels == 2, 0, labels)
    options = dict(smoothing=0.0, ignore_index=255, reduction="sum", confidence_penalty=BETA)
    expected = reference.smooth_ce(logits, labels, **options)
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        prior="uniform",
        axis=-1,
        weight=None,
        return_aux=return_aux,
        **options,
    )
    loss, grad = _core.reduced_loss_and_grad(z, y, spec, xp=xp)
    assert np.isfinite(expected)
    assert_close(backend.to_numpy(loss), expected, "float64")
    grad = backend.to_numpy(grad)
    assert np.all(np.isfinite(grad)) and np.all(grad[:, 2] == 0.0)
    finite = np.where(np.isinf(logits), -1e300, logits)
    expected_grad = reference.numerical_gradient(
        lambda z: float(
            reference.smooth_ce(np.where(np.isinf(logits), -np.inf, z), labels, **options)
        ),
        finite,
    )
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)


def test_the_penalty_gradient_is_the_closed_form():
    """d(-beta H)/dz_j = beta p_j (log p_j + H), written out here (with no smoothing
    weight, the loss's own gradient is p - onehot)."""
    logits = np.random.default_rng(3).normal(size=(3, K))
    labels = np.array([0, 3, 4])
    xp, z, y, spec = prepare_smooth_ce(
        logits,
        labels,
        smoothing=0.0,
        prior="uniform",
        axis=-1,
        ignore_index=None,
        weight=None,
        reduction="sum",
        confidence_penalty=BETA,
    )
    _, got = _core.reduced_loss_and_grad(z, y, spec, xp=xp)
    p = np.exp(reference.log_softmax(logits))
    entropy = -(p * np.log(p)).sum(-1, keepdims=True)
    expected = p - np.eye(K)[labels] + BETA * p * (np.log(p) + entropy)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("softcap", [None, 1.5])
def test_aux_outputs_match_the_reference(backend, reduction, softcap):
    logits, labels = _case(4)
    # Ties for the maximum go to the first tied class, as argmax decides them: row 1's
    # target is the first of two maxima (correct), row 2's the second (not), and row
    # 4's logits are constant with target 0 (correct; any other target would not be).
    logits[1, 3] = logits[1, 4] = logits[2, 1] = logits[2, 2] = 50.0
    logits[4] = 0.5
    labels[1], labels[2], labels[4] = 3, 2, 0
    where = np.array([True, True, True, True, True, False])
    options = dict(ignore_index=255, reduction=reduction, softcap=softcap)
    expected = reference.aux_outputs(logits, labels, where=where, **options)
    loss, aux = lsr.smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        smoothing=0.1,
        weight=backend.asarray(WEIGHT),  # (the aux means are not weighted)
        where=backend.asarray(where),
        return_aux=True,
        **options,
    )
    assert isinstance(aux, lsr.Aux)
    expected_loss = reference.smooth_ce(
        logits, labels, smoothing=0.1, weight=WEIGHT, where=where, **options
    )
    assert_close(backend.to_numpy(loss), expected_loss, "float64")
    for name in lsr.Aux._fields:
        assert_close(backend.to_numpy(getattr(aux, name)), expected[name], "float64")
    if reduction == "none":
        np.testing.assert_array_equal(backend.to_numpy(aux.correct)[[1, 2, 4]], [1.0, 0.0, 1.0])


def test_aux_outputs_against_scipy_and_the_unsmoothed_loss():
    scipy_special = pytest.importorskip("scipy.special")
    logits = np.random.default_rng(5).normal(scale=3.0, size=(7, K))
    labels = np.array([0, 1, 2, 3, 4, 0, 1])
    loss, aux = lsr.smooth_ce(logits, labels, smoothing=0.0, reduction="none", return_aux=True)
    np.testing.assert_allclose(aux.nll, loss, rtol=1e-13)  # unsmoothed: the loss itself
    np.testing.assert_allclose(aux.lse, scipy_special.logsumexp(logits, axis=-1), rtol=1e-13)
    p = scipy_special.softmax(logits, axis=-1)
    np.testing.assert_allclose(aux.entropy, scipy_special.entr(p).sum(-1), rtol=1e-12)
    np.testing.assert_array_equal(aux.correct, (logits.argmax(-1) == labels).astype(float))


@pytest.mark.parametrize("return_aux", [False, True])
def test_all_ignored_gives_zeros(backend, return_aux):
    logits, labels = _case(6)
    labels[:] = 255
    result = lsr.smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        ignore_index=255,
        confidence_penalty=BETA,
        return_aux=return_aux,
    )
    loss, aux = result if return_aux else (result, None)
    assert backend.to_numpy(loss) == 0.0
    if aux is not None:
        assert all(backend.to_numpy(value) == 0.0 for value in aux)


def test_nothing_asked_takes_no_extra_sum(backend):
    logits, labels = _case(7)
    xp, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        smoothing=0.1,
        prior="uniform",
        axis=-1,
        ignore_index=255,
        weight=None,
        reduction="mean",
    )
    assert not spec.confidence_penalty and not spec.aux
    targets = _loss._targets(xp, y, spec, z)
    sums, _ = _loss.logit_sums(xp, z, targets)
    assert "exp_dot" not in sums
    for changes in ({"confidence_penalty": BETA}, {"aux": True}):
        sums, _ = _loss.logit_sums(xp, z, _loss._targets(xp, y, spec.replace(**changes), z))
        assert "exp_dot" in sums
    # The public function returns the bare loss.
    result = lsr.smooth_ce(backend.asarray(logits), backend.asarray(labels), ignore_index=255)
    assert not isinstance(result, tuple)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (True, TypeError),
        ("0.1", TypeError),
        (None, TypeError),
    ],
)
def test_bad_penalties_are_refused(value, error):
    with pytest.raises(
        error,
        match=r"`confidence_penalty` must be a finite non-negative number\."
        r" Received: confidence_penalty=",
    ):
        lsr.smooth_ce(np.zeros((2, K)), np.array([0, 1]), confidence_penalty=value)


@pytest.mark.parametrize("value", [1, "yes", None, np.array(True)])
def test_return_aux_must_be_a_bool(value):
    with pytest.raises(TypeError, match=r"`return_aux` must be a bool\. Received: return_aux="):
        lsr.smooth_ce(np.zeros((2, K)), np.array([0, 1]), return_aux=value)


def test_return_aux_needs_class_ids():
    with pytest.raises(ValueError, match=r"`return_aux` needs integer class labels"):
        lsr.smooth_ce(np.zeros((2, K)), np.full((2, K), 0.2), return_aux=True)


# The adapters, in their execution modes: value and gradient of the penalty, the aux
# outputs, and no gradient through them.
ALL_MODES = {
    "jax": ["jax-eager", "jax-jit"],
    "torch": ["torch-eager", "torch-compile"],
    "tensorflow": ["tf-eager", "tf-function", "tf-xla"],
}
MODES = [mode for name, modes in ALL_MODES.items() if name in SELECTED for mode in modes]
DYNAMO_WARNINGS = (
    "ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning",
    "ignore:.*should not be instantiated:DeprecationWarning",
    "ignore:`torch.jit.script:DeprecationWarning",
)


def _run(mode, logits, labels, weight, **options):
    """``(loss, d loss / d logits, aux, d sum(aux) / d logits)`` as NumPy, class axis last."""
    if mode.startswith("jax"):
        get_backend("jax")
        import jax
        import jax.numpy as jnp

        import lsr.jax

        def objective(z, w):
            loss, aux = lsr.jax.smooth_ce(z, jnp.asarray(labels), weight=w, **options)
            return jnp.sum(loss), (loss, aux)

        fn = jax.value_and_grad(objective, has_aux=True)
        aux_grad = jax.grad(lambda z, w: sum(jnp.sum(v) for v in objective(z, w)[1][1]))
        if mode == "jax-jit":
            fn, aux_grad = jax.jit(fn), jax.jit(aux_grad)
        z, w = jnp.asarray(logits), jnp.asarray(weight)
        (_, (loss, aux)), grad = fn(z, w)
        return (
            np.asarray(loss),
            np.asarray(grad),
            {k: np.asarray(v) for k, v in aux._asdict().items()},
            np.asarray(aux_grad(z, w)),
        )
    if mode.startswith("torch"):
        import torch

        import lsr.torch

        def loss_fn(z, w):
            return lsr.torch.smooth_ce(z, torch.from_numpy(labels), weight=w, axis=-1, **options)

        if mode == "torch-compile":
            torch._dynamo.reset()
            loss_fn = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
        z = torch.tensor(logits, requires_grad=True)
        loss, aux = loss_fn(z, torch.from_numpy(weight))
        assert not any(value.requires_grad for value in aux)
        loss.sum().backward()
        aux_values = {k: v.numpy() for k, v in aux._asdict().items()}
        return loss.detach().numpy(), z.grad.numpy(), aux_values, np.zeros_like(logits)
    import tensorflow as tf

    import lsr.tensorflow

    def value_and_grad(z, w):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(z)
            loss, aux = lsr.tensorflow.smooth_ce(z, tf.constant(labels), weight=w, **options)
            aux_total = tf.add_n([tf.reduce_sum(value) for value in aux])
        aux_grad = tape.gradient(aux_total, z)
        if aux_grad is None:
            aux_grad = tf.zeros_like(z)
        return loss, tape.gradient(loss, z), aux, aux_grad

    if mode != "tf-eager":
        value_and_grad = tf.function(value_and_grad, jit_compile=mode == "tf-xla")
    loss, grad, aux, aux_grad = value_and_grad(tf.constant(logits), tf.constant(weight))
    aux_values = {k: v.numpy() for k, v in aux._asdict().items()}
    return loss.numpy(), grad.numpy(), aux_values, aux_grad.numpy()


if MODES:

    @pytest.mark.filterwarnings(*DYNAMO_WARNINGS)
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("reduction", ["mean", "none"])
    def test_every_adapter_gives_the_penalty_and_the_aux_outputs(mode, reduction):
        logits, labels = _case(8)
        labels = np.where(labels == 255, -100, labels)
        # A tie for the maximum at the target, which is not the first tied class: wrong.
        logits[1, 0] = logits[1, 2] = 9.0
        labels[1] = 2
        options = dict(
            smoothing=0.1,
            ignore_index=-100,
            reduction=reduction,
            softcap=1.5,
            confidence_penalty=BETA,
        )
        loss, grad, aux, aux_grad = _run(mode, logits, labels, WEIGHT, return_aux=True, **options)
        expected = reference.smooth_ce(logits, labels, weight=WEIGHT, **options)
        cotangent = np.ones(6) if reduction == "none" else 1.0
        expected_grad = _gradient({**options, "weight": WEIGHT}, labels, logits, cotangent)
        np.testing.assert_allclose(loss, expected, rtol=1e-10, err_msg=mode)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7, err_msg=mode)
        expected_aux = reference.aux_outputs(
            logits, labels, ignore_index=-100, reduction=reduction, softcap=1.5
        )
        for name in lsr.Aux._fields:
            np.testing.assert_allclose(aux[name], expected_aux[name], rtol=1e-10, err_msg=name)
        assert np.all(aux_grad == 0.0)  # metrics: no gradient flows through them


class _ThreadGroup:
    """Collectives among threads, one per shard: each all-reduce waits for every
    shard's values and gives each the same combination (a stand-in for gloo/psum)."""

    def __init__(self, size):
        self.barrier = threading.Barrier(size)
        self.slots = [None] * size

    def all_reduce(self, rank, value, combine):
        self.slots[rank] = value
        self.barrier.wait()
        result = combine(list(self.slots))
        self.barrier.wait()
        return result


@pytest.mark.parametrize("softcap", [None, 4.0])
@pytest.mark.parametrize("prior", ["uniform", "vector"])
def test_class_sharded_pass_gives_both(backend, prior, softcap):
    """The core's class-sharded pass (three uneven shards, their collectives between
    threads): each position's loss with the confidence penalty, the auxiliary outputs
    over all K classes (a tie for the maximum across shards and inside one) and each
    shard's slice of the gradient, from the forward's sum p log p, equal the reference."""
    rng = np.random.default_rng(4)
    classes = 9
    logits = rng.normal(scale=2.0, size=(7, classes))
    labels = rng.integers(0, classes, size=7)
    logits[0] = 1.0  # constant: only class 0 is the first maximum
    labels[0] = 3
    logits[1, [1, 7]] = 6.0  # a tie across shards, the label the first
    labels[1] = 1
    logits[2, [1, 7]] = 6.0  # ... and the second
    labels[2] = 7
    logits[3, [4, 5]] = 6.0  # a tie inside one shard, the label the second
    labels[3] = 5
    labels[6] = 255
    prior_vector = np.linspace(1.0, 2.0, classes) / np.linspace(1.0, 2.0, classes).sum()
    options = dict(
        smoothing=0.2,
        prior=prior_vector if prior == "vector" else prior,
        axis=-1,
        ignore_index=255,
        weight=np.linspace(0.5, 1.5, classes),
        where=None,
        reduction="none",
        kl=False,
        z_loss=0.01,
        softcap=softcap,
        confidence_penalty=BETA,
    )
    cotangent = np.linspace(0.5, 2.0, 7)
    bounds = [(0, 2), (2, 6), (6, 9)]
    group = _ThreadGroup(len(bounds))
    results = [None] * len(bounds)
    converted = {
        name: backend.asarray(value) if isinstance(value, np.ndarray) else value
        for name, value in options.items()
    }

    def shard(rank):
        start, stop = bounds[rank]
        xp, z = backend.xp, backend.asarray(logits[:, start:stop])
        y, spec = _checks.prepare_sharded_options(
            xp,
            z,
            backend.asarray(labels),
            num_classes=classes,
            return_aux=True,
            **converted,
        )

        def all_reduce_sum(values):
            return group.all_reduce(
                rank, values, lambda parts: [sum(items) for items in zip(*parts, strict=True)]
            )

        def all_reduce_max(value):
            return group.all_reduce(rank, value, lambda parts: functools.reduce(xp.maximum, parts))

        loss, lse, targets, values, extras = _core.sharded_loss(
            z,
            y,
            spec,
            xp=xp,
            start=start,
            all_reduce_max=all_reduce_max,
            all_reduce_sum=all_reduce_sum,
        )
        grad = _core.smooth_ce_grad(
            z,
            y,
            lse,
            targets.mean_denominator(),
            backend.asarray(cotangent),
            targets.spec,
            xp=xp,
            shard_start=start,
            values=values,
            exp_dot=extras["p_log_p"],
        )
        results[rank] = (loss, extras, grad)

    threads = [threading.Thread(target=shard, args=(rank,)) for rank in range(len(bounds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(result is not None for result in results), "a shard failed"
    reference_options = {key: value for key, value in options.items() if key != "axis"}
    expected_loss = reference.smooth_ce(logits, labels, **reference_options)
    expected_aux = reference.aux_outputs(
        logits, labels, ignore_index=255, reduction="none", softcap=softcap
    )
    assert list(expected_aux["correct"][:4]) == [0.0, 1.0, 0.0, 0.0]
    expected_grad = _gradient(reference_options, labels, logits, cotangent)
    for (start, stop), (loss, extras, grad) in zip(bounds, results, strict=True):
        assert_close(backend.to_numpy(loss), expected_loss, "float64")
        for name in _core.AUX_NAMES:
            assert_close(backend.to_numpy(extras[name]), expected_aux[name], "float64")
        np.testing.assert_allclose(
            backend.to_numpy(grad), expected_grad[:, start:stop], rtol=1e-6, atol=1e-7
        )


LINEAR_ADAPTERS = [name for name in ("jax", "torch", "tensorflow") if name in SELECTED]

if LINEAR_ADAPTERS:

    @pytest.mark.parametrize("adapter", LINEAR_ADAPTERS)
    def test_every_fused_linear_loss_adds_the_penalty(adapter):
        """``linear_smooth_ce``: the penalty's value and its gradients in the hidden
        states, the kernel and the bias, in blocks of 4 rows (a row ignored)."""
        from tests.test_soft_cap import _linear_loss_and_grads

        get_backend(adapter)
        rng = np.random.default_rng(10)
        hidden, kernel = rng.normal(size=(10, 3)), rng.normal(scale=2.0, size=(3, K))
        bias, labels = rng.normal(size=K), rng.integers(0, K, size=10)
        labels[2] = -100
        options = dict(smoothing=0.2, ignore_index=-100, reduction="mean", confidence_penalty=BETA)

        def expected_loss(h, w, b):
            return float(reference.smooth_ce(h @ w + b, labels, **options))

        loss, *grads = _linear_loss_and_grads(
            adapter, hidden, kernel, bias, labels, chunk_size=4, **options
        )
        assert_close(loss, expected_loss(hidden, kernel, bias), "float64")
        expected_grads = (
            reference.numerical_gradient(lambda h: expected_loss(h, kernel, bias), hidden),
            reference.numerical_gradient(lambda w: expected_loss(hidden, w, bias), kernel),
            reference.numerical_gradient(lambda b: expected_loss(hidden, kernel, b), bias),
        )
        for got, want in zip(grads, expected_grads, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)

    @pytest.mark.parametrize("adapter", LINEAR_ADAPTERS)
    @pytest.mark.parametrize("reduction", ["mean", "none"])
    def test_every_fused_linear_loss_gives_the_aux_outputs(adapter, reduction):
        """Block by block (blocks of 4 rows, a row ignored), the same auxiliary outputs
        as the reference on the logits ``h W + b``, without gradient; the loss unchanged."""
        get_backend(adapter)
        rng = np.random.default_rng(12)
        hidden, kernel = rng.normal(size=(2, 5, 3)), rng.normal(scale=2.0, size=(3, K))
        bias, labels = rng.normal(size=K), rng.integers(0, K, size=(2, 5))
        labels[0, 2] = -100
        options = dict(smoothing=0.1, ignore_index=-100, reduction=reduction, chunk_size=4)
        logits = hidden @ kernel + bias
        expected = reference.aux_outputs(logits, labels, ignore_index=-100, reduction=reduction)
        expected_loss = reference.smooth_ce(
            logits, labels, smoothing=0.1, ignore_index=-100, reduction=reduction
        )
        if adapter == "jax":
            import jax
            import jax.numpy as jnp

            import lsr.jax

            def fn(h):
                return lsr.jax.linear_smooth_ce(
                    h,
                    jnp.asarray(kernel),
                    jnp.asarray(labels),
                    bias=jnp.asarray(bias),
                    return_aux=True,
                    **options,
                )

            loss, aux = jax.jit(fn)(jnp.asarray(hidden))
            aux_grad = jax.grad(lambda h: sum(jnp.sum(v) for v in fn(h)[1]))(jnp.asarray(hidden))
            assert np.all(np.asarray(aux_grad) == 0.0)
        elif adapter == "torch":
            import torch

            import lsr.torch

            h = torch.tensor(hidden, requires_grad=True)
            loss, aux = lsr.torch.linear_smooth_ce(
                h,
                torch.tensor(kernel.T),
                torch.tensor(labels),
                bias=torch.tensor(bias),
                return_aux=True,
                **options,
            )
            assert not any(value.requires_grad for value in aux)
            loss.sum().backward()
            loss = loss.detach()
        else:
            import tensorflow as tf

            import lsr.tensorflow

            h = tf.constant(hidden)
            with tf.GradientTape() as tape:
                tape.watch(h)
                loss, aux = lsr.tensorflow.linear_smooth_ce(
                    h,
                    tf.constant(kernel),
                    tf.constant(labels),
                    bias=tf.constant(bias),
                    return_aux=True,
                    **options,
                )
                aux_total = tf.add_n([tf.reduce_sum(value) for value in aux])
            assert tape.gradient(aux_total, h) is None
        assert_close(np.asarray(loss), expected_loss, "float64")
        for name in lsr.Aux._fields:
            np.testing.assert_allclose(np.asarray(getattr(aux, name)), expected[name], rtol=1e-10)


if "tensorflow" in SELECTED:

    @pytest.mark.parametrize("from_logits", [True, False])
    def test_keras_adds_the_penalty(from_logits):
        get_backend("tensorflow")
        import tensorflow as tf

        from lsr.keras import SmoothCrossEntropy

        logits, labels = _case(11)
        labels = np.where(labels == 255, 0, labels)
        loss_fn = SmoothCrossEntropy(
            from_logits=from_logits,
            label_smoothing=0.1,
            confidence_penalty=BETA,
            dtype="float64",
        )
        assert SmoothCrossEntropy.from_config(loss_fn.get_config()).confidence_penalty == BETA
        options = dict(smoothing=0.1, reduction="mean", confidence_penalty=BETA)
        expected = reference.smooth_ce(logits, labels, **options)
        z = tf.constant(logits)
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = loss_fn(tf.constant(labels), z if from_logits else tf.nn.softmax(z))
        assert_close(loss.numpy(), expected, "float64")
        if from_logits:
            expected_grad = _gradient(options, labels, logits, 1.0)
            grad = tape.gradient(loss, z).numpy()
            np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)
        with pytest.raises(ValueError, match=r"Received: confidence_penalty=-1"):
            SmoothCrossEntropy(confidence_penalty=-1.0)
