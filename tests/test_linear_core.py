"""The blocked linear + smoothed cross-entropy (lsr._linear) against the reference.

Loss and gradients for the hidden states, the projection and the bias, computed block by
block, must equal the float64 reference evaluated on the full logits
``hidden @ projection + bias`` (central differences for the gradients), on every
selected backend and for block sizes that do and do not divide the number of rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from lsr import _linear
from lsr._checks import prepare_linear_smooth_ce
from lsr._compat import array_namespace
from tests import reference
from tests.backends import assert_close

N, D, K = 7, 3, 5

# The loops over blocks of rows: the eager loop over the kept rows
# (``linear_smooth_ce``), and the compiled frameworks' ``scan`` over every row (masked)
# or, given a ``cond`` and ``set_rows``, over the kept rows only, with the hidden
# states' gradient set inside the loop (JAX's) or after it (TensorFlow's). Here the
# scan and the cond run in Python, on any namespace.
LOOPS = ["eager", "scan", "scan_kept_rows", "scan_kept_rows_set_after"]


def _python_scan(body, init, xs):
    """``jax.lax.scan``'s contract in Python: outputs stacked on a leading axis."""
    xp = array_namespace(
        *[x for x in (xs.values() if isinstance(xs, dict) else [xs]) if x is not None]
    )
    count = next(x for x in (xs.values() if isinstance(xs, dict) else [xs]) if x is not None).shape[
        0
    ]
    carry, outputs = init, []
    for i in range(count):
        x = (
            {k: None if v is None else v[i, ...] for k, v in xs.items()}
            if isinstance(xs, dict)
            else xs[i, ...]
        )
        carry, out = body(carry, x)
        outputs.append(out)

    def stack(parts):
        first = parts[0]
        if first is None:
            return None
        if isinstance(first, dict):
            return {k: stack([p[k] for p in parts]) for k in first}
        if isinstance(first, tuple):
            return tuple(stack([p[i] for p in parts]) for i in range(len(first)))
        return xp.stack(parts)

    return carry, stack(outputs)


def _set_rows(out, index, values):
    """``out`` with ``values`` at the rows ``index`` (``N`` dropped), functional, from
    plain array-API ops (a one-hot product)."""
    xp = array_namespace(out, index)
    rows = xp.arange(out.shape[0], dtype=index.dtype)
    hits = xp.astype(index[:, None] == rows[None, :], values.dtype)  # (B, N)
    shape = (out.shape[0],) + (1,) * (out.ndim - 1)
    placed = (
        xp.matmul(xp.matrix_transpose(hits), values)
        if values.ndim > 1
        else xp.sum(hits * values[:, None], axis=0)
    )
    return xp.where(xp.reshape(xp.sum(hits, axis=0) > 0, shape), placed, out)


def _run(loop, *args, computed=None, **kwargs):
    """``_linear``'s loss (and gradients) by ``loop``; ``computed`` counts the blocks the
    kept-rows scan computes."""
    if loop == "eager":
        return _linear.linear_smooth_ce(*args, **kwargs)
    if loop == "scan":
        return _linear.scanned_linear_smooth_ce(*args, scan=_python_scan, **kwargs)

    def cond(pred, if_true, if_false, operand):
        if bool(pred):
            if computed is not None:
                computed.append(1)
            return if_true(operand)
        return if_false(operand)

    return _linear.scanned_linear_smooth_ce(
        *args,
        scan=_python_scan,
        cond=cond,
        set_rows=_set_rows,
        rows_in_carry=loop == "scan_kept_rows",
        **kwargs,
    )


def _case(dense, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(N, D))
    projection = rng.normal(size=(D, K))
    bias = rng.normal(size=K)
    if dense:
        labels = rng.dirichlet(np.ones(K), size=N)
    else:
        labels = rng.integers(0, K, size=N)
        labels[::3] = -1
    return hidden, projection, bias, labels


