"""Per-position smoothing: ``smoothing`` as one epsilon per position (the positions' shape,
or broadcastable to it), through the core on every selected backend.

Expected values come from the float64 reference (``tests/reference.py``, which smooths
each position's target with its own epsilon) and from calling lsr once per position
with that position's epsilon as a number. The adapters (autodiff, jit, tf.function, the
fused linear loss) are in ``test_per_position_smoothing_adapters.py``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lsr
from lsr import _core, _linear
from lsr._checks import prepare_linear_smooth_ce, prepare_smooth_ce
from tests import reference
from tests.backends import assert_close

K = 5
PRIOR_VECTOR = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5, 0.75])
# (logits shape, class axis): plain (N, K), segmentation (N, C, H, W), sequences (B, T, V).
LAYOUTS = [((6, K), -1), ((2, K, 3, 2), 1), ((2, 3, K), -1)]


def _positions(shape, axis):
    axis %= len(shape)
    return shape[:axis] + shape[axis + 1 :]


def _epsilons(positions, seed=1):
    """One epsilon per position in [0, 1], with the ends 0 and 1 among them."""
    eps = np.random.default_rng(seed).uniform(size=positions)
    eps.flat[0] = 0.0
    if eps.size > 2:
        eps.flat[2] = 1.0
    return eps


def _case(shape, axis, *, dense, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=shape)
    positions = _positions(shape, axis)
    if dense:
        labels = np.moveaxis(rng.dirichlet(np.ones(K), size=positions), -1, axis % len(shape))
    else:
        labels = rng.integers(0, K, size=positions)
        labels.flat[1::4] = 255  # ignore_index
    where = rng.random(positions) > 0.25
    return logits, labels, where, _epsilons(positions)


def _prior(name):
    return PRIOR_VECTOR if name == "vector" else name


def _on_backend(backend, dtype, options):
    """The options' arrays (prior, weight, where, smoothing) as ``backend`` arrays."""
    converted = dict(options)
    for name in ("prior", "weight", "smoothing"):
        if isinstance(options.get(name), np.ndarray):
            converted[name] = backend.asarray(options[name], dtype)
    if options.get("where") is not None:
        converted["where"] = backend.asarray(options["where"])
    return converted


CONFIGS = list(
    itertools.product(
        LAYOUTS,
        [False, True],  # dense labels
        ["uniform", "others", "vector"],
        ["plain", "weight", "kl", "weight+kl"],
        ["mean", "sum", "none"],
    )
)


@pytest.mark.parametrize(("layout", "dense", "prior", "variant", "reduction"), CONFIGS)
def test_matches_reference(backend, layout, dense, prior, variant, reduction):
    shape, axis = layout
    logits, labels, where, eps = _case(shape, axis, dense=dense)
    options = dict(
        smoothing=eps,
        prior=_prior(prior),
        axis=axis,
        ignore_index=None if dense else 255,
        weight=WEIGHT if "weight" in variant else None,
        where=where,
        reduction=reduction,
        kl="kl" in variant,
    )
    expected = reference.smooth_ce(logits, labels, **options)
    dtype = "float64"
    actual = lsr.smooth_ce(
        backend.asarray(logits, dtype),
        backend.asarray(labels, dtype if dense else None),
        **_on_backend(backend, dtype, options),
    )
    assert_close(backend.to_numpy(actual), expected, dtype)


def test_float32_matches_reference(backend):
    logits, labels, where, eps = _case((6, K), -1, dense=False)
    options = dict(smoothing=eps, prior="others", ignore_index=255, where=where, kl=True)
    actual = lsr.smooth_ce(
        backend.asarray(logits, "float32"),
        backend.asarray(labels),
        **_on_backend(backend, "float32", options),
    )
    assert_close(
        backend.to_numpy(actual), reference.smooth_ce(logits, labels, **options), "float32"
    )


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("prior", ["uniform", "others", "vector"])
def test_each_position_as_if_alone(backend, dense, prior):
    """Position by position, the loss is that of the position alone with its epsilon as a
    Python number (lsr against itself: the per-position path against the scalar one)."""
    shape, axis = (2, K, 3), 1
    logits, labels, _, eps = _case(shape, axis, dense=dense)
    labels = np.where(labels == 255, 0, labels) if not dense else labels
    options = _on_backend(backend, "float64", {"prior": _prior(prior)})
    actual = backend.to_numpy(
        lsr.smooth_ce(
            backend.asarray(logits),
            backend.asarray(labels),
            smoothing=backend.asarray(eps),
            axis=axis,
            reduction="none",
            kl=True,
            **options,
        )
    )
    for i, t in np.ndindex(eps.shape):
        alone = lsr.smooth_ce(
            backend.asarray(logits[i, :, t]),
            backend.asarray(labels[i, :, t] if dense else labels[i, t]),
            smoothing=float(eps[i, t]),
            axis=0,
            reduction="none",
            kl=True,
            **options,
        )
        assert_close(actual[i, t], backend.to_numpy(alone), "float64")


