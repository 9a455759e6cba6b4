"""Per-position smoothing under ``jax.jit``, the smoothing traced (the shared adapter tests are in
``tests/test_per_position_smoothing_adapters.py``)."""

from __future__ import annotations

import numpy as np

from tests import reference
from tests.backends import assert_close
from tests.conftest import get_backend
from tests.test_per_position_smoothing_adapters import PRIOR_VECTOR, _case


def test_jax_jit_with_traced_smoothing():
    import jax

    import lsr.jax

    logits, labels, eps = _case(3)
    options = dict(prior="vector", ignore_index=-100, kl=True)
    prior = get_backend("jax").asarray(PRIOR_VECTOR)

    @jax.jit
    def loss_and_grad(z, y, e):
        def mean(z):
            return lsr.jax.smooth_ce(
                z, y, smoothing=e, prior=prior, ignore_index=-100, kl=True, reduction="mean"
            )

        none = lsr.jax.smooth_ce(
            z, y, smoothing=e, prior=prior, ignore_index=-100, kl=True, reduction="none"
        )
        return none, jax.grad(mean)(z)

    z, y = get_backend("jax").asarray(logits), get_backend("jax").asarray(labels)
    none, grad = loss_and_grad(z, y, get_backend("jax").asarray(eps))
    reference_options = {**options, "prior": PRIOR_VECTOR}
    assert_close(
        np.asarray(none),
        reference.smooth_ce(logits, labels, smoothing=eps, reduction="none", **reference_options),
        "float64",
    )
    expected_grad = reference.numerical_gradient(
        lambda z: reference.smooth_ce(z, labels, smoothing=eps, **reference_options), logits
    )
    assert_close(np.asarray(grad), expected_grad, "float64", scale=1e4)
    # The same program with an epsilon out of range at one kept position: the eager call
    # would raise, so every kept position's loss and gradient row is NaN (ignored ones
    # keep their 0), never a plausible number.
    bad = eps.copy()
    bad[2, 2] = 1.5
    none_bad, grad_bad = loss_and_grad(z, y, get_backend("jax").asarray(bad))
    none_bad, grad_bad = np.asarray(none_bad), np.asarray(grad_bad)
    kept = labels != -100
    assert kept[2, 2] and np.isnan(none_bad[kept]).all() and (none_bad[~kept] == 0).all()
    assert np.isnan(grad_bad[kept]).all()


def test_vocab_parallel_on_one_device():
    """The vocabulary-parallel form inside ``shard_map`` takes per-position epsilons too
    (the positions are not split: every device gets all of them), traced as an input."""
    import jax
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    import lsr.jax

    logits, labels, eps = _case(7)
    mesh = Mesh(np.array(jax.devices()[:1]), ("vocab",))
    loss_fn = jax.jit(
        jax.shard_map(
            lambda z, y, e: lsr.jax.vocab_parallel_smooth_ce(
                z, y, axis_name="vocab", smoothing=e, prior="others", ignore_index=-100, kl=True
            ),
            mesh=mesh,
            in_specs=(P(None, None, "vocab"), P(), P()),
            out_specs=P(),
        )
    )
    backend = get_backend("jax")
    losses = loss_fn(*(backend.asarray(a) for a in (logits, labels, eps)))
    expected = reference.smooth_ce(
        logits,
        labels,
        smoothing=eps,
        prior="others",
        ignore_index=-100,
        kl=True,
        reduction="none",
    )
    assert_close(np.asarray(losses), expected, "float64")