def _reference_loss(hidden, projection, bias, labels, options, cotangent):
    logits = hidden @ projection + (0.0 if bias is None else bias)
    return float(np.sum(reference.smooth_ce(logits, labels, **options) * cotangent))


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("chunk_size", [1, 3, None])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_blocked_linear_loss_and_gradients_match_reference(
    backend, loop, chunk_size, reduction, dense, with_bias
):
    hidden, projection, bias, labels = _case(dense)
    bias = bias if with_bias else None
    options = dict(
        smoothing=0.2,
        prior="others",
        axis=-1,
        ignore_index=None if dense else -1,
        weight=np.linspace(0.5, 1.5, K),
        reduction=reduction,
        z_loss=0.01,
    )
    cotangent = np.linspace(0.5, 2.0, N) if reduction == "none" else np.array(1.0)
    expected_loss = reference.smooth_ce(
        hidden @ projection + (bias if with_bias else 0.0), labels, **options
    )
    expected = [
        reference.numerical_gradient(
            lambda h: _reference_loss(h, projection, bias, labels, options, cotangent), hidden
        ),
        reference.numerical_gradient(
            lambda p: _reference_loss(hidden, p, bias, labels, options, cotangent), projection
        ),
    ]
    if with_bias:
        expected.append(
            reference.numerical_gradient(
                lambda b: _reference_loss(hidden, projection, b, labels, options, cotangent), bias
            )
        )
    arrays = [backend.asarray(a) for a in (hidden, projection)]
    xb = None if bias is None else backend.asarray(bias)
    xp, _, y, spec, _ = prepare_linear_smooth_ce(
        *arrays,
        backend.asarray(labels),
        bias=xb,
        smoothing=options["smoothing"],
        prior=options["prior"],
        ignore_index=options["ignore_index"],
        weight=backend.asarray(options["weight"]),
        where=None,
        reduction=reduction,
        kl=False,
        z_loss=options["z_loss"],
        chunk_size=chunk_size,
    )
    loss, grads = _run(
        loop,
        *arrays,
        xb,
        y,
        xp=xp,
        spec=spec,
        chunk_size=chunk_size,
        with_grad=True,
        cotangent=backend.asarray(cotangent) if reduction == "none" else None,
    )
    assert_close(backend.to_numpy(loss), expected_loss, "float64")
    grads = [g for g in grads if g is not None]
    assert len(grads) == len(expected)
    for actual, wanted in zip(grads, expected, strict=True):
        np.testing.assert_allclose(backend.to_numpy(actual), wanted, rtol=1e-6, atol=1e-7)
    loss_only, nothing = _run(
        loop, *arrays, xb, y, xp=xp, spec=spec, chunk_size=chunk_size, with_grad=False
    )
    assert nothing is None
    assert_close(backend.to_numpy(loss_only), expected_loss, "float64")


IDS_SHAPE = r"Integer `labels` must have hidden's leading shape, \(7,\)"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hidden_shape": (0, D)}, ValueError, r"`hidden` must have shape \(\.\.\., d\) with at"),
        ({"projection_shape": (D + 1, K)}, ValueError, r"`projection` must have shape \(d, K\)"),
        ({"bias_shape": (K + 1,)}, ValueError, r"`bias` must have shape \(5,\)"),
        ({"chunk_size": 0}, ValueError, "`chunk_size` must be a positive integer"),
        (
            {"labels_shape": (N + 1,)},
            ValueError,
            r"Integer `labels` must have hidden's leading shape, \(7,\)",
        ),
        (
            {"labels_shape": (N, 2)},
            ValueError,
            r"Integer `labels` must have hidden's leading shape, \(7,\)",
        ),
    ],
)
def test_linear_arguments_are_checked_before_computing(backend, kwargs, error, match):
    rng = np.random.default_rng(0)
    hidden = backend.asarray(rng.normal(size=kwargs.get("hidden_shape", (N, D))))
    projection = backend.asarray(rng.normal(size=kwargs.get("projection_shape", (D, K))))
    bias = backend.asarray(rng.normal(size=kwargs.get("bias_shape", (K,))))
    labels = backend.asarray(rng.integers(0, K, size=kwargs.get("labels_shape", (N,))))
    with pytest.raises(error, match=match):
        prepare_linear_smooth_ce(
            hidden,
            projection,
            labels,
            bias=bias,
            smoothing=0.1,
            prior="uniform",
            ignore_index=None,
            weight=None,
            where=None,
            reduction="mean",
            kl=False,
            z_loss=0.0,
            chunk_size=kwargs.get("chunk_size"),
        )