@pytest.mark.parametrize(
    ("given", "positions"),
    [((4, 1), (4, 3)), ((3,), (4, 3)), ((1, 3), (4, 3)), ((1,), (4, 3)), ((2, 1, 1), (2, 4, 3))],
)
def test_broadcastable_shapes(backend, given, positions):
    """A shape that broadcasts to the positions' (NumPy's rule) is the full array it
    broadcasts to: (N, 1) one epsilon per example, (T,) one per token of every sequence."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(*positions, K))
    labels = rng.integers(0, K, size=positions)
    eps = rng.uniform(size=given)
    actual = lsr.smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels),
        smoothing=backend.asarray(eps),
        prior="others",
        reduction="none",
    )
    expected = reference.smooth_ce(
        logits, labels, smoothing=np.broadcast_to(eps, positions), prior="others", reduction="none"
    )
    assert_close(backend.to_numpy(actual), expected, "float64")


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("prior", ["uniform", "others", "vector"])
@pytest.mark.parametrize("variant", ["plain", "weight+kl", "z_loss+softcap"])
def test_gradient_matches_reference(backend, dense, prior, variant):
    """The core's closed-form gradient (one pass, and block after block where the
    namespace writes in place) against central differences of the reference."""
    shape, axis = (3, K, 2), 1
    logits, labels, where, eps = _case(shape, axis, dense=dense)
    options = dict(
        smoothing=eps,
        prior=_prior(prior),
        axis=axis,
        ignore_index=None if dense else 255,
        weight=WEIGHT if "weight" in variant else None,
        where=where,
        kl="kl" in variant,
        z_loss=0.01 if "z_loss" in variant else 0.0,
        softcap=4.0 if "softcap" in variant else None,
    )
    expected = reference.numerical_gradient(
        lambda z: reference.smooth_ce(z, labels, **options), logits
    )
    _, z, y, spec = prepare_smooth_ce(
        backend.asarray(logits),
        backend.asarray(labels, "float64" if dense else None),
        **{**_on_backend(backend, "float64", options), "reduction": "mean"},
    )
    _, grad = _core.reduced_loss_and_grad(z, y, spec, xp=backend.xp)
    assert_close(backend.to_numpy(grad), expected, "float64", scale=1e4)
    if backend.registry.name in ("numpy", "torch"):
        out = backend.xp.empty_like(z)
        loss, _, _, out = _core.blocked_loss_and_grad(
            z, y, spec, xp=backend.xp, blocks=[slice(0, 1), slice(1, 3)], out=out, scratch=None
        )
        assert_close(backend.to_numpy(out), expected, "float64", scale=1e4)
        assert_close(
            backend.to_numpy(loss), reference.smooth_ce(logits, labels, **options), "float64"
        )


@pytest.mark.parametrize("prior", ["uniform", "others", "vector"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_smooth_labels(backend, prior, axis):
    rng = np.random.default_rng(4)
    ids = rng.integers(0, K, size=(3, 2))
    eps = rng.uniform(size=(3, 2))
    targets = backend.to_numpy(
        lsr.smooth_labels(
            backend.asarray(ids),
            K,
            smoothing=backend.asarray(eps),
            prior=_on_backend(backend, "float64", {"prior": _prior(prior)})["prior"],
            axis=axis,
            dtype=backend.xp.float64,
        )
    )
    expected = reference.smoothed_targets(ids, K, smoothing=eps, prior=_prior(prior))
    assert_close(targets, np.moveaxis(expected, -1, axis), "float64")
    # Dense targets: the positions are their shape without the class axis.
    dense = rng.dirichlet(np.ones(K), size=(3, 2))
    again = lsr.smooth_labels(
        backend.asarray(np.moveaxis(dense, -1, axis)),
        smoothing=backend.asarray(eps[:, :1]),  # one per example, broadcast
        prior="others",
        axis=axis,
    )
    expected = reference.smoothed_targets(
        dense, K, smoothing=np.broadcast_to(eps[:, :1], (3, 2)), prior="others", dense=True
    )
    assert_close(backend.to_numpy(again), np.moveaxis(expected, -1, axis), "float64")


def _linear_case(seed=5):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(2, 4, 3))
    projection = rng.normal(size=(3, K))
    labels = rng.integers(0, K, size=(2, 4))
    labels[0, 1] = labels[1, 3] = -1
    return hidden, projection, labels, rng.uniform(size=(2, 4))


@pytest.mark.parametrize("eps_shape", [(2, 4), (2, 1)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_linear_blocks_cut_smoothing_with_the_rows(backend, eps_shape, reduction):
    """The fused linear loss, eager (blocks of the kept rows only, gathered) and scanned
    (padded whole blocks), equals the reference on the full logits: each block gets the
    epsilons of its own rows."""
    hidden, projection, labels, eps = _linear_case()
    eps = eps[:, : eps_shape[1]]
    options = dict(smoothing=eps, prior="vector", ignore_index=-1, reduction=reduction, kl=True)
    options["prior"] = PRIOR_VECTOR
    expected = reference.smooth_ce(
        hidden @ projection,
        labels,
        **{**options, "smoothing": np.broadcast_to(eps, labels.shape)},
    )
    xp, flat_hidden, flat_labels, spec, _ = prepare_linear_smooth_ce(
        backend.asarray(hidden),
        backend.asarray(projection),
        backend.asarray(labels),
        bias=None,
        weight=None,
        where=None,
        z_loss=0.0,
        chunk_size=None,
        **_on_backend(backend, "float64", options),
    )
    projection_b = backend.asarray(projection)

    def loop(body, init, xs):
        carry, outputs = init, []
        blocks = xs["hidden"].shape[0]
        for i in range(blocks):
            x = {name: None if v is None else v[i, ...] for name, v in xs.items()}
            carry, out = body(carry, x)
            outputs.append(out)

        def stacked(parts):
            # ``jax.lax.scan`` stacks every leaf of the outputs' pytree (a dict of per-row
            # values and the hidden gradient, or None).
            if parts[0] is None:
                return None
            if isinstance(parts[0], dict):
                return {name: xp.stack([p[name] for p in parts]) for name in parts[0]}
            return xp.stack(parts)

        return carry, tuple(stacked([o[j] for o in outputs]) for j in range(2))

    runs = {
        "scanned": lambda: _linear.scanned_linear_smooth_ce(
            flat_hidden,
            projection_b,
            None,
            flat_labels,
            xp=xp,
            spec=spec,
            chunk_size=3,
            with_grad=False,
            scan=loop,
        )
    }
    if backend.registry.name in ("numpy", "torch", "array_api_strict"):
        runs["eager"] = lambda: _linear.linear_smooth_ce(
            flat_hidden,
            projection_b,
            None,
            flat_labels,
            xp=xp,
            spec=spec,
            chunk_size=2,
            with_grad=False,
        )
    for run in runs.values():
        loss, _ = run()
        actual = backend.to_numpy(loss)
        assert_close(np.reshape(actual, np.shape(expected)), expected, "float64")


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("given", [(4,), (4, 2), (2, 4, 3), (5, 4, 3)])
def test_a_shape_that_does_not_broadcast_is_refused(backend, given):
    logits = backend.asarray(np.zeros((4, 3, K)))
    labels = backend.asarray(np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\(4, 3\)") as error:
        lsr.smooth_ce(logits, labels, smoothing=backend.asarray(np.full(given, 0.1)))
    assert f"Received: smoothing.shape={given}" in str(error.value)
    if given == (4,):
        assert "give shape (4, 1)" in str(error.value)


def test_smooth_labels_refuses_a_shape_that_does_not_broadcast(backend):
    with pytest.raises(ValueError, match=r"Received: smoothing.shape=\(3,\)"):
        lsr.smooth_labels(
            backend.asarray(np.zeros(2, dtype=np.int64)),
            K,
            smoothing=backend.asarray(np.full(3, 0.1)),
        )


def test_integer_smoothing_is_refused(backend):
    with pytest.raises(TypeError, match="floating array"):
        lsr.smooth_ce(
            backend.asarray(np.zeros((4, K))),
            backend.asarray(np.zeros(4, dtype=np.int64)),
            smoothing=backend.asarray(np.zeros(4, dtype=np.int64)),
        )


@pytest.mark.parametrize("bad", [-0.1, 1.5, np.nan])
def test_out_of_range_is_refused_when_values_can_be_read(backend, bad):
    eps = np.full(4, 0.2)
    eps[2] = bad
    with pytest.raises(ValueError, match=r"\[0, 1\] at every position; 1 of 4"):
        lsr.smooth_ce(
            backend.asarray(np.zeros((4, K))),
            backend.asarray(np.zeros(4, dtype=np.int64)),
            smoothing=backend.asarray(eps),
        )


def test_linear_refuses_a_shape_that_does_not_broadcast(backend):
    hidden, projection, labels, _ = _linear_case()
    with pytest.raises(ValueError, match=r"hidden's leading shape.*smoothing.shape=\(2,\)"):
        prepare_linear_smooth_ce(
            backend.asarray(hidden),
            backend.asarray(projection),
            backend.asarray(labels),
            bias=None,
            smoothing=backend.asarray(np.full(2, 0.1)),
            prior="uniform",
            ignore_index=None,
            weight=None,
            where=None,
            reduction="mean",
            kl=False,
            z_loss=0.0,
            chunk_size=None,
        )
