"""``causal_shift=True``: the logits (or hidden states) of position t against the label
of t + 1, each sequence's last position left out, on every backend and adapter, against
the reference on explicitly sliced logits and labels."""

from __future__ import annotations

import numpy as np
import pytest

import lsr
from tests import reference
from tests.backends import assert_close, selected_backends
from tests.conftest import get_backend

B, T, D, K = 2, 5, 3, 7


def _case(seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(B, T, D))
    kernel = rng.normal(size=(D, K))
    labels = rng.integers(0, K, size=(B, T))
    labels[1, 2] = -100
    return hidden, kernel, labels


def _expected(logits, labels, reduction, **options):
    """The loss on the sliced logits (positions 0..T-2) and labels (1..T-1); for "none",
    the last position of each sequence gets 0."""
    loss = reference.smooth_ce(
        logits[:, :-1], labels[:, 1:], smoothing=0.1, reduction=reduction, **options
    )
    if reduction == "none":
        loss = np.concatenate([loss, np.zeros((B, 1))], axis=1)
    return loss


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, None])
def test_the_generic_loss_shifts_the_labels(backend, reduction, ignore_index):
    hidden, kernel, labels = _case()
    if ignore_index is None:
        labels = np.where(labels < 0, 0, labels)
    logits = hidden @ kernel
    loss = lsr.smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        smoothing=0.1,
        ignore_index=ignore_index,
        reduction=reduction,
        causal_shift=True,
    )
    expected = _expected(logits, labels, reduction, ignore_index=ignore_index)
    assert_close(backend.to_numpy(loss), expected, "float64")
    # The shift can be seen: without it the loss differs.
    unshifted = lsr.smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        smoothing=0.1,
        ignore_index=ignore_index,
        reduction=reduction,
    )
    assert not np.allclose(backend.to_numpy(unshifted), expected)


def test_a_where_mask_and_small_unsigned_labels(backend):
    """``where`` keeps its meaning (positions of the logits); uint8 labels with a
    negative ``ignore_index`` (which uint8 cannot hold) are shifted exactly."""
    hidden, kernel, labels = _case(1)
    labels = np.where(labels < 0, 3, labels).astype(np.uint8)
    logits = hidden @ kernel
    where = np.ones((B, T), dtype=bool)
    where[0, 1] = False
    for ignore_index in (-100, None):
        loss = lsr.smooth_ce(
            backend.asarray(logits),
            backend.asarray(labels),
            smoothing=0.1,
            ignore_index=ignore_index,
            where=backend.asarray(where),
            reduction="none",
            causal_shift=True,
        )
        expected = _expected(logits, labels.astype(np.int64), "none")
        expected[0, 1] = 0.0
        assert_close(backend.to_numpy(loss), expected, "float64")


@pytest.mark.parametrize(
    ("labels", "options", "error", "match"),
    [
        (np.full((B, T, K), 1.0 / K), {}, TypeError, r"needs integer labels"),
        (np.array(3), {}, ValueError, r"sequence axis"),
        (None, {"causal_shift": "yes"}, TypeError, r"`causal_shift` must be a bool"),
        (
            None,
            {"where": np.ones((B, T - 1), dtype=bool)},
            ValueError,
            r"`where` must be a boolean mask of the labels' shape \(2, 5\)",
        ),
    ],
)
def test_bad_inputs_are_refused_before_computing(labels, options, error, match):
    hidden, kernel, ids = _case()
    logits = hidden @ kernel
    if labels is None:
        labels = ids
    elif labels.ndim == 0:
        logits = logits[0, 0]
    options = {"causal_shift": True, **options}
    with pytest.raises(error, match=match + r".*Received: "):
        lsr.smooth_ce(logits, labels, **options)