def test_linear_rows_are_flattened_after_checking_the_shapes_as_given(backend):
    """(B, T, d) hidden states: labels and ``where`` of the leading shape (B, T), dense
    targets (B, T, K); a mismatch is named with the shapes as passed."""
    rng = np.random.default_rng(1)
    hidden = backend.asarray(rng.normal(size=(2, 3, D)))
    projection = backend.asarray(rng.normal(size=(D, K)))
    dense = rng.dirichlet(np.ones(K), size=(2, 3))
    options = dict(
        bias=None,
        smoothing=0.1,
        prior="uniform",
        ignore_index=None,
        weight=None,
        reduction="none",
        kl=False,
        z_loss=0.0,
        chunk_size=None,
    )
    where = backend.asarray(np.array([[True, False, True], [True, True, False]]))
    _, flat, labels, spec, leading = prepare_linear_smooth_ce(
        hidden, projection, backend.asarray(dense), where=where, **options
    )
    assert leading == (2, 3)
    assert tuple(flat.shape) == (6, D) and tuple(labels.shape) == (6, K)
    np.testing.assert_array_equal(
        backend.to_numpy(spec.where), [True, False, True, True, True, False]
    )
    with pytest.raises(ValueError, match=r"Dense .*leading shape and K classes, \(2, 3, 5\)"):
        prepare_linear_smooth_ce(
            hidden, projection, backend.asarray(dense[:, :2]), where=None, **options
        )
    with pytest.raises(ValueError, match=r"`where` must be .* leading shape \(2, 3\)"):
        prepare_linear_smooth_ce(
            hidden,
            projection,
            backend.asarray(rng.integers(0, K, size=(2, 3))),
            where=backend.asarray(np.ones(6, dtype=bool)),
            **options,
        )


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kept", ["some", "none"])
@pytest.mark.parametrize("loop", LOOPS)
def test_rows_left_out_by_where_or_ignore_index(backend, dense, reduction, kept, loop):
    """Left-out rows (``where``, and ``ignore_index`` for ids) are skipped before the
    projection: their loss and hidden-state gradient are 0 and the rest is unchanged;
    with every row left out the mean is 0 and every gradient 0. The kept-rows scan
    computes only the blocks that hold a kept row."""
    hidden, projection, bias, labels = _case(dense, seed=3)
    where = np.array([True, False, True, True, False, False, True])
    if kept == "none":
        where[:] = False
    options = dict(
        smoothing=0.1,
        prior="uniform",
        axis=-1,
        ignore_index=None if dense else -1,
        weight=None,
        reduction=reduction,
        z_loss=0.0,
    )
    cotangent = np.linspace(0.5, 2.0, N) if reduction == "none" else np.array(1.0)

    def reference_loss(h, p, b):
        logits = h @ p + b
        per_row = reference.smooth_ce(logits, labels, **{**options, "reduction": "none"})
        kept_rows = where & (True if dense else labels != -1)
        per_row = np.where(kept_rows, per_row, 0.0)
        if reduction == "mean":
            count = np.sum(kept_rows)
            return np.sum(per_row) / count if count else 0.0
        return np.sum(per_row * cotangent) if reduction == "none" else np.sum(per_row)

    arrays = [backend.asarray(a) for a in (hidden, projection, bias)]
    xp, _, y, spec, _ = prepare_linear_smooth_ce(
        *arrays[:2],
        backend.asarray(labels),
        bias=arrays[2],
        where=backend.asarray(where),
        kl=False,
        chunk_size=2,
        **{name: value for name, value in options.items() if name != "axis"},
    )
    computed = []
    loss, grads = _run(
        loop,
        *arrays,
        y,
        computed=computed,
        xp=xp,
        spec=spec,
        chunk_size=2,
        with_grad=True,
        cotangent=backend.asarray(cotangent) if reduction == "none" else None,
    )
    expected = reference_loss(hidden, projection, bias)
    if reduction == "none":
        assert_close(float(np.sum(backend.to_numpy(loss) * cotangent)), expected, "float64")
        assert np.all(backend.to_numpy(loss)[~where] == 0.0)
    else:
        assert_close(backend.to_numpy(loss), expected, "float64")
    wanted = [
        reference.numerical_gradient(lambda h: reference_loss(h, projection, bias), hidden),
        reference.numerical_gradient(lambda p: reference_loss(hidden, p, bias), projection),
        reference.numerical_gradient(lambda b: reference_loss(hidden, projection, b), bias),
    ]
    for actual, want in zip(grads, wanted, strict=True):
        np.testing.assert_allclose(backend.to_numpy(actual), want, rtol=1e-6, atol=1e-7)
    assert np.all(backend.to_numpy(grads[0])[~where] == 0.0)
    if loop.startswith("scan_kept_rows"):
        kept_rows = int(np.sum(where & (True if dense else labels != -1)))
        assert len(computed) == -(-kept_rows // 2)  # of 4 blocks of 2 rows


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("chunk_size", [1, 2, 3, None])
def test_a_left_out_rows_nan_hidden_state_is_never_projected(backend, loop, chunk_size):
    """Padding rows may hold NaN or inf hidden states (after a fully masked attention
    row, say): left out, they must not reach any gradient, whatever the block size
    (a block's unused slots and masked rows are not projected, or are zeroed)."""
    hidden, projection, bias, labels = _case(False, seed=5)
    hidden[0] = np.nan
    hidden[4] = np.inf
    labels[[0, 4]] = -1
    options = dict(
        smoothing=0.1, prior="uniform", ignore_index=-1, weight=None, where=None,
        reduction="mean", kl=False, z_loss=0.0,
    )  # fmt: skip
    arrays = [backend.asarray(a) for a in (hidden, projection, bias)]
    xp, _, y, spec, _ = prepare_linear_smooth_ce(
        *arrays[:2], backend.asarray(labels), bias=arrays[2], chunk_size=chunk_size, **options
    )
    loss, grads = _run(loop, *arrays, y, xp=xp, spec=spec, chunk_size=chunk_size, with_grad=True)
    assert np.isfinite(backend.to_numpy(loss))
    for grad in grads:
        grad = backend.to_numpy(grad)
        assert np.all(np.isfinite(grad))
    clean = hidden.copy()
    clean[[0, 4]] = 0.0
    clean_arrays = [backend.asarray(a) for a in (clean, projection, bias)]
    expected_loss, expected = _run(
        loop, *clean_arrays, y, xp=xp, spec=spec, chunk_size=chunk_size, with_grad=True
    )
    assert_close(backend.to_numpy(loss), backend.to_numpy(expected_loss), "float64")
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), atol=1e-12)