def _adapter(name, hidden, kernel, labels, *, fused, reduction):
    """(loss, d loss / d hidden) through one adapter's smooth_ce or linear_smooth_ce."""
    options = dict(smoothing=0.1, reduction=reduction, causal_shift=True)
    if name == "jax":
        import jax
        import jax.numpy as jnp

        import lsr.jax

        def loss_fn(h):
            y = jnp.asarray(labels)
            if fused:
                return lsr.jax.linear_smooth_ce(
                    h, jnp.asarray(kernel), y, ignore_index=-100, chunk_size=3, **options
                )
            return lsr.jax.smooth_ce(h @ jnp.asarray(kernel), y, ignore_index=-100, **options)

        loss, grad = jax.jit(jax.value_and_grad(loss_fn))(jnp.asarray(hidden))
        return np.asarray(loss), np.asarray(grad)
    if name == "torch":
        import torch

        import lsr.torch

        h = torch.tensor(hidden, requires_grad=True)
        w, y = torch.tensor(kernel), torch.tensor(labels)
        if fused:
            loss = lsr.torch.linear_smooth_ce(h, w.T, y, chunk_size=3, **options)
        else:
            loss = lsr.torch.smooth_ce(h @ w, y, axis=-1, **options)
        loss.backward()
        return loss.detach().numpy(), h.grad.numpy()
    import tensorflow as tf

    import lsr.tensorflow

    h = tf.constant(hidden)
    with tf.GradientTape() as tape:
        tape.watch(h)
        y = tf.constant(labels)
        if fused:
            loss = lsr.tensorflow.linear_smooth_ce(
                h, tf.constant(kernel), y, ignore_index=-100, chunk_size=3, **options
            )
        else:
            loss = lsr.tensorflow.smooth_ce(
                h @ tf.constant(kernel), y, ignore_index=-100, **options
            )
    return loss.numpy(), tape.gradient(loss, h).numpy()


ADAPTERS = [name for name in ("jax", "torch", "tensorflow") if name in selected_backends()]

if ADAPTERS:

    @pytest.mark.parametrize("adapter", ADAPTERS)
    @pytest.mark.parametrize("fused", [False, True])
    def test_every_adapter_shifts_values_and_gradients(adapter, fused):
        get_backend(adapter)  # (JAX with x64, for float64 here)
        hidden, kernel, labels = _case(2)

        def expected_loss(h):
            return float(_expected(h @ kernel, labels, "mean", ignore_index=-100))

        loss, grad = _adapter(adapter, hidden, kernel, labels, fused=fused, reduction="mean")
        assert_close(loss, expected_loss(hidden), "float64")
        np.testing.assert_allclose(
            grad, reference.numerical_gradient(expected_loss, hidden), rtol=1e-6, atol=1e-7
        )
        # Each sequence's last hidden state has no next token: no gradient.
        assert np.all(grad[:, -1] == 0.0)


def test_the_first_label_is_not_read_and_a_huge_ignore_index_still_works(backend):
    """No position's logits meet the label at position 0: without an ``ignore_index`` it
    may hold anything (here Hugging Face's -100), and an ``ignore_index`` that no dtype
    can hold falls back to the mask."""
    hidden, kernel, labels = _case(3)
    labels[1, 2] = 4
    logits = hidden @ kernel
    first_unused = labels.copy()
    first_unused[:, 0] = -100
    expected = _expected(logits, labels, "mean")
    for ignore_index, given in ((None, first_unused), (2**70, labels)):
        loss = lsr.smooth_ce(
            backend.asarray(logits),
            backend.asarray(given),
            smoothing=0.1,
            ignore_index=ignore_index,
            causal_shift=True,
        )
        assert_close(backend.to_numpy(loss), expected, "float64")


if "torch" in selected_backends():

    def test_torch_keeps_the_fused_path_without_an_ignore_index():
        """The mask made without an ``ignore_index`` becomes -1 labels on read ids: the
        fused Functions (one logits-sized buffer; this small input takes the small
        path's), not autograd through the core's ops."""
        import torch

        import lsr.torch

        hidden, kernel, labels = _case(4)
        labels = np.where(labels < 0, 0, labels)
        logits = torch.tensor(hidden @ kernel, requires_grad=True)
        loss = lsr.torch.smooth_ce(
            logits, torch.tensor(labels), axis=-1, ignore_index=None, causal_shift=True
        )
        assert type(loss.grad_fn).__name__ == "SmoothCESmallBackward"
        assert_close(loss.item(), _expected(hidden @ kernel, labels, "mean"), "float64")
